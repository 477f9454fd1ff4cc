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
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgetlab._validation import Float, Int, validated
from forgetlab.config import ALLOWED, MAX_DIM, MixtureProblem
from forgetlab.methods import get_method
from forgetlab.methods.base import Knob
from forgetlab.vocabulary import METHODS, canonical_name, expand_aliases


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProblemConfig(MixtureProblem):
    """The mixture problem of a simulation (:class:`forgetlab.config.MixtureProblem`, d = 1 by
    default); errors name fields as ``problem.<field>``."""

    _prefix: ClassVar[str] = "problem."

    dim: Int = Field(1, ge=1, le=MAX_DIM, description="output dimension d")


class GroupScales(_Strict):
    """Learning-rate multipliers per parameter group (0 freezes a group)."""

    weight: Float = Field(1.0, ge=0.0)
    mean_old: Float = Field(1.0, ge=0.0)
    mean_new: Float = Field(1.0, ge=0.0)


class SimulationConfig(_Strict):
    """One configuration of a simulation (method, knobs, regime, optimiser, problem, seeds)."""

    method: str = "sft"
    knobs: dict[str, Any] = Field(default_factory=dict)
    regime: Literal["population", "finite"] = "population"
    steps: Int = Field(1000, ge=1)
    stride: Int = Field(10, ge=1)
    learning_rate: Float = Field(0.1, gt=0.0)
    lr_scale: GroupScales = Field(default_factory=lambda: GroupScales.model_validate({}))
    weight_coordinate: Literal["logit", "raw"] = "logit"
    weight_clip: Float = Field(0.0, ge=0.0, lt=0.5)
    optimizer: Literal["gd", "adam", "em"] = "gd"
    adam_beta1: Float = Field(0.9, ge=0.0, lt=1.0)
    adam_beta2: Float = Field(0.999, ge=0.0, lt=1.0)
    adam_eps: Float = Field(1e-8, gt=0.0)
    batch_size: Int = Field(64, gt=0)
    seeds: Int = Field(1, ge=1)
    seed: Int = Field(0, ge=0)
    max_logit: Float = Field(40.0, gt=0.0)
    max_distance: Float = Field(1e3, gt=0.0)
    exact_metrics: bool = True
    problem: ProblemConfig = Field(default_factory=lambda: ProblemConfig.model_validate({}))

    @model_validator(mode="before")
    @classmethod
    def _knob_aliases(cls, data: Any) -> Any:
        """Old knob names (OAPL's ``tau``, distillation's ``mix``) replaced by the knobs they
        set, so that every reader of ``knobs`` sees the table's names."""
        if isinstance(data, dict) and isinstance(data.get("knobs"), dict):
            method = canonical_name(str(data.get("method", "sft")))
            if method in METHODS:
                data = {**data, "knobs": expand_aliases(method, data["knobs"])}
        return data

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
    naming the field and its allowed range."""
    return validated(SimulationConfig, data,
                     allowed={f"problem.{key}": text for key, text in ALLOWED.items()})


def load_config(path: str | Path) -> SimulationConfig:
    """A :class:`SimulationConfig` from a TOML file (unknown keys rejected)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {path} cannot be read: "
                         f"{getattr(err, 'strerror', None) or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from None
    return parse_config(data)
