"""Phase diagrams of a sweep: heat maps over two fields, or lines over one, with theory overlays.

The metric is averaged over seeds (line plots show +- one standard deviation across seeds).
Runs whose ``status`` is ``diverged`` are left out of the means (their stored values are the
last sane ones, not results) and every configuration with a diverged run is marked: a red
cross on lines and heat maps, and ``diverged`` (count) in :func:`aggregate`'s table.
Configuration fields other than the axes that take several values in the table split the
figure into panels (for example one per method). Where the theory predicts the metric, the
prediction is drawn over the measurement: dashed lines on line plots, dashed contours (at the
same levels as the measured contours) on heat maps.

Predictions (population optima; finite-horizon runs approach them):

* ``weight_final`` under forward KL with replay of old data (method ``sft``, replay ``old``):
  beta_inf = lambda, the replay fraction (claim C6); without replay (``none``): 0 (claim C2).
* ``weight_final`` under reverse KL, with or without replay (``rl`` with the target reward
  and tau = 1, ``replay-rl``): beta_inf = alpha (claims C3 and C7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgetlab.sweep.store import BOOKKEEPING

_NOT_CONFIG_SUFFIXES = ("_final", "_total", "_max", "_step")
_NOT_CONFIG = ("status",)


def predicted(row: Mapping[str, Any], metric: str) -> float | None:
    """The theory's prediction of ``metric`` for one configuration row, or None."""
    if metric != "weight_final":
        return None
    method = row.get("method")
    if method == "sft":
        replay = row.get("knobs.replay")
        if replay == "old":
            return float(row["knobs.replay_fraction"])
        if replay == "none":
            return 0.0
        return None
    reverse = method == "replay-rl" or (
        method == "rl" and row.get("knobs.reward") == "target"
        and row.get("knobs.tau") == 1.0 and row.get("knobs.reference") == "none")
    return float(row["problem.alpha"]) if reverse else None


def _config_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in BOOKKEEPING and c not in _NOT_CONFIG
            and not c.endswith(_NOT_CONFIG_SUFFIXES)]


def aggregate(table: pd.DataFrame, x: str, y: str | None, metric: str) -> pd.DataFrame:
    """Mean and standard deviation of ``metric`` over seeds per configuration.

    Returns one row per configuration with its configuration fields, ``mean``, ``sd``, ``n``
    (healthy runs), ``diverged`` (runs left out because they diverged; the mean is NaN when
    every run diverged) and ``theory`` (the prediction, NaN where none exists).
    """
    for name, value in (("--x", x), ("--y", y), ("--metric", metric)):
        if value is not None and value not in table.columns:
            raise ValueError(f"{name}: {value!r} is not a column of the results; columns: "
                             f"{', '.join(table.columns)}")
    if not pd.api.types.is_numeric_dtype(table[metric]):
        raise ValueError(f"--metric: {metric!r} is not numeric")
    if y is not None and y == x:
        raise ValueError(f"--y must differ from --x (both are {x!r})")
    keys = [c for c in _config_columns(table) if table[c].nunique(dropna=False) > 1
            or c in (x, y)]
    filled = table.assign(**{k: table[k].fillna("-") for k in keys if table[k].isna().any()})
    bad = (filled["status"] == "diverged") if "status" in filled.columns else (
        pd.Series(False, index=filled.index))
    filled = filled.assign(**{metric: filled[metric].where(~bad), "_diverged": bad.astype(int)})
    grouped = filled.groupby(keys, sort=True, dropna=False)
    out = grouped[metric].agg(["mean", "std", "count"]).reset_index()
    out = out.rename(columns={"std": "sd", "count": "n"})
    out["diverged"] = grouped["_diverged"].sum().to_numpy()
    first = filled.drop(columns="_diverged").groupby(keys, sort=True,
                                                    dropna=False).first().reset_index()
    out["theory"] = [v if (v := predicted(r, metric)) is not None else np.nan
                     for r in first.to_dict("records")]
    return out


def plot_sweep(table: pd.DataFrame, x: str, y: str | None, metric: str,
               out: str | Path | None = None) -> Any:
    """Draw the phase diagram of ``metric`` over ``x`` (and ``y``); save it when ``out`` is given.

    Returns the matplotlib figure.
    """
    import matplotlib

    if out is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(table, x, y, metric)
    panel_keys = [k for k in agg.columns[: agg.columns.get_loc("mean")] if k not in (x, y)]
    panels = list(agg.groupby(panel_keys, sort=True)) if panel_keys else [((), agg)]
    if y is None and len(panels) > 1:
        # Line plots overlay all panels in one axes, one line per panel.
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, part in panels:
            _lines(ax, part, x, metric, _label(panel_keys, key))
        ax.legend(fontsize=7)
        axes = [ax]
    else:
        cols = min(3, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig, grid = plt.subplots(rows, cols, figsize=(4.8 * cols, 4 * rows), squeeze=False)
        axes = list(grid.ravel())
        for ax, (key, part) in zip(axes, panels, strict=False):
            if y is None:
                _lines(ax, part, x, metric, None)
            else:
                _heatmap(fig, ax, part, x, y, metric)
            ax.set_title(_label(panel_keys, key), fontsize=8)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=120)
    return fig


def _label(keys: list[str], values: Any) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)
                     if v != "-") or "all runs"


def _lines(ax: Any, part: pd.DataFrame, x: str, metric: str, label: str | None) -> None:
    part = part.sort_values(x)
    xs = part[x].to_numpy()
    line = ax.errorbar(xs, part["mean"], yerr=part["sd"].fillna(0.0), marker="o", ms=3,
                       capsize=2, label=label or "measured")
    _mark_diverged(ax, part, x, None)
    if part["theory"].notna().any():
        ax.plot(xs, part["theory"], ls="--", color=line[0].get_color(),
                label=f"theory ({label})" if label else "theory")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} (mean over seeds)")
    if label is None:
        ax.legend(fontsize=7)


def _heatmap(fig: Any, ax: Any, part: pd.DataFrame, x: str, y: str, metric: str) -> None:
    grid = part.pivot_table(index=y, columns=x, values="mean", aggfunc="mean")
    xs, ys = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
    values = grid.to_numpy()
    mesh = ax.pcolormesh(xs, ys, values, shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=f"{metric} (mean over seeds)")
    theory = part.pivot_table(index=y, columns=x, values="theory", aggfunc="mean",
                              dropna=False).reindex(index=grid.index, columns=grid.columns)
    if len(xs) > 1 and len(ys) > 1 and np.isfinite(values).all():
        levels = np.linspace(np.nanmin(values), np.nanmax(values), 6)[1:-1]
        if np.ptp(levels) > 0:
            measured = ax.contour(xs, ys, values, levels=levels, colors="white",
                                  linewidths=0.8)
            ax.clabel(measured, fmt="%.2g", fontsize=6)
            t = theory.to_numpy(dtype=float)
            if np.isfinite(t).all() and np.ptp(t) == 0:
                ax.text(0.02, 0.98, f"theory: {t.flat[0]:.3g} everywhere", va="top",
                        transform=ax.transAxes, fontsize=7, color="white")
            elif np.isfinite(t).all():
                ax.contour(xs, ys, t, levels=levels, colors="black", linestyles="--",
                           linewidths=0.8)
                ax.plot([], [], "k--", lw=0.8, label="theory")
                ax.plot([], [], color="white", lw=0.8, label="measured")
                ax.legend(fontsize=6, loc="upper left", facecolor="0.8")
    _mark_diverged(ax, part, x, y)
    ax.set_xlabel(x)
    ax.set_ylabel(y)


def _mark_diverged(ax: Any, part: pd.DataFrame, x: str, y: str | None) -> None:
    """A red cross at every configuration with diverged runs (left out of the means)."""
    bad = part[part["diverged"] > 0]
    if not len(bad):
        return
    ys = bad[y] if y is not None else bad["mean"].fillna(0.0)
    ax.plot(bad[x].to_numpy(dtype=float), ys.to_numpy(dtype=float), "x", color="red", ms=8,
            mew=2, ls="none", label=f"diverged ({int(bad['diverged'].sum())} runs, excluded)")
    ax.legend(fontsize=6)
