"""``forgetlab plan``: the smallest knob that keeps a fraction of the old task.

Root-finding on the exact prediction, then a finite-batch simulation at the answer, in one
call. ``--json`` prints ``{"method", "knob", "value", "predicted_retained",
"simulated_retained", "simulated_se", ...}`` (docs/continual.md).
"""

from __future__ import annotations

import json
import math
from typing import Any

import click

from forgetlab.continual import parse_continual, read_config_toml
from forgetlab.planner import (
    PLAN_METHODS,
    Plan,
    default_problem,
    plan_chain,
    plan_oapl,
    plan_two_mode,
)
from forgetlab.simconfig import parse_config


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {text!r}")
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"plan: {plan.method}, keep >= {plan.keep:g} of the old task",
                  title_justify="left")
    table.add_column("quantity", style="bold")
    table.add_column("value", justify="right")
    rows = [("knob", plan.knob), ("smallest value", plan.value),
            ("predicted retained (exact prediction)", plan.predicted_retained),
            ("simulated retained (finite batch)", plan.simulated_retained),
            ("simulated standard error", plan.simulated_se),
            ("predicted drift D(m_o, a)", plan.predicted_drift),
            ("simulated drift", plan.simulated_drift), ("drift budget", plan.max_drift)]
    for key, value in rows:
        table.add_row(key, _fmt(value))
    Console().print(table)
    if plan.value is None:
        Console().print("no value in the knob's range keeps that fraction")


@click.command("plan")
@click.option("--method", "method", required=True, metavar="NAME",
              help=f"one of {', '.join(PLAN_METHODS)}, oapl (K-stage configs: sft-replay).")
@click.option("--keep", "keep", required=True, metavar="FRACTION",
              help="fraction of the old task's mass to keep, in (0, 1].")
@click.option("--separation", "separation", default=None, metavar="D",
              help="Delta = D(a, b) of the default two-mode run (in (0, 40]).")
@click.option("--config", "config_file", default=None, metavar="FILE.toml",
              help="a simulation config (two modes) or a continual chain ([[stages]]).")
@click.option("--max-drift", "max_drift", default="inf", metavar="D",
              help="drift budget: D(m_o, a) at the end must not exceed it (default: none).")
@click.option("--new-tolerance", "new_tolerance", default="0.5", metavar="D",
              help="the new task counts as learned when D(m_n, b) <= this (two modes).")
@click.option("--seeds", "seeds", default=32, type=click.IntRange(2, 10_000),
              help="seeds of the verifying finite-batch simulation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(method: str, keep: str, separation: str | None, config_file: str | None,
         max_drift: str, new_tolerance: str, seeds: int, as_json: bool) -> None:
    """Smallest replay fraction / SDFT anchor / OAPL tau keeping FRACTION of the old task.

    The answer comes from root-finding on the exact population prediction and is checked by a
    finite-batch simulation in the same call. Bad input: one line naming the field, exit 2.
    """
    keep_v = _number(keep, "--keep")
    drift_v = _number(max_drift, "--max-drift") if max_drift != "inf" else math.inf
    tol_v = _number(new_tolerance, "--new-tolerance")
    if separation is not None and config_file is not None:
        raise ValueError("give at most one of --separation D and --config FILE")
    data = None if config_file is None else read_config_toml(config_file)
    if data is not None and "stages" in data:
        if method != "sft-replay":
            raise ValueError(f"--method for a K-stage config must be sft-replay, got {method!r}")
        result = plan_chain(parse_continual(data), keep_v, drift_v, seeds)
    elif method == "oapl":
        if config_file is not None:
            raise ValueError("--method oapl plans on the built-in linear-reward run: use "
                             "--separation D, not --config")
        sep = 4.0 if separation is None else _number(separation, "--separation")
        result = plan_oapl(keep_v, sep, drift_v, seeds)
    else:
        if method not in PLAN_METHODS:
            raise ValueError(f"--method must be one of {', '.join([*PLAN_METHODS, 'oapl'])}, "
                             f"got {method!r}")
        if data is not None:
            base = parse_config(data)
        else:
            sep = 4.0 if separation is None else _number(separation, "--separation")
            if not 0.0 < sep <= 40.0:
                raise ValueError(f"--separation must lie in (0, 40], got {sep:g}")
            base = default_problem(sep)
        result = plan_two_mode(method, keep_v, base, drift_v, seeds, new_tolerance=tol_v)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, allow_nan=False))
        return
    _table(result)
