"""A forgetting-budget planner: the smallest knob that keeps a fraction of the old task.

Question: after this post-training (a two-mode run, or a K-stage chain), what is the smallest
replay fraction / SDFT anchor that keeps at least ``keep`` of the old task, i.e.

  retained(v) = beta_T(v) / beta_0 >= keep   and   D(m_o(T), a) <= max_drift,

with beta_T, m_o(T) the end of the run with knob value v, while the new task is learned,
D(m_n(T), b) <= new_tolerance?

Prediction: the exact population trajectory (:func:`forgetlab.dynamics.simulate`, regime
``population``; K stages: :func:`forgetlab.continual.run_continual`). Root-finding: the
feasibility of v is assumed monotone (more replay, a stronger anchor keep more); the bracket
[lo, hi] is refined by evaluating a grid of ``GRID`` values in one vectorised batch, three
rounds (resolution (hi - lo) / 16^3), and the answer is the smallest feasible grid value of the
last round (conservative: the true threshold lies at most one grid step below it).
Verification in the same call: a finite-batch simulation at the answer (``seeds`` seeds of
``batch_size`` samples), whose mean retained fraction and standard error are reported.

Methods and knobs (name -> simulation method, knob, range):

- ``sft-replay``: SFT on new data with replay of old-task data, knob ``replay_fraction`` in
  [0, 1) (population fixed point beta = lambda, C6);
- ``sdft``: SDFT, knob ``lam_demo`` (demonstration anchor) in [0, 1] (mass stays near beta_0;
  the anchor sets the drift budget, C8);
- ``oapl``: OAPL with a linear reward r(x) = w x_1 (w = ``slope``) and ``syncs``
  synchronisations, knob ``tau`` in [0.05, 1000]. Each sync applies the linear tilt exactly
  (:func:`forgetlab.theory.near_policy.linear_tilt`): log odds += w (m_o - m_n)_1 / tau and
  both means move by Sigma w / tau, so the prediction is closed form; the root-finding runs
  on log tau. Verified by finite-batch OAPL (group size 64, learning rate 0.4 / tau^2: C8's
  0.1 at tau = 2, scaled with the loss's curvature, which grows like tau^2). The new mode
  starts at b (nothing to learn), so no new-task condition applies;
- K stages (``--config`` with ``[[stages]]``): every stage becomes SFT with replay of all
  earlier tasks, each with fraction v in [0, 1/(K-1)); retained = min_j R_w[K-1, j] / R_w[j, j]
  over the old tasks j < K - 1, predicted by the stage fixed points (exact for replay of the
  tasks' own data) and verified by a finite-batch chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from forgetlab.continual import ContinualConfig, parse_continual, predict_mass, run_continual
from forgetlab.dynamics import simulate
from forgetlab.simconfig import SimulationConfig, parse_config
from forgetlab.theory.near_policy import linear_tilt

GRID = 17
ROUNDS = 3


@dataclass(frozen=True)
class PlanMethod:
    """How a planner method maps to a simulation: method name, knob, range, fixed knobs."""

    method: str
    knob: str
    low: float
    high: float
    knobs: tuple[tuple[str, Any], ...] = ()


PLAN_METHODS: dict[str, PlanMethod] = {
    "sft-replay": PlanMethod("sft", "replay_fraction", 0.0, 0.999, (("replay", "old"),)),
    "sdft": PlanMethod("sdft", "lam_demo", 0.0, 1.0),
}


@dataclass
class Plan:
    """The planner's answer (``value`` None when no value in the range is feasible)."""

    method: str
    knob: str
    value: float | None
    predicted_retained: float
    simulated_retained: float | None
    simulated_se: float | None
    predicted_drift: float
    simulated_drift: float | None
    keep: float
    max_drift: float

    def as_json(self) -> dict[str, Any]:
        """``{"method", "knob", "value", "predicted_retained", "simulated_retained",
        "simulated_se"}`` plus the drift and the budget (null when there is none)."""
        return {"method": self.method, "knob": self.knob, "value": self.value,
                "predicted_retained": self.predicted_retained,
                "simulated_retained": self.simulated_retained, "simulated_se": self.simulated_se,
                "predicted_drift": self.predicted_drift, "simulated_drift": self.simulated_drift,
                "keep": self.keep,
                "max_drift": self.max_drift if np.isfinite(self.max_drift) else None}


def _check_budget(keep: float, max_drift: float) -> None:
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"--keep (fraction of the old task) must lie in (0, 1], got {keep:g}")
    if not max_drift > 0.0:
        raise ValueError(f"--max-drift must be > 0, got {max_drift:g}")


Evaluation = tuple[np.ndarray, np.ndarray, np.ndarray]


def smallest_feasible(evaluate: Callable[[np.ndarray], Evaluation], low: float, high: float
                      ) -> tuple[float | None, float, float]:
    """Grid-refined bracketing of the smallest feasible v in [low, high]; ``evaluate(values)``
    returns (feasible, retained, drift) arrays. Returns (value or None, retained, drift) at the
    answer (at ``high`` when none is feasible)."""
    lo, hi = low, high
    best: tuple[float, float, float] | None = None
    for _ in range(ROUNDS):
        grid = np.linspace(lo, hi, GRID)
        ok, retained, drift = evaluate(grid)
        if not ok.any():
            if best is None:
                return None, float(retained[-1]), float(drift[-1])
            break
        first = int(np.argmax(ok))
        best = (float(grid[first]), float(retained[first]), float(drift[first]))
        if first == 0:
            break
        lo, hi = float(grid[first - 1]), float(grid[first])
    assert best is not None
    return best


def default_problem(separation: float) -> SimulationConfig:
    """The two-mode run the planner uses with ``--separation``: d = 1, beta_0 = 0.5, the new mean
    starting half way, 300 gd steps at learning rate 0.5."""
    return parse_config({"method": "sft", "steps": 300, "stride": 300, "learning_rate": 0.5,
                         "problem": {"dim": 1, "separation": separation, "beta0": 0.5}})


def plan_two_mode(name: str, keep: float, base: SimulationConfig, max_drift: float = np.inf,
                  seeds: int = 32, batch_size: int = 64, new_tolerance: float = 0.5) -> Plan:
    """Plan the knob of method ``name`` on the two-mode run ``base`` (its method and knobs are
    replaced). A value is feasible when the old task is kept (retained >= keep, drift <=
    max_drift) and the new one learned: D(m_n(T), b) <= new_tolerance (without it SDFT's
    anchor 0, which never learns the new task, would win)."""
    if name not in PLAN_METHODS:
        raise ValueError(f"--method must be one of {', '.join(PLAN_METHODS)}, got {name!r}")
    _check_budget(keep, max_drift)
    spec = PLAN_METHODS[name]
    fixed = dict(spec.knobs)
    base = base.with_updates(method=spec.method, knobs={}, regime="population", seeds=1,
                             exact_metrics=False)
    beta0 = base.problem.beta0

    def configs(values: np.ndarray, **extra: Any) -> list[SimulationConfig]:
        return [base.with_updates(knobs={**fixed, spec.knob: float(v)}, **extra)
                for v in values]

    def evaluate(values: np.ndarray) -> Evaluation:
        traj = simulate(configs(values))
        retained, drift = traj.weight_old[:, 0, -1] / beta0, traj.drift[:, 0, -1]
        ok = (retained >= keep) & (drift <= max_drift)
        ok &= traj.new_mode_error[:, 0, -1] <= new_tolerance
        return ok, retained, drift

    value, retained, drift = smallest_feasible(evaluate, spec.low, spec.high)
    sim = se = sim_drift = None
    if value is not None:
        traj = simulate(configs(np.array([value]), regime="finite", seeds=seeds,
                                batch_size=batch_size))
        ret = traj.weight_old[0, :, -1] / beta0
        sim, se = float(ret.mean()), float(ret.std(ddof=1) / np.sqrt(len(ret)))
        sim_drift = float(traj.drift[0, :, -1].mean())
    return Plan(name, spec.knob, value, retained, sim, se, drift, sim_drift, keep, max_drift)


def plan_oapl(keep: float, separation: float, max_drift: float = np.inf, seeds: int = 16,
              syncs: int = 2, lag: int = 150, slope: float = 0.5, batch_size: int = 64) -> Plan:
    """The smallest OAPL tau keeping ``keep`` of the old
    mass after ``syncs`` synchronisations under r(x) = slope x_1 (d = 1, beta_0 = 0.5,
    a = 0, b = separation, the learner's new mode at b)."""
    _check_budget(keep, max_drift)
    if not 0.0 < separation <= 40.0:
        raise ValueError(f"--separation must lie in (0, 40], got {separation:g}")
    beta0 = 0.5

    def predict(taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        retained, drift = np.empty(taus.size), np.empty(taus.size)
        for i, tau in enumerate(taus):
            lo, m_o, m_n = np.zeros(()), np.zeros(1), np.full(1, separation)
            for _ in range(syncs):
                lo, m_o, m_n = linear_tilt(lo, m_o, m_n, 1.0, [slope], tau)
            retained[i], drift[i] = expit(float(lo)) / beta0, abs(float(m_o[0]))
        return retained, drift

    def evaluate(log_taus: np.ndarray) -> Evaluation:
        retained, drift = predict(np.exp(log_taus))
        return (retained >= keep) & (drift <= max_drift), retained, drift

    log_tau, retained, drift = smallest_feasible(evaluate, np.log(0.05), np.log(1000.0))
    if log_tau is None:
        return Plan("oapl", "tau", None, retained, None, None, drift, None, keep, max_drift)
    tau = float(np.exp(log_tau))
    cfg = parse_config({"method": "oapl", "regime": "finite", "steps": syncs * lag,
                        "stride": lag, "learning_rate": 0.4 / tau**2, "batch_size": batch_size,
                        "seeds": seeds, "exact_metrics": False,
                        "knobs": {"tau": tau, "lag": lag, "group_size": 64,
                                  "reward": "callable",
                                  "reward_fn": lambda x: slope * x[..., 0]},
                        "problem": {"dim": 1, "separation": separation, "beta0": beta0,
                                    "new_mean_start": 1.0}})
    traj = simulate(cfg)
    ret = traj.weight_old[0, :, -1] / beta0
    return Plan("oapl", "tau", tau, retained, float(ret.mean()),
                float(ret.std(ddof=1) / np.sqrt(len(ret))), drift,
                float(traj.drift[0, :, -1].mean()), keep, max_drift)


def _chain_with_replay(config: ContinualConfig, value: float, **extra: Any) -> ContinualConfig:
    """The chain with every stage turned into SFT replaying all earlier tasks at ``value``."""
    data = config.model_dump()
    data["stages"] = [{**s, "method": "sft", "replay": list(range(i)),
                       "replay_fraction": float(value), "keep": None}
                      for i, s in enumerate(data["stages"], start=1)]
    return parse_continual({**data, **extra})


def _retention(mass: np.ndarray) -> tuple[float, int]:
    """(min_j R[K-1, j] / R[j, j] over old tasks j < K - 1, the arg-min j)."""
    k = mass.shape[0]
    ratios = np.array([mass[-1, j] / mass[j, j] for j in range(k - 1)])
    j = int(np.argmin(ratios))
    return float(ratios[j]), j


def plan_chain(config: ContinualConfig, keep: float, max_drift: float = np.inf,
               seeds: int = 32) -> Plan:
    """The smallest per-stage replay fraction (of every earlier task) keeping every old task
    above ``keep`` of its mass right after it was learned.

    Prediction: the stage fixed points (:func:`forgetlab.continual.predict_mass`; with replay
    of the tasks' own data they are exact: w_j = lambda, drift 0). Verification: the chain run
    by finite-batch gd (``seeds`` seeds); its drift is reported beside ``max_drift`` (the
    predicted drift is 0).
    """
    _check_budget(keep, max_drift)
    k = config.n_tasks
    high = min(0.999, (1.0 - 1e-3) / (k - 1))

    def evaluate(values: np.ndarray) -> Evaluation:
        retained = np.array([_retention(predict_mass(_chain_with_replay(config, v)))[0]
                             for v in values])
        return retained >= keep, retained, np.zeros_like(retained)

    value, retained, drift = smallest_feasible(evaluate, 0.0, high)
    sim = se = sim_drift = None
    if value is not None:
        gd = config.model_copy(update={"stages": [s.model_copy(update={"optimizer": "gd"})
                                                  for s in config.stages]})
        fin = _chain_with_replay(gd, value, regime="finite", seeds=seeds)
        res = run_continual(fin)
        sim, j = _retention(res.retained_mass)
        se = float(res.retained_mass_se[-1, j] / res.retained_mass[j, j])
        sim_drift = float(np.max(res.drift[-1, :k - 1]))
    return Plan("sft-replay (every stage)", "replay_fraction", value, retained, sim, se, drift,
                sim_drift, keep, max_drift)
