"""``forgetlab continual``: a K-stage chain and its split retention matrix.

Prints the retained mass w_j, the prediction and the drift D(m_j, a_j) after every stage as
tables, or with ``--json`` one object ``{"stages", "retained_mass", "drift", "predicted_mass",
"summary"}`` (docs/continual.md). ``--plot FILE`` writes a heat map of both halves.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from forgetlab.cli._common import check_output_file
from forgetlab.continual import (
    PRESETS,
    ContinualResult,
    load_continual,
    preset,
    result_json,
    run_continual,
)
from forgetlab.progress import ProgressBar


def plot_retention(result: ContinualResult, path: str | Path) -> None:
    """Heat maps of the retained mass and the drift (rows: after stage i, columns: task j)."""
    from forgetlab.report.figures import heatmap, label, new_figure

    fig, axes = new_figure(ncols=2, title="split retention matrix")
    tasks = [f"task {j}" for j in range(result.n_tasks)]
    stages = [f"after {i}" for i in range(result.n_tasks)]
    heatmap(axes[0], result.retained_mass, tasks, stages, "retained mass w_j")
    label(axes[0], "task j", "stage i", "mass")
    heatmap(axes[1], result.drift, tasks, stages, "drift D(m_j, a_j)")
    label(axes[1], "task j", "stage i", "drift")
    for ax in axes:
        ax.invert_yaxis()
    fig.savefig(str(path), dpi=150)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _cell(value: float, se: float | None = None) -> str:
    if not np.isfinite(value):
        return "-"
    if se is not None and np.isfinite(se) and se > 0:
        return f"{value:.4f} ± {se:.1g}"
    return f"{value:.4f}"


def _tables(result: ContinualResult, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    k = result.n_tasks
    methods = ["base", *(s.method for s in result.config.stages)]
    for name, mat, se in (("retained mass w_j (measured)", result.retained_mass,
                           result.retained_mass_se),
                          ("retained mass w_j (predicted fixed point)", result.predicted_mass,
                           None),
                          ("drift D(m_j, a_j)", result.drift, result.drift_se)):
        table = Table(title=f"{title}: {name}", title_justify="left")
        table.add_column("after stage", style="bold")
        table.add_column("method")
        for j in range(k):
            table.add_column(f"task {j}", justify="right")
        for i in range(k):
            table.add_row(str(i), methods[i], *(_cell(mat[i, j], None if se is None
                                                      else se[i, j]) for j in range(k)))
        console.print(table)
    summary = result.summary()
    table = Table(title=f"{title}: summaries over old tasks", title_justify="left")
    table.add_column("summary", style="bold")
    table.add_column("measured", justify="right")
    table.add_column("predicted", justify="right")
    for key in ("average_retention", "backward_transfer", "forgetting", "average_final_mass"):
        table.add_row(key, f"{summary[key]:.4f}", f"{summary['predicted_' + key]:.4f}")
    table.add_row("mean final drift", f"{summary['mean_final_drift']:.4f}", "")
    console.print(table)


@click.command("continual")
@click.option("--config", "config_file", type=str, default=None, metavar="FILE.toml",
              help="TOML file with a continual chain (docs/continual.md).")
@click.option("--preset", "preset_name", type=str, default=None, metavar="NAME",
              help=f"a named chain: {', '.join(PRESETS)}.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in docs/continual.md).")
@click.option("--plot", "plot_file", type=str, default=None, metavar="FILE",
              help="Write a heat map of the split retention matrix (PNG, SVG or PDF).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def continual(config_file: str | None, preset_name: str | None, as_json: bool,
              plot_file: str | None, quiet: bool) -> None:
    """Run a K-stage continual post-training chain; print the split retention matrix.

    Row i is the model after stage i (row 0: the base model, which knows task 0); column j is
    task j. Retained mass w_j and drift D(m_j, a_j) are reported separately, next to the
    theory's fixed-point prediction of the mass. Bad input: one line naming the field, exit 2.
    """
    if (config_file is None) == (preset_name is None):
        raise ValueError("give exactly one of --config FILE or --preset NAME "
                         f"(presets: {', '.join(PRESETS)})")
    config = load_continual(config_file) if config_file else preset(str(preset_name))
    if plot_file is not None:
        suffix = Path(plot_file).suffix.lower()
        if suffix not in (".png", ".svg", ".pdf"):
            raise ValueError(f"--plot: the file name must end in .png, .svg or .pdf, "
                             f"got {plot_file!r}")
        check_output_file(plot_file, "--plot")
    total = sum(s.steps for s in config.stages)
    with ProgressBar("stages", total, "steps", enabled=not quiet and not as_json) as bar:
        result = run_continual(config, progress=bar.advance)
    if plot_file is not None:
        plot_retention(result, plot_file)
    if as_json:
        click.echo(json.dumps(result_json(result), indent=2, allow_nan=False))
        return
    _tables(result, preset_name or str(config_file))
