"""Recorded training runs: arrays ``[config, seed, time]`` at a stride, and a streaming recorder.

A :class:`Trajectory` holds, at the recorded steps ``steps [T]``: the parameters
(``weight_old [C, S, T]``, ``mean_old``/``mean_new [C, S, T, d]``); the measures of
:func:`forgetlab.metrics.snapshot` (drift, separation, new-mode error, Chen et al.'s overlaps
``acc_old``/``acc_new`` with ``drop``/``gain``, and, unless ``exact_metrics`` is off, the soft
misassignments and KL both ways); running extremes over *every* step (``drift_sup``,
``weight_min``); counts of starved batches and the largest importance weight since the previous
record (1 on-policy); the per-method diagnostics (their mean since the previous record, 0 at
step 0); and divergence information (``diverged_step [C, S]``, -1 for a healthy run).

:class:`Recorder` preallocates the T records, so memory does not grow with the number of
unrecorded steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from forgetlab.metrics import EXACT_FIELDS, GEOMETRY_FIELDS, drift, snapshot, summary
from forgetlab.mixture import MixtureParams, TwoModeMixture

Array = NDArray[np.float64]


def record_steps(steps: int, stride: int) -> NDArray[np.int_]:
    """0, stride, 2 stride, ... and the final step: the steps that are recorded."""
    marks = np.arange(0, steps + 1, stride)
    return marks if marks[-1] == steps else np.append(marks, steps)


@dataclass
class Trajectory:
    """Recorded runs; every path is ``[C, S, T]`` (means add ``d``), ``steps`` is ``[T]``."""

    steps: NDArray[np.int_]
    weight_old: Array
    mean_old: Array
    mean_new: Array
    metrics: dict[str, Array]
    diverged_step: NDArray[np.int64]
    target_mean_old: Array
    target_mean_new: Array
    cov: Array
    beta0: Array
    alpha: Array
    configs: list[Any] = field(default_factory=list)

    def __getattr__(self, name: str) -> Array:
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        raise AttributeError(name)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, S, T)."""
        return self.weight_old.shape  # type: ignore[return-value]

    @property
    def divergences(self) -> list[tuple[int, int, int]]:
        """(config, seed, step) of every run stopped because it diverged."""
        c, s = np.nonzero(self.diverged_step >= 0)
        return [(int(i), int(j), int(self.diverged_step[i, j])) for i, j in zip(c, s, strict=True)]

    @property
    def drop(self) -> Array:
        """Chen et al.'s drop acc_old(0) - acc_old(t), ``[C, S, T]``."""
        acc = self.metrics["acc_old"]
        return acc[..., :1] - acc

    @property
    def gain(self) -> Array:
        """Chen et al.'s gain acc_new(t) - acc_new(0), ``[C, S, T]``."""
        acc = self.metrics["acc_new"]
        return acc - acc[..., :1]

    def summary(self) -> pd.DataFrame:
        """Final and worst-case mass and drift per configuration (means over seeds)."""
        return summary(self.weight_old, self.metrics["weight_min"], self.metrics["drift"],
                       self.metrics["drift_sup"], self.beta0, self.alpha)

    def to_dataframe(self) -> pd.DataFrame:
        """Long format: one row per (config, seed, step) with every scalar path and the mean
        coordinates ``mean_old_0..``, ``mean_new_0..``."""
        n_c, n_s, n_t = self.shape
        idx = np.indices((n_c, n_s, n_t)).reshape(3, -1)
        cols: dict[str, Array] = {"config": idx[0], "seed": idx[1], "step": self.steps[idx[2]],
                                  "weight_old": self.weight_old.ravel()}
        for name, path in self.metrics.items():
            cols[name] = path.ravel()
        for k in range(self.mean_old.shape[-1]):
            cols[f"mean_old_{k}"] = self.mean_old[..., k].ravel()
            cols[f"mean_new_{k}"] = self.mean_new[..., k].ravel()
        frame = pd.DataFrame(cols)
        frame["diverged"] = (self.diverged_step[idx[0], idx[1]] >= 0) & (
            frame["step"].to_numpy() >= self.diverged_step[idx[0], idx[1]])
        return frame


class Recorder:
    """Streams a run into preallocated ``[C, S, T]`` arrays; call :meth:`observe` every step
    (running extremes, starvation counts) and :meth:`record` at the recorded steps."""

    def __init__(self, shape: tuple[int, int], dim: int, steps: int, stride: int,
                 exact_metrics: bool = True) -> None:
        self.exact_metrics = exact_metrics
        self.steps = record_steps(steps, stride)
        n_t = len(self.steps)
        self.weight_old = np.empty((*shape, n_t))
        self.mean_old = np.empty((*shape, n_t, dim))
        self.mean_new = np.empty((*shape, n_t, dim))
        exact = EXACT_FIELDS if exact_metrics else ()
        names = (*GEOMETRY_FIELDS, *exact, "drift_sup", "weight_min", "starved", "max_weight")
        self.metrics = {k: np.empty((*shape, n_t)) for k in names}
        self.diagnostics: dict[str, Array] = {}
        self._drift_sup = np.zeros(shape)
        self._weight_min = np.ones(shape)
        self._starved = np.zeros(shape)
        self._max_weight = np.ones(shape)
        self._extra_sum: dict[str, Array] = {}
        self._extra_n = 0
        self._next = 0

    def observe(self, learner: TwoModeMixture, target: TwoModeMixture,
                diagnostics: dict[str, Array], active: NDArray[np.bool_]) -> None:
        """Update running extremes and interval counters after one step (active runs only)."""
        self._drift_sup = np.where(active, np.maximum(self._drift_sup, drift(learner, target)),
                                   self._drift_sup)
        self._weight_min = np.where(active, np.minimum(self._weight_min, learner.weight_old),
                                    self._weight_min)
        for name, value in diagnostics.items():
            value = np.asarray(value, dtype=float)
            if name == "starved":
                self._starved += np.where(active, value, 0.0)
            elif name == "max_weight":
                self._max_weight = np.where(active, np.maximum(self._max_weight, value),
                                            self._max_weight)
            else:
                self._extra_sum[name] = self._extra_sum.get(name, 0.0) + value
        self._extra_n += 1

    def record(self, learner: TwoModeMixture, target: TwoModeMixture) -> None:
        """Store the current parameters and measures as the next recorded time point."""
        t = self._next
        beta = learner.weight_old
        self.weight_old[..., t] = beta
        self.mean_old[..., t, :] = learner.mean_old
        self.mean_new[..., t, :] = learner.mean_new
        self._drift_sup = np.maximum(self._drift_sup, drift(learner, target))
        self._weight_min = np.minimum(self._weight_min, beta)
        for name, value in snapshot(learner, target, self.exact_metrics).items():
            self.metrics[name][..., t] = value
        self.metrics["drift_sup"][..., t] = self._drift_sup
        self.metrics["weight_min"][..., t] = self._weight_min
        self.metrics["starved"][..., t] = self._starved
        self.metrics["max_weight"][..., t] = self._max_weight
        for name, total in self._extra_sum.items():
            if name not in self.diagnostics:
                self.diagnostics[name] = np.zeros(self.weight_old.shape)
            self.diagnostics[name][..., t] = total / max(self._extra_n, 1)
        self._starved = np.zeros_like(self._starved)
        self._max_weight = np.ones_like(self._max_weight)
        self._extra_sum, self._extra_n = {}, 0
        self._next += 1

    def params(self) -> MixtureParams:
        """The recorded parameter paths."""
        return MixtureParams(self.weight_old, self.mean_old, self.mean_new)
