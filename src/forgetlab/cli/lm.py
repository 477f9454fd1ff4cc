"""``forgetlab lm``: the built-in LM benchmark and the split for users' own models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from forgetlab.cli._common import check_output_file
from forgetlab.lm import require_torch
from forgetlab.parallel import available_cores
from forgetlab.progress import ProgressBar


@click.group("lm")
def lm() -> None:
    """Forgetting on causal language models (needs the lm extra: torch)."""


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
@click.option("--variant", type=click.Choice(["standard", "two-answer", "several_answers"]),
              default="standard", show_default=True,
              help="New task: one answer mode (+3), two sequence-level modes (+3 or +7), or "
                   "a far (+3) and a close (old digits) answer with a drift channel.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Post-training seeds per method [default: the profile's, quick 3, full 5].")
def benchmark(methods: str | None, profile: str, settings: str, as_json: bool,
              threads: int | None, out: Path, cache: Path | None, seed: int,
              variant: str, seeds: int | None) -> None:
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
    with ProgressBar("lm", enabled=not as_json, transient=False) as bar:
        result = run_benchmark(
            profile, specs, [s.strip() for s in settings.split(",") if s.strip()],
            cache_dir=cache, threads=threads or available_cores(), seed=seed,
            progress=lambda label, done, total: bar.update(done, label, total), variant=variant,
            seeds=seeds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=1))
    figures = result.figures(out)
    if as_json:
        click.echo(json.dumps(result.to_dict(trajectories=False)))
        return
    click.echo(result.table())
    click.echo("\n" + result.summary())
    click.echo(f"\npre-trained model: {result.pretrain['path']} "
               f"({'cached' if result.pretrain['cached'] else 'trained now'})")
    click.echo(f"figures: {', '.join(str(p) for p in figures)}; results: {out / 'results.json'}")


@lm.command("measure")
@click.option("--base", "base_dir", required=True, type=click.Path(path_type=Path),
              help="Local Hugging Face model directory of the base model.")
@click.option("--tuned", "tuned_dir", required=True, type=click.Path(path_type=Path),
              help="Local Hugging Face model directory of the post-trained model.")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(path_type=Path),
              help="Text file (one prompt per line), JSON list, or .jsonl (strings, "
                   "{'prompt': ...} or {'messages': [...]}).")
@click.option("--marker", default=None,
              help="Old mode: answers that start with this text (one or more tokens; "
                   "tokenised after the prompt, e.g. ' A').")
@click.option("--classifier", default=None,
              help="Regular expression: answers it matches (re.search) are old mode.")
@click.option("--chat-template", is_flag=True,
              help="Render plain prompts as a user message with the tokenizer's chat "
                   "template (messages always are).")
@click.option("--max-new-tokens", type=int, default=16, show_default=True)
@click.option("--samples", type=int, default=32, show_default=True,
              help="Samples per prompt: per mode (--marker) or per model (--classifier).")
@click.option("--target-se", type=float, default=None,
              help="Add samples per prompt until every term's standard error is at most this.")
@click.option("--max-samples", type=int, default=None,
              help="Cap on samples per prompt with --target-se [default: 32 x --samples].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available), cpu, cuda, cuda:N.")
@click.option("--dtype", default="auto", show_default=True,
              help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16, "
                   "float64.")
@click.option("--batch-size", type=int, default=64, show_default=True,
              help="Rows per forward pass.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads [default: all cores].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the full report (summary, per prompt, warnings) as JSON here.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Write a per-prompt figure of old mass and drift (.png, .pdf or .svg).")
def measure(base_dir: Path, tuned_dir: Path, prompts_file: Path, marker: str | None,
            classifier: str | None, chat_template: bool, max_new_tokens: int, samples: int,
            target_se: float | None, max_samples: int | None, seed: int, device: str,
            dtype: str, batch_size: int, threads: int | None, as_json: bool,
            out: Path | None, plot: Path | None) -> None:
    """Split KL(base || tuned) into mass forgetting, old drift and new change."""
    require_torch()
    import torch

    from forgetlab.lm.hf import measure_split, plot_per_prompt

    if (marker is None) == (classifier is None):
        raise ValueError("marker/classifier: give exactly one of --marker and --classifier")
    if samples < 2:
        raise ValueError(f"samples: must be >= 2, got {samples}")
    if batch_size < 1:
        raise ValueError(f"batch-size: must be >= 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads: must be >= 1, got {threads}")
    if target_se is not None and not target_se > 0:
        raise ValueError(f"target-se: must be > 0, got {target_se}")
    if max_samples is not None and (target_se is None or max_samples < samples):
        raise ValueError(f"max-samples: needs --target-se and must be >= --samples ({samples})")
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"plot: {plot} must end in .png, .pdf or .svg")
    if plot is not None:
        check_output_file(plot, "plot")
    torch.set_num_threads(threads or available_cores())
    with ProgressBar("lm", enabled=not as_json, transient=False) as bar:
        report = measure_split(base_dir, tuned_dir, prompts_file, marker=marker,
                               classifier=classifier, max_new_tokens=max_new_tokens,
                               n_samples=samples, seed=seed, chat_template=chat_template,
                               device=device, dtype=dtype, batch_size=batch_size,
                               target_se=target_se, max_samples=max_samples,
                               progress=lambda label, done, total: bar.update(done, label, total))
    for w in report["warnings"]:
        click.echo(f"warning: {w}", err=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
    if plot is not None:
        plot_per_prompt(report, plot)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(measure_table(report))


def measure_table(report: dict[str, Any]) -> str:
    """The averaged split of a measure report as a text table with standard errors."""
    s = report["summary"]
    per = report["per_prompt"]
    spent = sum(r.get("samples", report["samples"]) for r in per) / max(len(per), 1)
    head = (f"mode: {report['mode']}   prompts: {s['prompts']}   "
            f"samples per prompt: {spent:.0f}")
    if report["mode"] == "marker":
        head += f"   marker tokens: {report['marker_tokens']}"
    rows = [("old mass (base)", "old_mass_base"), ("old mass (tuned)", "old_mass"),
            ("mass KL", "mass_kl"), ("old-component drift KL", "old_drift_kl"),
            ("new-component change KL", "new_change_kl"), ("full KL(base || tuned)", "full_kl")]
    lines = [head, f"{'term':<26}{'value':>12}  {'s.e.':>9}"]
    for name, key in rows:
        se = s.get(f"{key}_se", 0.0)
        lines.append(f"{name:<26}{s[key]:>12.5f}  ± {se:.5f}")
    return "\n".join(lines)
