"""Claims as code: one result type, one registry, one way to run them.

A claim of the theory (C1..C9 and the Chen et al. reproduction) is checked by a module of this
package exposing ``STATEMENT`` (the claim in one paragraph) and ``run(ctx) -> ClaimResult``.
Each claim is made of :class:`Check` items: a predicted number, a measured number, an absolute
tolerance and where the tolerance comes from, plus their provenance: ``predicted_by`` and
``measured_by`` (one of :data:`PROVENANCE`) and ``independent`` (True when the two sides share
no computation beyond the problem definition). A check passes when
``|measured - predicted| <= tolerance`` (or, for one-sided checks such as bounds, when
``measured <= predicted + tolerance``). A claim passes when all its checks pass; only
independent checks count as verification (an algebraic identity or a consistency check of the
engine against itself is labelled as such). Claims compute, the report draws: a claim returns
figure *data* (:class:`~forgetlab.claims.figures.FigureData`), :mod:`forgetlab.report` renders
it.

``claims.json`` schema (one object per claim, in registry order)::

    {"claim_id": str, "title": str, "statement": str, "status": "passed"|"failed"|"skipped"|"error",
     "passed": bool (true only when status is "passed"), "parameters": {...}, "checks": [
        {"name": str, "predicted": float, "measured": float, "tolerance": float,
         "tolerance_source": str, "kind": "equal"|"upper_bound"|"lower_bound",
         "predicted_by": str, "measured_by": str, "independent": bool, "passed": bool}],
     "independent_checks": int, "independent_passed": int,
     "notes": [str], "figures": [str (paths relative to the report directory)],
     "figure_data": [{"ncols", "nrows", "title", "stem", "panels": [...]}], "runtime_s": float}

``predicted``, ``measured`` and ``tolerance`` of the claim are also given as name -> value maps.
"""

from __future__ import annotations

import importlib
import math
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import KW_ONLY, asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from forgetlab.claims.figures import FigureData

if TYPE_CHECKING:
    from forgetlab.simconfig import SimulationConfig

CheckKind = Literal["equal", "upper_bound", "lower_bound"]
Status = Literal["passed", "failed", "skipped", "error"]

#: Allowed tolerance sources: the estimated error of the method that produced the numbers.
TOLERANCE_SOURCES = (
    "quadrature error",
    "Monte Carlo standard error",
    "step-size error",
    "iteration error",
    "asymptotic correction",
    "floating point",
)

#: How a side of a check was computed. "exact engine": the population quadrature of
#: :mod:`forgetlab.population` / :mod:`forgetlab.theory`; "population run": gradient descent
#: driven by that engine (:func:`forgetlab.simulate`, population regime); "brute-force
#: quadrature": scipy.integrate on the densities; "Monte Carlo": own draws with a standard
#: error; "finite-batch simulation": the methods' sampled gradients; "optimiser run": a
#: scipy.optimize minimisation or an independently integrated recursion; "recorded run":
#: quantities recomputed from a recorded trajectory; "algebraic identity": a relation that
#: holds by construction (never counted as verification).
PROVENANCE = (
    "closed form",
    "exact engine",
    "population run",
    "brute-force quadrature",
    "Monte Carlo",
    "finite-batch simulation",
    "optimiser run",
    "finite differences",
    "recorded run",
    "algebraic identity",
)


def _clean(value: Any) -> Any:
    """Plain JSON-able Python values (numpy scalars and arrays become floats and lists)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(float(value)) else str(float(value))
    return value


@dataclass(frozen=True)
class Check:
    """One number predicted by theory beside the one measured by simulation.

    ``kind`` = "equal": pass iff |measured - predicted| <= tolerance; "upper_bound": the
    prediction is an upper bound, pass iff measured <= predicted + tolerance; "lower_bound":
    pass iff measured >= predicted - tolerance. ``predicted_by`` / ``measured_by`` name how
    each side was computed (:data:`PROVENANCE`); ``independent`` is True only when the two
    sides share no computation beyond the problem definition (never for an algebraic identity).
    """

    name: str
    predicted: float
    measured: float
    tolerance: float
    tolerance_source: str
    kind: CheckKind = "equal"
    _: KW_ONLY
    predicted_by: str
    measured_by: str
    independent: bool

    def __post_init__(self) -> None:
        for side in (self.predicted_by, self.measured_by):
            if side not in PROVENANCE:
                raise ValueError(f"predicted_by/measured_by must be one of {PROVENANCE}, "
                                 f"got {side!r}")
        if self.independent and "algebraic identity" in (self.predicted_by, self.measured_by):
            raise ValueError("an algebraic identity is never an independent check")
        if self.independent and self.predicted_by == self.measured_by:
            raise ValueError(f"{self.predicted_by} on both sides is a consistency check, "
                             "not an independent one")
        object.__setattr__(self, "independent", bool(self.independent))
        if self.tolerance_source not in TOLERANCE_SOURCES:
            raise ValueError(
                f"tolerance_source must be one of {TOLERANCE_SOURCES}, "
                f"got {self.tolerance_source!r}"
            )
        if not self.tolerance >= 0.0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if self.kind not in ("equal", "upper_bound", "lower_bound"):
            raise ValueError(f"kind must be equal, upper_bound or lower_bound, got {self.kind!r}")
        object.__setattr__(self, "predicted", float(self.predicted))
        object.__setattr__(self, "measured", float(self.measured))
        object.__setattr__(self, "tolerance", float(self.tolerance))

    @property
    def passed(self) -> bool:
        """Whether the measured value agrees with the prediction within the tolerance."""
        p, m, t = self.predicted, self.measured, self.tolerance
        if not (math.isfinite(p) and math.isfinite(m)):
            return False
        if self.kind == "upper_bound":
            return m <= p + t
        if self.kind == "lower_bound":
            return m >= p - t
        return abs(m - p) <= t

    def to_dict(self) -> dict[str, Any]:
        """The check as a JSON-able dict, including ``passed``."""
        return _clean({**asdict(self), "passed": self.passed})


@dataclass
class ClaimResult:
    """The outcome of one claim: its checks, parameters, notes and figures."""

    claim_id: str
    title: str
    statement: str
    parameters: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    figure_data: list[FigureData] = field(default_factory=list)
    skipped: bool = False
    error: str | None = None
    runtime_s: float = 0.0

    @property
    def status(self) -> Status:
        """passed, failed (a check failed or there is none), skipped, or error (an exception)."""
        if self.error is not None:
            return "error"
        if self.skipped:
            return "skipped"
        return "passed" if self.checks and all(c.passed for c in self.checks) else "failed"

    @property
    def passed(self) -> bool:
        """True only when every check passed (a skipped claim has not passed)."""
        return self.status == "passed"

    @property
    def ok(self) -> bool:
        """True unless the claim failed or raised (a skipped claim is not a failure)."""
        return self.status in ("passed", "skipped")

    @property
    def independent_checks(self) -> list[Check]:
        """The checks that count as verification: both sides computed independently."""
        return [c for c in self.checks if c.independent]

    def figure(self, ncols: int = 1, nrows: int = 1, title: str = "",
               stem: str = "") -> FigureData:
        """A new figure (data only) attached to this result; fill its ``panels``."""
        fig = FigureData(ncols, nrows, title, stem)
        self.figure_data.append(fig)
        return fig

    @property
    def tolerance_sources(self) -> list[str]:
        """The distinct sources of the tolerances, in order of first use."""
        return list(dict.fromkeys(c.tolerance_source for c in self.checks))

    def check(
        self,
        name: str,
        predicted: float,
        measured: float,
        tolerance: float,
        tolerance_source: str,
        kind: CheckKind = "equal",
        *,
        predicted_by: str,
        measured_by: str,
        independent: bool,
    ) -> Check:
        """Append a :class:`Check` and return it."""
        item = Check(name, predicted, measured, tolerance, tolerance_source, kind,
                     predicted_by=predicted_by, measured_by=measured_by, independent=independent)
        self.checks.append(item)
        return item

    def to_dict(self) -> dict[str, Any]:
        """The result as the JSON-able dict of the ``claims.json`` schema."""
        checks = [c.to_dict() for c in self.checks]
        return _clean(
            {
                "claim_id": self.claim_id,
                "title": self.title,
                "statement": self.statement,
                "status": self.status,
                "passed": self.passed,
                "parameters": self.parameters,
                "predicted": {c["name"]: c["predicted"] for c in checks},
                "measured": {c["name"]: c["measured"] for c in checks},
                "tolerance": {c["name"]: c["tolerance"] for c in checks},
                "tolerance_source": self.tolerance_sources,
                "checks": checks,
                "independent_checks": len(self.independent_checks),
                "independent_passed": sum(c.passed for c in self.independent_checks),
                "notes": self.notes,
                "figures": self.figures,
                "figure_data": [f.to_dict() for f in self.figure_data],
                "error": self.error,
                "runtime_s": self.runtime_s,
            }
        )


@dataclass(frozen=True)
class Profile:
    """How much work a run does: ``quick`` (minutes, CI) or ``full`` (the publication run)."""

    name: Literal["quick", "full"]

    def pick(self, quick: Any, full: Any) -> Any:
        """The value for this profile."""
        return quick if self.name == "quick" else full


PROFILES = ("quick", "full")


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ValueError naming the allowed profiles otherwise."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {name!r}")
    return Profile(name)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClaimContext:
    """What a claim's ``run`` receives: the profile and its random stream."""

    profile: Profile
    seed: int
    claim_id: str

    def seed_sequence(self) -> np.random.SeedSequence:
        """A stream that depends only on (seed, claim id): claims are independent of order."""
        key = zlib.crc32(self.claim_id.encode())
        return np.random.SeedSequence(self.seed, spawn_key=(key,))

    def rng(self) -> np.random.Generator:
        """A fresh generator on this claim's stream."""
        return np.random.default_rng(self.seed_sequence())


@dataclass(frozen=True)
class ClaimSpec:
    """A registry entry: the claim's id, title and the module that checks it."""

    claim_id: str
    title: str
    module: str


#: The reproduction suite, in report order.
REGISTRY: tuple[ClaimSpec, ...] = (
    ClaimSpec("C1", "Definitions: mass forgetting, drift and starvation", "c1_definitions"),
    ClaimSpec("C2", "Forward KL on new data drives the old weight to zero", "c2_forward_kl"),
    ClaimSpec("C3", "Reverse KL converges to the target: no mass forgetting", "c3_reverse_kl"),
    ClaimSpec("C4", "Overlap-gated drift of the old component", "c4_drift"),
    ClaimSpec("C5", "Local geometry: Fisher information and contraction", "c5_geometry"),
    ClaimSpec("C6", "Forward KL with replay", "c6_forward_replay"),
    ClaimSpec("C7", "Reverse KL with replay: same optimum, no starvation", "c7_reverse_replay"),
    ClaimSpec("C8", "Near-on-policy methods: SDFT, TTT-Discover, OAPL", "c8_near_policy"),
    ClaimSpec("C9", "The four factors: phase diagrams", "c9_phase"),
    ClaimSpec("C10", "Continual post-training over K stages: the split retention matrix",
              "c10_continual"),
    ClaimSpec("Chen2025", "Reproduction of the Chen et al. (2025) toy", "chen2025"),
    ClaimSpec("LM", "Language-model benchmark beside the mixture theory", "lm"),
)


def claim_ids() -> list[str]:
    """Ids of every registered claim, in report order."""
    return [spec.claim_id for spec in REGISTRY]


def select(ids: list[str] | None = None) -> list[ClaimSpec]:
    """Registry entries for ``ids`` (all when None); ValueError naming unknown ids."""
    if not ids:
        return list(REGISTRY)
    known = {s.claim_id.lower(): s for s in REGISTRY}
    unknown = [i for i in ids if i.lower() not in known]
    if unknown:
        raise ValueError(f"claims must be among {', '.join(claim_ids())}, got {', '.join(unknown)}")
    return [known[i.lower()] for i in ids]


def run_claim(spec: ClaimSpec, profile: Profile, seed: int) -> ClaimResult:
    """Import the claim's module and run it; an exception becomes an ``error`` result.

    The result carries figure data only; :func:`forgetlab.report.build.build_report` renders it.
    """
    start = time.perf_counter()
    ctx = ClaimContext(profile, seed, spec.claim_id)
    try:
        module = importlib.import_module(f"forgetlab.claims.{spec.module}")
        runner: Callable[[ClaimContext], ClaimResult] = module.run
        result = runner(ctx)
    except Exception as err:  # noqa: BLE001 - a broken claim must not stop the others
        tail = traceback.format_exc(limit=-3)
        result = ClaimResult(spec.claim_id, spec.title, "", error=f"{type(err).__name__}: {err}")
        result.notes.append(tail)
    result.runtime_s = time.perf_counter() - start
    return result


def sim_config(**fields: Any) -> SimulationConfig:
    """A validated :class:`~forgetlab.simconfig.SimulationConfig` from keyword fields."""
    from forgetlab.simconfig import SimulationConfig

    return SimulationConfig.model_validate(fields)


def new_result(ctx: ClaimContext, statement: str, **parameters: Any) -> ClaimResult:
    """An empty result for the claim of ``ctx`` with its registry title."""
    title = next(s.title for s in REGISTRY if s.claim_id == ctx.claim_id)
    return ClaimResult(ctx.claim_id, title, statement, parameters=dict(parameters))
