"""``forgetlab lm``: the built-in LM benchmark and the split for users' own models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from forgetlab.lm import require_torch


@click.group("lm")
def lm() -> None:
    """Forgetting on causal language models (needs the lm extra: torch)."""


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    """A rich progress display and a callback (label, done, total) feeding it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), disable=not enabled, transient=False)
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done)

    return bar, update


@lm.command("benchmark")
@click.option("--methods", default=None,
              help="Comma- or space-separated method specs, e.g. 'sft rl:reward=target "
                   "rl:reward=verifier_new,kl_coef=0.1' (default: the benchmark's list).")
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick",
              show_default=True, help="Model and run sizes.")
@click.option("--settings", default="same_prompts,held_out", show_default=True,
              help="Comma-separated settings.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch CPU threads [default: all cores].")
@click.option("--out", type=click.Path(path_type=Path), default=Path("lm-benchmark"),
              show_default=True, help="Folder for figures and results.json.")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Cache folder for the pre-trained model [default: ~/.cache/forgetlab].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--variant", type=click.Choice(["standard", "two-answer"]), default="standard",
              show_default=True,
              help="New task: one answer mode (+3), or two sequence-level modes (+3 or +7).")
def benchmark(methods: str | None, profile: str, settings: str, as_json: bool,
              threads: int | None, out: Path, cache: Path | None, seed: int,
              variant: str) -> None:
    """Pre-train the built-in model (cached) and compare methods at matched new-task gain."""
    require_torch()
    from forgetlab.cli._common import check_output_dir
    from forgetlab.lm.benchmark import run_benchmark

    check_output_dir(out, "--out")

    specs = methods.replace(",", " ").split() if methods else None
    # a knob list such as "distill:divergence=jsd,beta=0.3" is split back together
    if specs:
        merged: list[str] = []
        for s in specs:
            if merged and ":" not in s and "=" in s:
                merged[-1] += "," + s
            else:
                merged.append(s)
        specs = merged
    bar, update = _progress(not as_json)
    with bar:
        result = run_benchmark(
            profile, specs, [s.strip() for s in settings.split(",") if s.strip()],
            cache_dir=cache, threads=threads or os.cpu_count() or 1, seed=seed,
            progress=update, variant=variant)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=1))
    figures = result.figures(out)
    if as_json:
        click.echo(json.dumps(result.to_dict(trajectories=False)))
        return
    click.echo(result.table())
    click.echo(f"\npre-trained model: {result.pretrain['path']} "
               f"({'cached' if result.pretrain['cached'] else 'trained now'})")
    click.echo(f"figures: {', '.join(str(p) for p in figures)}; results: {out / 'results.json'}")


@lm.command("measure")
@click.option("--base", "base_dir", required=True, type=click.Path(path_type=Path),
              help="Local Hugging Face model directory of the base model.")
@click.option("--tuned", "tuned_dir", required=True, type=click.Path(path_type=Path),
              help="Local Hugging Face model directory of the post-trained model.")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(path_type=Path),
              help="Text file, one prompt per line (a JSON list of strings also works).")
@click.option("--marker", default=None, help="Old-mode marker: must be one token.")
@click.option("--classifier", default=None,
              help="Regular expression: answers it matches (re.search) are old mode.")
@click.option("--max-new-tokens", type=int, default=16, show_default=True)
@click.option("--samples", type=int, default=32, show_default=True,
              help="Samples of the base model per prompt (and mode, with --marker).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="Torch CPU threads [default: all cores].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def measure(base_dir: Path, tuned_dir: Path, prompts_file: Path, marker: str | None,
            classifier: str | None, max_new_tokens: int, samples: int, seed: int,
            threads: int | None, as_json: bool) -> None:
    """Split KL(base || tuned) into mass forgetting, old drift and new change."""
    require_torch()
    import torch

    from forgetlab.lm.hf import measure_split

    torch.set_num_threads(threads or os.cpu_count() or 1)
    report = measure_split(base_dir, tuned_dir, prompts_file, marker=marker,
                           classifier=classifier, max_new_tokens=max_new_tokens,
                           n_samples=samples, seed=seed)
    if as_json:
        click.echo(json.dumps(report))
        return
    s = report["summary"]
    click.echo(f"mode: {report['mode']}   prompts: {s['prompts']}   samples: {samples}")
    rows = [("old mass (base)", s["old_mass_base"], None), ("old mass (tuned)", s["old_mass"],
            s["old_mass_se"]), ("mass KL", s["mass_kl"], None),
            ("old-component drift KL", s["old_drift_kl"], s["old_drift_kl_se"]),
            ("new-component change KL", s["new_change_kl"], s["new_change_kl_se"]),
            ("full KL(base || tuned)", s["full_kl"], s["full_kl_se"])]
    for name, value, se in rows:
        click.echo(f"{name:<26}{value:>12.5f}" + (f"  ± {se:.5f}" if se else ""))
