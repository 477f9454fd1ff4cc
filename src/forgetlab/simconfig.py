"""Validated simulation configuration (pydantic), loadable from TOML.

A :class:`SimulationConfig` names a method and its knobs (checked against the method's own
list: an unknown method or knob is a ``ValueError`` naming it and listing the allowed ones),
the regime, the optimiser, and the mixture problem. Example TOML::

    method = "sft"
    regime = "population"
    steps = 2000
    stride = 20
    learning_rate = 0.5

    [knobs]
    replay = "old"
    replay_fraction = 0.3

    [problem]
    dim = 2
    separation = 4.0
    alpha = 0.5
    beta0 = 0.5

Unknown keys anywhere are rejected.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forgetlab._validation import as_covariance
from forgetlab.methods import get_method
from forgetlab.methods.base import Knob
from forgetlab.mixture import TwoModeMixture


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemConfig(_Strict):
    """The mixture problem: p* = alpha N(a, Sigma) + (1 - alpha) N(b, Sigma), q_0 =
    beta0 N(a, Sigma) + (1 - beta0) N(m_n(0), Sigma).

    a = 0 and b = separation * L e_1 (so D(a, b) = separation) unless ``old_mean`` and
    ``new_mean`` are given; m_n(0) = ``learner_new_mean`` or a + new_mean_start (b - a).
    """

    dim: int = Field(1, ge=1)
    separation: float = Field(4.0, gt=0.0)
    old_mean: list[float] | None = None
    new_mean: list[float] | None = None
    cov: float | list[float] | list[list[float]] = 1.0
    alpha: float = Field(0.5, gt=0.0, lt=1.0)
    beta0: float = Field(0.5, gt=0.0, lt=1.0)
    new_mean_start: float = 0.5
    learner_new_mean: list[float] | None = None

    @model_validator(mode="after")
    def _means(self) -> ProblemConfig:
        for name in ("old_mean", "new_mean", "learner_new_mean"):
            value = getattr(self, name)
            if value is not None and len(value) != self.dim:
                raise ValueError(f"problem.{name} must have dim = {self.dim} entries")
        if (self.old_mean is None) != (self.new_mean is None):
            raise ValueError("give both problem.old_mean and problem.new_mean, or neither")
        as_covariance(np.asarray(self.cov, dtype=float), self.dim, "problem.cov")
        return self

    def arrays(self) -> dict[str, Any]:
        """alpha, a, b, Sigma ``[d, d]``, beta0 and m_n(0) as numbers and arrays."""
        cov = as_covariance(np.asarray(self.cov, dtype=float), self.dim, "problem.cov")
        if self.old_mean is not None and self.new_mean is not None:
            a, b = np.asarray(self.old_mean, dtype=float), np.asarray(self.new_mean, dtype=float)
        else:
            a = np.zeros(self.dim)
            b = self.separation * np.linalg.cholesky(cov)[:, 0]
        start = (np.asarray(self.learner_new_mean, dtype=float)
                 if self.learner_new_mean is not None else a + self.new_mean_start * (b - a))
        return {"alpha": self.alpha, "a": a, "b": b, "cov": cov, "beta0": self.beta0,
                "start": start}

    def target(self) -> TwoModeMixture:
        """p* as a mixture with batch shape ``[]``."""
        v = self.arrays()
        return TwoModeMixture(v["alpha"], v["a"], v["b"], v["cov"])

    def initial(self) -> TwoModeMixture:
        """q_0 with m_o(0) = a (the old component is already correct)."""
        v = self.arrays()
        return TwoModeMixture(v["beta0"], v["a"], v["start"], v["cov"])


class GroupScales(_Strict):
    """Learning-rate multipliers per parameter group (0 freezes a group)."""

    weight: float = Field(1.0, ge=0.0)
    mean_old: float = Field(1.0, ge=0.0)
    mean_new: float = Field(1.0, ge=0.0)


class SimulationConfig(_Strict):
    """One configuration of a simulation (method, knobs, regime, optimiser, problem, seeds)."""

    method: str = "sft"
    knobs: dict[str, Any] = Field(default_factory=dict)
    regime: Literal["population", "finite"] = "population"
    steps: int = Field(1000, ge=1)
    stride: int = Field(10, ge=1)
    learning_rate: float = Field(0.1, gt=0.0)
    lr_scale: GroupScales = Field(default_factory=lambda: GroupScales.model_validate({}))
    weight_coordinate: Literal["logit", "raw"] = "logit"
    weight_clip: float = Field(0.0, ge=0.0, lt=0.5)
    optimizer: Literal["gd", "adam", "em"] = "gd"
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)
    adam_eps: float = Field(1e-8, gt=0.0)
    batch_size: int = Field(64, gt=0)
    seeds: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)
    max_logit: float = Field(40.0, gt=0.0)
    max_distance: float = Field(1e3, gt=0.0)
    exact_metrics: bool = True
    problem: ProblemConfig = Field(default_factory=lambda: ProblemConfig.model_validate({}))

    @model_validator(mode="after")
    def _method(self) -> SimulationConfig:
        method = get_method(self.method)(**self.knobs)
        method.check_regime(self.regime)
        return self

    def knob_spec(self) -> dict[str, Knob]:
        """The method's knob specification."""
        return dict(get_method(self.method).knobs)

    def with_updates(self, **changes: Any) -> SimulationConfig:
        """A validated copy with top-level fields replaced (``problem``/``knobs`` as dicts are
        merged into the current ones)."""
        data = self.model_dump()
        for key, value in changes.items():
            if key in ("problem", "knobs", "lr_scale") and isinstance(value, dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return parse_config(data)


def parse_config(data: dict[str, Any]) -> SimulationConfig:
    """Validate a dict into a :class:`SimulationConfig`; errors become one-line ValueErrors
    naming the field."""
    try:
        return SimulationConfig.model_validate(data)
    except ValidationError as err:
        parts = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        raise ValueError("; ".join(parts)) from None


def load_config(path: str | Path) -> SimulationConfig:
    """A :class:`SimulationConfig` from a TOML file (unknown keys rejected)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from None
    return parse_config(data)
