"""Matplotlib helpers for the claim figures: theory and simulation in one plot, PNG and SVG.

Every figure uses the non-interactive Agg backend, labelled axes with units, theory drawn as
lines and simulation as markers (with error bars where a standard error exists), and is saved
twice, ``<stem>.png`` (raster, embedded in the HTML report) and ``<stem>.svg`` (vector).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

THEORY_STYLE: dict[str, Any] = {"color": "black", "linestyle": "-", "linewidth": 1.5}
SIM_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
_RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "svg.hashsalt": "forgetlab",  # deterministic SVG ids
}


def new_figure(ncols: int = 1, nrows: int = 1, title: str = "") -> tuple[Figure, list[Axes]]:
    """A figure of ``nrows x ncols`` panels (about 4 x 3.2 inches each) and its flat axes."""
    with plt.rc_context(_RC):  # type: ignore[arg-type]
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(4.0 * ncols, 3.2 * nrows), squeeze=False, layout="constrained"
        )
    if title:
        fig.suptitle(title, fontsize=11)
    return fig, list(np.ravel(axes))


def label(ax: Axes, xlabel: str, ylabel: str, title: str = "") -> None:
    """Axis labels (each should carry its unit, e.g. "step t [iterations]") and a title."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3, linewidth=0.5)


def _draw_series(ax: Axes, item: dict[str, Any]) -> None:
    """Theory as a line and simulation as markers (with +-2 standard errors when given).

    ``item`` is a series of :meth:`forgetlab.claims.figures.Panel.series`; its ``name`` is
    appended to the legend labels, ``None`` keeps the series out of the legend.
    """
    theory, measured, stderr = item["theory"], item["measured"], item["stderr"]
    color_index, name, labels = item["color_index"], item["name"], item["labels"]
    color = SIM_COLORS[color_index % len(SIM_COLORS)]
    suffix = f" ({name})" if name else ""
    th_label, sim_label = (
        ("_nolegend_", "_nolegend_") if name is None else (labels[0] + suffix, labels[1] + suffix)
    )
    x = np.asarray(item["x"], dtype=float)
    if theory is not None:
        style = dict(THEORY_STYLE)
        if color_index:
            style["color"] = color
            style["linestyle"] = "--"
        ax.plot(x, np.asarray(theory, dtype=float), label=th_label, **style)
    if measured is not None:
        xm = x if item["x_measured"] is None else np.asarray(item["x_measured"], dtype=float)
        y = np.asarray(measured, dtype=float)
        n = len(xm)
        step = max(1, n // 40)
        sel = slice(None, None, step)
        if stderr is not None:
            ax.errorbar(
                xm[sel], y[sel], yerr=2.0 * np.asarray(stderr, dtype=float)[sel], fmt="o",
                color=color, markersize=3.5, capsize=2, label=sim_label,
            )
        else:
            ax.plot(xm[sel], y[sel], "o", color=color, markersize=3.5, markerfacecolor="none",
                    label=sim_label)


def heatmap(
    ax: Axes,
    values: ArrayLike,
    x: Sequence[float] | Sequence[str],
    y: Sequence[float] | Sequence[str],
    colorbar_label: str,
    fmt: str = "{:.2f}",
) -> None:
    """A phase diagram ``values[len(y), len(x)]`` with each cell annotated by its value."""
    v = np.asarray(values, dtype=float)
    image = ax.imshow(v, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(x)), [str(t) if isinstance(t, str) else f"{t:g}" for t in x])
    ax.set_yticks(range(len(y)), [str(t) if isinstance(t, str) else f"{t:g}" for t in y])
    finite = v[np.isfinite(v)]
    mid = 0.5 * (finite.min() + finite.max()) if finite.size else 0.0
    for (i, j), value in np.ndenumerate(v):
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7,
                color="black" if value > mid else "white")
    ax.figure.colorbar(image, ax=ax, label=colorbar_label, shrink=0.85)


def save_figure(fig: Figure, directory: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg`` into ``directory``; close the figure."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.png", directory / f"{stem}.svg"]
    for ax in fig.axes:
        if ax.get_legend_handles_labels()[0] and ax.get_label() != "<colorbar>":
            ax.legend(loc="best", frameon=False, fontsize=7)
    with plt.rc_context(_RC):  # type: ignore[arg-type]
        fig.savefig(paths[0], dpi=150)
        fig.savefig(paths[1], metadata={"Date": None})
    plt.close(fig)
    return paths


def _scale(set_scale: Any, scale: str) -> None:
    """Apply "linear", "log", "log2" or "symlog:<linthresh>" with ``set_[xy]scale``."""
    if scale == "log2":
        set_scale("log", base=2)
    elif scale.startswith("symlog"):
        _, _, thresh = scale.partition(":")
        set_scale("symlog", linthresh=float(thresh or 1.0))
    elif scale != "linear":
        set_scale(scale)


def _draw_item(ax: Axes, item: dict[str, Any]) -> None:
    """Draw one plot item of :class:`forgetlab.claims.figures.Panel` on ``ax``."""
    kind = item["kind"]
    if kind == "series":
        _draw_series(ax, item)
    elif kind == "line":
        ax.plot(item["x"], item["y"], item["style"], color=item["color"],
                linewidth=item["width"], label=item["label"] or "_nolegend_")
    elif kind == "points":
        ax.plot(item["x"], item["y"], item["marker"], color=item["color"], markersize=3.5,
                markerfacecolor="none", label=item["label"] or "_nolegend_")
    elif kind == "band":
        ax.fill_between(item["x"], item["low"], item["high"], color=item["color"], alpha=0.25,
                        label=item["label"] or "_nolegend_")
    elif kind == "hline":
        ax.axhline(item["value"], color=item["color"], linewidth=1,
                   label=item["label"] or "_nolegend_")
    elif kind == "vline":
        ax.axvline(item["value"], color=item["color"], linestyle=":", linewidth=1,
                   label=item["label"] or "_nolegend_")
    elif kind == "bars":
        err = None if item["err"] is None else 2.0 * np.asarray(item["err"])
        ax.bar(item["labels"], item["values"], yerr=err,
               color=[f"C{k}" for k in range(len(item["labels"]))])
    elif kind == "heatmap":
        heatmap(ax, item["values"], item["x"], item["y"], item["colorbar_label"], item["fmt"])
    elif kind == "text":
        ax.set_axis_off()
        ax.text(0.0, 0.5, item["text"], fontsize=9, va="center")
    else:
        raise ValueError(f"unknown plot item kind {kind!r}")


def render_figure(data: Any, directory: Path, name: str) -> list[Path]:
    """Draw a :class:`forgetlab.claims.figures.FigureData` (or its dict) and save PNG + SVG."""
    spec = data.to_dict() if hasattr(data, "to_dict") else data
    fig, axes = new_figure(spec["ncols"], spec["nrows"], spec["title"])
    for ax, panel in zip(axes, spec["panels"], strict=True):
        for item in panel["items"]:
            _draw_item(ax, item)
        if not any(i["kind"] == "text" for i in panel["items"]):
            if any(i["kind"] == "heatmap" for i in panel["items"]):
                ax.set(xlabel=panel["xlabel"], ylabel=panel["ylabel"], title=panel["title"])
            else:
                label(ax, panel["xlabel"], panel["ylabel"], panel["title"])
            _scale(ax.set_xscale, panel["xscale"])
            _scale(ax.set_yscale, panel["yscale"])
    return save_figure(fig, directory, name)


def render_claim_figures(result: Any, directory: Path) -> list[str]:
    """Render every figure of a claim result into ``directory``; paths relative to its parent."""
    paths: list[str] = []
    for fig in result.figure_data:
        name = f"{result.claim_id}{'-' + fig.stem if fig.stem else ''}"
        paths += [f"{directory.name}/{p.name}" for p in render_figure(fig, directory, name)]
    return paths
