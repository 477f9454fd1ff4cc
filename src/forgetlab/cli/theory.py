"""``forgetlab theory``: every closed-form quantity and prediction of claims C2 to C7.

The configuration comes from the built-in default, a TOML file (``--config``) and flags, in
that order of precedence (flags win). Output: a table grouped by claim, or with ``--json`` one
JSON object whose schema is documented in docs/cli.md (``schema_version`` 1).
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from forgetlab.cli.theory_table import GROUPS, as_json, theory_summary
from forgetlab.config import MixtureConfig
from forgetlab.progress import ProgressBar
from forgetlab.sweep.resources import Estimate

#: ``theory`` is meant to answer in seconds: past this estimated time it needs --force [s].
THEORY_CEILING_SECONDS = 60.0
#: Estimated time past which ``theory`` shows a progress bar (on standard error) [s].
PROGRESS_MIN_SECONDS = 1.0


def estimate(config: MixtureConfig) -> Estimate:
    """Rough memory and time of :func:`theory_summary` (the work after start-up).

    Time: 0.2 s + 4 ms per dimension of set-up, the d^3 linear algebra done once (the Fisher
    spectra of C5, the covariance factorisations: 1e-8 d^3 s), and per predicted step (the
    C2 weight trajectories, the C4 flow) 3.5 ms + 3e-8 d^2 s (the d x d products of each
    exact gradient). The constants were fitted to wall and CPU times of the exact engine
    (covariances factorised once) at d = 1, 100, 500, 1000 and 20 to 2000 steps, measured on
    two shared, loaded cores (load average 2 to 5): estimate/measured 0.25 to 1.4, the low
    end at the highest load; an idle machine runs d = 1000 several times faster than there,
    so the model sits between the two. ``python bench/theory_estimate.py`` prints the
    estimate beside the measured time. Memory: about 200 MB plus 160 d^2 bytes (measured up
    to d = 1000 on one core)."""
    d = config.dim
    seconds = 0.2 + 4e-3 * d + 1e-8 * d**3 + config.steps * (3.5e-3 + 3e-8 * d * d)
    return Estimate(2e8 + 160.0 * d * d, seconds)


# Flags for the main fields: (option, config key, help). Values are passed to the validated
# configuration as given, so a bad value is reported with the field name and allowed range.
_FLAGS = [
    ("--dim", "dim", "output dimension d (integer >= 1)"),
    ("--separation", "separation", "Delta = D(a, b) in (0, 40]"),
    ("--alpha", "alpha", "target old weight in (0, 1)"),
    ("--beta0", "beta0", "initial learner old weight in (0, 1)"),
    ("--new-mean-start", "new_mean_start", "m_n(0) = a + t (b - a)"),
    ("--cov", "cov", "shared variance (scalar > 0; matrices via --config)"),
    ("--replay", "replay", "replay fraction lambda in [0, 1)"),
    ("--batch-size", "batch_size", "batch size B (integer >= 1)"),
    ("--step-size", "step_size", "gradient step size s > 0"),
    ("--steps", "steps", "steps of the predicted trajectories (1 to 20000)"),
]


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def _options(func: Any) -> Any:
    for flag, key, text in reversed(_FLAGS):
        func = click.option(flag, key, type=str, default=None, metavar="VALUE", help=text)(func)
    return func


@click.command("theory")
@click.option("--config", "config_path", type=str, default=None, metavar="FILE.toml",
              help="TOML file with configuration keys (unknown keys are rejected).")
@_options
@click.option("--json", "as_json_flag", is_flag=True, help="Print JSON (schema in docs/cli.md).")
@click.option("--force", is_flag=True, help=f"Run even when the estimated time exceeds "
              f"{THEORY_CEILING_SECONDS:g} s.")
def theory(config_path: str | None, as_json_flag: bool, force: bool,
           **flags: str | None) -> None:
    """Print the theory's closed forms and predictions (claims C2 to C7) for a configuration.

    Groups: overlap of the target modes; C2 forward KL (rho, weight identity, EM map, decay
    laws); C3 reverse-KL optimum; C4 drift bounds along the exact reverse-KL flow; C5 Fisher
    spectrum and contraction; C6 replay fixed points; C7 importance weights and starvation.

    The configuration is the built-in default (d = 2, Delta = 4, alpha = 0.3, beta0 = 0.5,
    lambda = 0.2, B = 16, s = 0.2, 200 steps), overridden by --config, overridden by flags.
    Bad input: one line naming the field and its allowed range, exit code 2; so is an
    estimated run time past 60 s (large dim and many steps) without --force. A progress bar
    on standard error shows when the estimated run time exceeds 1 s.
    """
    overrides = {key: value for key, value in flags.items() if value is not None}
    config = (MixtureConfig.from_toml(config_path, **overrides) if config_path
              else MixtureConfig.from_dict(overrides))
    cost = estimate(config)
    cost.check("theory", "a smaller --dim or fewer --steps", force,
               ceiling=THEORY_CEILING_SECONDS)
    with ProgressBar("theory", len(GROUPS), "groups",
                     enabled=cost.seconds > PROGRESS_MIN_SECONDS) as bar:
        quantities = theory_summary(config, bar.update)
    if as_json_flag:
        click.echo(json.dumps(as_json(config, quantities), indent=2, allow_nan=False))
        return
    console = Console()
    for group, title in GROUPS.items():
        table = Table(title=title, title_justify="left", show_lines=False)
        table.add_column("quantity", style="bold")
        table.add_column("value", justify="right")
        table.add_column("meaning")
        for q in quantities:
            if q.group == group:
                table.add_row(q.key, escape(_format(q.value)), escape(q.meaning))
        console.print(table)
