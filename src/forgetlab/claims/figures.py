"""Figure data of a claim: what to draw, never how (the report renders it with matplotlib).

A claim builds a :class:`FigureData` of panels; each :class:`Panel` holds plot items as plain
JSON-able dicts. The central item is a *series* (``x``, ``theory``, ``measured``, ``stderr``):
theory drawn as a line, the measurement as markers with +-2 standard errors. Other items are a
plain curve, markers, a shaded band, horizontal/vertical reference lines, bars, a heatmap and a
text box. :func:`forgetlab.report.figures.render_figure` draws a :class:`FigureData`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

Scale = str  # "linear", "log", "log2" (base-2 log) or "symlog:<linthresh>"


def _values(v: ArrayLike | None) -> list[Any] | None:
    """A 1-D list of floats (None stays None)."""
    if v is None:
        return None
    return np.asarray(v, dtype=float).ravel().tolist()


@dataclass
class Panel:
    """One set of axes: labels (with units), scales and the items drawn on it."""

    xlabel: str = ""
    ylabel: str = ""
    title: str = ""
    xscale: Scale = "linear"
    yscale: Scale = "linear"
    items: list[dict[str, Any]] = field(default_factory=list)

    def label(self, xlabel: str, ylabel: str, title: str = "") -> None:
        """Axis labels (each carrying its unit, e.g. "step t [iterations]") and a title."""
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title

    def series(
        self,
        x: ArrayLike,
        theory: ArrayLike | None,
        measured: ArrayLike | None,
        stderr: ArrayLike | None = None,
        color_index: int = 0,
        name: str | None = "",
        x_measured: ArrayLike | None = None,
        labels: tuple[str, str] = ("theory", "simulation"),
    ) -> None:
        """Theory (line) beside measurement (markers, +-2 s.e. when ``stderr`` is given).

        ``name`` is appended to the legend labels; ``None`` keeps the series out of the legend.
        """
        self.items.append({
            "kind": "series", "x": _values(x), "theory": _values(theory),
            "measured": _values(measured), "stderr": _values(stderr),
            "x_measured": _values(x_measured), "color_index": int(color_index), "name": name,
            "labels": list(labels),
        })

    def line(self, x: ArrayLike, y: ArrayLike, label: str | None = None, color: str | None = None,
             style: str = "-", width: float = 1.0) -> None:
        """A plain curve (``style`` a matplotlib line style such as "-", ":", "--")."""
        self.items.append({"kind": "line", "x": _values(x), "y": _values(y), "label": label,
                           "color": color, "style": style, "width": width})

    def points(self, x: ArrayLike, y: ArrayLike, label: str | None = None,
               color: str | None = None, marker: str = "o") -> None:
        """Open markers."""
        self.items.append({"kind": "points", "x": _values(x), "y": _values(y), "label": label,
                           "color": color, "marker": marker})

    def band(self, x: ArrayLike, low: ArrayLike, high: ArrayLike, label: str | None = None,
             color: str | None = None) -> None:
        """A shaded region between ``low`` and ``high`` (e.g. 5-95% of seeds)."""
        self.items.append({"kind": "band", "x": _values(x), "low": _values(low),
                           "high": _values(high), "label": label, "color": color})

    def hline(self, y: float, label: str | None = None, color: str = "black") -> None:
        """A horizontal reference line."""
        self.items.append({"kind": "hline", "value": float(y), "label": label, "color": color})

    def vline(self, x: float, label: str | None = None, color: str = "gray") -> None:
        """A vertical reference line (dotted)."""
        self.items.append({"kind": "vline", "value": float(x), "label": label, "color": color})

    def bars(self, labels: list[str], values: ArrayLike, err: ArrayLike | None = None) -> None:
        """A bar chart with optional error bars."""
        self.items.append({"kind": "bars", "labels": list(labels), "values": _values(values),
                           "err": _values(err)})

    def heatmap(self, values: ArrayLike, x: list[Any], y: list[Any], colorbar_label: str,
                fmt: str = "{:.2f}") -> None:
        """A phase diagram ``values[len(y), len(x)]``, each cell annotated by its value."""
        v = np.asarray(values, dtype=float)
        self.items.append({"kind": "heatmap", "values": v.tolist(),
                           "x": [t if isinstance(t, str) else float(t) for t in x],
                           "y": [t if isinstance(t, str) else float(t) for t in y],
                           "colorbar_label": colorbar_label, "fmt": fmt})

    def text(self, text: str) -> None:
        """A text panel (the axes are hidden)."""
        self.items.append({"kind": "text", "text": text})

    def to_dict(self) -> dict[str, Any]:
        """The panel as a JSON-able dict."""
        return {"xlabel": self.xlabel, "ylabel": self.ylabel, "title": self.title,
                "xscale": self.xscale, "yscale": self.yscale, "items": self.items}


@dataclass
class FigureData:
    """A figure of ``nrows x ncols`` panels, saved as ``<claim>[-<stem>].png|svg``."""

    ncols: int = 1
    nrows: int = 1
    title: str = ""
    stem: str = ""
    panels: list[Panel] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.panels:
            self.panels = [Panel() for _ in range(self.ncols * self.nrows)]

    def to_dict(self) -> dict[str, Any]:
        """The figure as a JSON-able dict (written into ``claims.json``)."""
        return {"ncols": self.ncols, "nrows": self.nrows, "title": self.title,
                "stem": self.stem, "panels": [p.to_dict() for p in self.panels]}
