"""The base mixture configuration, validated (pydantic) and loadable from TOML.

A :class:`MixtureConfig` fixes one problem of the theory (theory.md section 1) and the knobs the
predictions need:

- target p* = alpha N(a, Sigma) + (1 - alpha) N(b, Sigma); a = 0 and b = separation * L e_1
  (Sigma = L L^T, so D(a, b) = separation) unless ``old_mean`` and ``new_mean`` are given;
- initial learner q_0 = beta0 N(a, Sigma) + (1 - beta0) N(m_n(0), Sigma) with
  m_n(0) = ``learner_new_mean`` or a + new_mean_start (b - a);
- replay fraction lambda, batch size B, step size s and the number of steps of the predicted
  trajectories.

The field names of the problem part match the ``[problem]`` table of a simulation configuration.
Unknown keys, values outside their range, NaN or inf, mismatched dimensions and covariances that
are not symmetric positive definite raise a one-line ``ValueError`` naming the field and the
allowed range. Example TOML (every key optional)::

    dim = 2
    separation = 4.0
    cov = [1.0, 2.0]          # a variance, a diagonal, or a full matrix
    alpha = 0.3
    beta0 = 0.5
    replay = 0.2
    batch_size = 16
    step_size = 0.2
    steps = 200
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgetlab._validation import Float, Int, as_covariance, validated
from forgetlab.gaussian import mahalanobis
from forgetlab.mixture import TwoModeMixture

MAX_SEPARATION = 40.0
#: Smallest separation: below it D(a, b)^2 underflows the closed forms' arithmetic.
MIN_SEPARATION = 1e-6
#: Largest output dimension of a configuration (a d x d covariance is stored and factorised).
MAX_DIM = 1000


#: Allowed range of every field, quoted in validation messages.
ALLOWED: dict[str, str] = {
    "dim": f"an integer in [1, {MAX_DIM}]",
    "separation": f"a number in [{MIN_SEPARATION:g}, {MAX_SEPARATION:g}]",
    "old_mean": "a list of dim finite numbers",
    "new_mean": "a list of dim finite numbers",
    "cov": "a variance > 0, a list of dim variances > 0, or a symmetric positive definite "
           "dim x dim matrix",
    "alpha": "a number in (0, 1)",
    "beta0": "a number in (0, 1)",
    "new_mean_start": "a finite number",
    "learner_new_mean": "a list of dim finite numbers",
    "replay": "a number in [0, 1)",
    "batch_size": "an integer >= 1",
    "step_size": "a number > 0",
    "steps": "an integer in [1, 20000]",
}


class MixtureProblem(BaseModel):
    """One two-mode problem (theory.md section 1), shared by the theory and simulation configs.

    p* = alpha N(a, Sigma) + (1 - alpha) N(b, Sigma) and q_0 = beta0 N(a, Sigma) +
    (1 - beta0) N(m_n(0), Sigma): a = 0 and b = separation * L e_1 (Sigma = L L^T, so
    D(a, b) = separation) unless ``old_mean`` and ``new_mean`` are given; m_n(0) =
    ``learner_new_mean`` or a + new_mean_start (b - a). Validation messages name each field
    with the class's ``_prefix`` (e.g. ``problem.`` inside a simulation configuration).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _prefix: ClassVar[str] = ""

    dim: Int = Field(1, ge=1, le=MAX_DIM, description="output dimension d")
    separation: Float = Field(4.0, ge=MIN_SEPARATION, le=MAX_SEPARATION,
                              description="Delta = D(a, b) when the means are not given")
    old_mean: list[Float] | None = Field(None, description="true old mean a")
    new_mean: list[Float] | None = Field(None, description="true new mean b")
    cov: Float | list[Float] | list[list[Float]] = Field(1.0, description="shared covariance")
    alpha: Float = Field(0.5, gt=0.0, lt=1.0, description="target old weight")
    beta0: Float = Field(0.5, gt=0.0, lt=1.0, description="initial learner old weight")
    new_mean_start: Float = Field(0.5, description="m_n(0) = a + new_mean_start (b - a)")
    learner_new_mean: list[Float] | None = Field(None, description="explicit m_n(0)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in ("old_mean", "new_mean", "learner_new_mean"):
            value = getattr(self, name)
            if value is not None and len(value) != self.dim:
                raise ValueError(f"{self._prefix}{name} has {len(value)} entries, expected "
                                 f"dim = {self.dim}")
        if (self.old_mean is None) != (self.new_mean is None):
            raise ValueError(f"{self._prefix}old_mean and {self._prefix}new_mean must be given "
                             "together (or neither)")
        self.covariance()
        if self.old_mean is not None and self.new_mean is not None:
            dist = float(mahalanobis(self.old_mean, self.new_mean, self.cov,
                                     names=(f"{self._prefix}old_mean", f"{self._prefix}new_mean")))
            if not MIN_SEPARATION <= dist <= MAX_SEPARATION:
                raise ValueError(f"D({self._prefix}old_mean, {self._prefix}new_mean) = {dist:g} "
                                 f"must lie in [{MIN_SEPARATION:g}, {MAX_SEPARATION:g}]")
        return self

    def covariance(self) -> np.ndarray:
        """Sigma as a ``[d, d]`` matrix."""
        return as_covariance(self.cov, self.dim, name=f"{self._prefix}cov")

    def arrays(self) -> dict[str, Any]:
        """alpha, a, b, Sigma ``[d, d]``, beta0 and m_n(0) (``start``) as numbers and arrays."""
        cov = self.covariance()
        if self.old_mean is not None and self.new_mean is not None:
            a, b = np.asarray(self.old_mean, float), np.asarray(self.new_mean, float)
        else:
            a = np.zeros(self.dim)
            b = self.separation * np.linalg.cholesky(cov)[:, 0]  # cov is validated
        start = (np.asarray(self.learner_new_mean, float) if self.learner_new_mean is not None
                 else a + self.new_mean_start * (b - a))
        return {"alpha": self.alpha, "a": a, "b": b, "cov": cov, "beta0": self.beta0,
                "start": start}

    def target(self) -> TwoModeMixture:
        """p* = alpha N(a, Sigma) + (1 - alpha) N(b, Sigma), batch shape ``[]``."""
        v = self.arrays()
        return TwoModeMixture(v["alpha"], v["a"], v["b"], v["cov"])

    def initial(self) -> TwoModeMixture:
        """q_0 = beta0 N(a, Sigma) + (1 - beta0) N(m_n(0), Sigma) (old component correct)."""
        v = self.arrays()
        return TwoModeMixture(v["beta0"], v["a"], v["start"], v["cov"])


class MixtureConfig(MixtureProblem):
    """One two-mode problem plus the knobs of the theory's predictions (see module docstring)."""

    dim: Int = Field(2, ge=1, le=MAX_DIM, description="output dimension d")
    alpha: Float = Field(0.3, gt=0.0, lt=1.0, description="target old weight")
    replay: Float = Field(0.2, ge=0.0, lt=1.0, description="replay fraction lambda")
    batch_size: Int = Field(16, ge=1, description="batch size B")
    step_size: Float = Field(0.2, gt=0.0, description="gradient step size s")
    steps: Int = Field(200, ge=1, le=20_000, description="steps of predicted trajectories")

    def resolved(self) -> dict[str, Any]:
        """Every field with the means and covariance made explicit (JSON-ready)."""
        p, q0 = self.target(), self.initial()
        data = self.model_dump()
        data.update(old_mean=p.mean_old.tolist(), new_mean=p.mean_new.tolist(),
                    cov=p.cov.tolist(), learner_new_mean=q0.mean_new.tolist(),
                    separation=float(p.separation()))
        return data

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MixtureConfig:
        """Validate a mapping; errors become one ``ValueError`` line naming the field."""
        return validated(cls, data, allowed=ALLOWED)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> MixtureConfig:
        """Load a TOML file (unknown keys rejected); ``overrides`` replace keys of the file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"config file {str(path)!r} cannot be read: "
                             f"{getattr(err, 'strerror', None) or err}") from None
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from None
        return cls.from_dict({**data, **overrides})

    def updated(self, **changes: Any) -> MixtureConfig:
        """A validated copy with some fields replaced."""
        return self.from_dict({**self.model_dump(exclude_unset=True), **changes})

