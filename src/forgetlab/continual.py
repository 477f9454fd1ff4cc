"""Continual post-training over K stages and the split retention matrix.

The chain. K tasks with true means a_0 .. a_{K-1} (one shared Sigma). The base model knows
task 0 exactly: q = N(a_0, Sigma). Stage i = 1 .. K-1 brings task i: a new mode enters the
learner with weight ``entry_weight`` (the others are scaled by 1 - entry_weight) at
m_i(0) = a_{i-1} + new_mean_start (a_i - a_{i-1}), and the learner (i + 1 modes) is trained
for ``steps`` steps by the stage's method:

- ``sft``: forward KL E_D[-log q] on D = sum_{j in replay} lambda_j N(a_j) +
  (1 - sum lambda_j) N(a_i) (replay of chosen earlier tasks' data, each with its own
  fraction; no replay is plain SFT on the new task);
- ``reverse_kl``: KL(q || p_i) to a target p_i = sum_{j in keep} alpha_j N(a_j) +
  alpha_new N(a_i) that keeps the chosen earlier modes (equal weights unless ``new_weight``);
- ``sdft``: reverse KL to an EMA teacher (rate tau_ema, every step) whose new mean is pulled
  to the demonstration a_i: m_i^T = (1 - lam_demo) EMA(m_i) + lam_demo a_i.

Regimes: ``population`` (exact gradients, :mod:`forgetlab.kpopulation`; gd in the logits and
means, or EM for ``sft``) and ``finite`` (B samples per step per seed, vectorised over seeds:
minibatch scores for ``sft``, the score-function estimator with a batch-mean baseline,
E_q[(log q/p - mean) grad log q], for the reverse-KL methods).

The split retention matrix (rows i = 0 .. K-1: after stage i; columns j: task j; entries with
j > i are undefined, NaN): retained mass R_w[i, j] = w_j and drift R_D[i, j] = D(m_j, a_j).
Theory per stage (fixed points): forward KL drains every mode outside D to 0 (slowly, like
1/t) and sends replayed modes to w_j = lambda_j exactly; reverse KL sends w to the target's
weights (dropped modes to 0); SDFT leaves the weights where the stage found them. Drift under
reverse KL is overlap-gated: at a stationary point m_j + sum_l eps_jl (m_l - m_j) =
a_j + sum_l eps*_jl (a_l - a_j), so D(m_j, a_j) <= sum_l B*_jl D(a_j, a_l) + sum_l B_jl D(m_j, m_l)
with the lemma bounds B_jl = (1/2) sqrt(w_l / w_j) BC_jl (learner) and B* (target).

Summaries (on the mass, with a_j's own row as reference): average retention
mean_j R_w[K-1, j] / R_w[j, j], backward transfer mean_j (R_w[K-1, j] - R_w[j, j]) and
forgetting mean_j (max_{j <= i < K-1} R_w[i, j] - R_w[K-1, j]), over j < K - 1.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.special import log_softmax

from forgetlab import kpopulation as kp
from forgetlab._validation import as_covariance, validated
from forgetlab.gaussian import Factorised, factorise
from forgetlab.kmixture import KModeMixture
from forgetlab.methods.base import Streams

Array = NDArray[np.float64]
METHODS = ("sft", "reverse_kl", "sdft")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StageConfig(_Strict):
    """One post-training stage (its task is the next mode)."""

    method: Literal["sft", "reverse_kl", "sdft"] = "sft"
    mean: list[float] | None = Field(None, description="true mean of this stage's task")
    replay: list[int] = Field(default_factory=list, description="earlier tasks replayed (sft)")
    replay_fraction: float | list[float] = Field(
        0.0, description="replay fraction per replayed task (one number or one per task)")
    keep: list[int] | None = Field(None, description="earlier modes the reverse-KL target "
                                   "keeps (default all)")
    new_weight: float | None = Field(None, gt=0.0, le=1.0,
                                     description="target weight of the new mode")
    lam_demo: float = Field(0.1, ge=0.0, le=1.0)
    tau_ema: float = Field(0.05, gt=0.0, le=1.0)
    steps: int = Field(100, ge=1, le=20_000)
    learning_rate: float = Field(0.5, gt=0.0)
    optimizer: Literal["gd", "em"] = "gd"


class ContinualConfig(_Strict):
    """A K-stage chain (see the module docstring); ``stages`` lists stages 1 .. K-1."""

    dim: int = Field(2, ge=1, le=1000)
    separation: float = Field(4.0, gt=0.0, le=40.0,
                              description="D between consecutive tasks (default layout)")
    base_mean: list[float] | None = None
    cov: float | list[float] | list[list[float]] = 1.0
    entry_weight: float = Field(0.5, gt=0.0, lt=1.0)
    new_mean_start: float = 0.5
    regime: Literal["population", "finite"] = "population"
    batch_size: int = Field(64, ge=1)
    seeds: int = Field(8, ge=1, le=10_000)
    seed: int = Field(0, ge=0)
    stages: list[StageConfig] = Field(min_length=1, max_length=15)

    @model_validator(mode="after")
    def _consistent(self) -> ContinualConfig:
        as_covariance(self.cov, self.dim)
        for name, vec in [("base_mean", self.base_mean),
                          *((f"stages[{i + 1}].mean", s.mean) for i, s in enumerate(self.stages))]:
            if vec is not None and len(vec) != self.dim:
                raise ValueError(f"{name} has {len(vec)} entries, expected dim = {self.dim}")
        for i, s in enumerate(self.stages, start=1):
            where = f"stages[{i}]"
            for j in [*s.replay, *(s.keep or [])]:
                if not 0 <= j < i:
                    raise ValueError(f"{where}: task {j} is not an earlier task "
                                     f"(allowed 0..{i - 1})")
            if not isinstance(s.replay_fraction, float) and len(s.replay_fraction) != len(s.replay):
                raise ValueError(f"{where}.replay_fraction needs one entry per replayed task")
            fr = _fractions(s)
            if np.any(fr < 0) or (s.replay and np.sum(fr) >= 1.0):
                raise ValueError(f"{where}.replay_fraction: each in [0, 1) with total < 1, "
                                 f"got {fr.tolist()}")
            if s.method != "sft" and s.replay:
                raise ValueError(f"{where}.replay: replay is for method 'sft'")
            if s.optimizer == "em" and (s.method != "sft" or self.regime != "population"):
                raise ValueError(f"{where}.optimizer: 'em' needs method 'sft' and regime "
                                 "'population'")
        return self

    @property
    def n_tasks(self) -> int:
        """K = number of stages + 1 (the base model's task)."""
        return len(self.stages) + 1

    def covariance(self) -> Array:
        """Sigma ``[d, d]``."""
        return as_covariance(self.cov, self.dim)

    def task_means(self) -> Array:
        """a_0 .. a_{K-1} ``[K, d]``: given, or consecutive tasks at Mahalanobis distance
        ``separation`` on a line (d = 1) or a circle in the first two whitened axes."""
        k, d = self.n_tasks, self.dim
        z = np.zeros((k, d))
        if d == 1:
            z[:, 0] = self.separation * np.arange(k)
        else:
            radius = self.separation / (2.0 * np.sin(np.pi / k))
            angle = 2.0 * np.pi * np.arange(k) / k
            z[:, 0], z[:, 1] = radius * (np.cos(angle) - 1.0), radius * np.sin(angle)
        base = np.zeros(d) if self.base_mean is None else np.asarray(self.base_mean, float)
        out = base + factorise(self.covariance(), d).colour(z)
        for i, s in enumerate(self.stages, start=1):
            if s.mean is not None:
                out[i] = s.mean
        return out


def _fractions(stage: StageConfig) -> Array:
    fr = stage.replay_fraction
    return np.full(len(stage.replay), fr) if isinstance(fr, float) else np.asarray(fr, float)


def parse_continual(data: dict[str, Any]) -> ContinualConfig:
    """Validate a mapping; errors become one ``ValueError`` line naming the field."""
    return validated(ContinualConfig, data)


def read_config_toml(path: str | Path) -> dict[str, Any]:
    """The table of a TOML config file; ValueError naming the file when it cannot be read
    (missing, not UTF-8) or is not valid TOML."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {str(path)!r} cannot be read: "
                         f"{getattr(err, 'strerror', None) or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def load_continual(path: str | Path) -> ContinualConfig:
    """A :class:`ContinualConfig` from TOML (stages as ``[[stages]]`` tables)."""
    return parse_continual(read_config_toml(path))


PRESETS: dict[str, dict[str, Any]] = {
    "sft-chain": {"stages": [{"method": "sft", "optimizer": "em", "steps": 40}] * 3},
    "replay-chain": {"stages": [
        {"method": "sft", "optimizer": "em", "steps": 40, "replay": list(range(i)),
         "replay_fraction": 0.15} for i in (1, 2, 3)]},
    "reverse-chain": {"stages": [{"method": "reverse_kl", "steps": 40,
                                  "learning_rate": 1.0}] * 3},
}


def preset(name: str) -> ContinualConfig:
    """A named chain (K = 4, d = 2, separation 4): sft-chain, replay-chain, reverse-chain."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return parse_continual(PRESETS[name])


# -- one stage: data, target, predictions ----------------------------------------------
def stage_data(stage: StageConfig, index: int, means: Array, cov: Array) -> KModeMixture:
    """The SFT training distribution of stage ``index`` (modes 0..index, zero weight if not
    replayed)."""
    w = np.zeros(index + 1)
    w[stage.replay] = _fractions(stage)
    w[index] = 1.0 - w.sum()
    return KModeMixture(w, means[:index + 1], cov)


def stage_target(stage: StageConfig, index: int, means: Array, cov: Array) -> KModeMixture:
    """The reverse-KL target of stage ``index``: kept modes and the new one."""
    keep = list(range(index)) if stage.keep is None else sorted(set(stage.keep))
    w = np.zeros(index + 1)
    new = 1.0 / (len(keep) + 1) if stage.new_weight is None else stage.new_weight
    w[index] = new
    if keep:
        w[keep] = (1.0 - new) / len(keep)
    elif new != 1.0:
        w[index] = 1.0
    return KModeMixture(w, means[:index + 1], cov)


def predicted_weights(stage: StageConfig, index: int, start: Array, means: Array, cov: Array
                      ) -> Array:
    """The fixed point of the stage's weights (``[index + 1]``) from the start weights."""
    if stage.method == "sft":
        return stage_data(stage, index, means, cov).weights
    if stage.method == "reverse_kl":
        return stage_target(stage, index, means, cov).weights
    return np.asarray(start, dtype=float)  # sdft: the teacher carries the student's weights


# -- the training loops ----------------------------------------------------------------
def _population_stage(stage: StageConfig, index: int, learner: KModeMixture, means: Array,
                      progress: Callable[[], None] | None) -> KModeMixture:
    cov = learner.cov
    data = stage_data(stage, index, means, cov)
    target = stage_target(stage, index, means, cov)
    eta, mu = np.log(learner.weights), learner.means.copy()
    ema_eta, ema_mu = eta.copy(), mu.copy()
    for _ in range(stage.steps):
        q = KModeMixture.from_logits(eta, mu, cov)
        if stage.method == "sft" and stage.optimizer == "em":
            keep = data.weights > 0
            proj = kp.Projection([q, data])
            e0, e1 = kp.responsibility_moments(q, data.means[keep], proj)
            v = data.weights[keep]
            mass = v @ e0
            moment = np.einsum("m,mk,md->kd", v, e0, data.means[keep]) + np.einsum(
                "m,mkd->kd", v, e1)
            eta = np.log(np.maximum(mass, 1e-300))
            mu = np.where(mass[:, None] > 1e-300, moment / np.maximum(mass, 1e-300)[:, None], mu)
        else:
            if stage.method == "sft":
                g_eta, g_mu = kp.forward_kl_gradient(q, data)
            elif stage.method == "reverse_kl":
                g_eta, g_mu = kp.reverse_kl_gradient(q, target)
            else:
                teacher = KModeMixture.from_logits(
                    ema_eta, _teacher_means(ema_mu, index, means[index], stage.lam_demo), cov)
                g_eta, g_mu = kp.reverse_kl_gradient(q, teacher)
            eta, mu = eta - stage.learning_rate * g_eta, mu - stage.learning_rate * g_mu
            eta = eta - eta.max()
            ema_eta = stage.tau_ema * eta + (1 - stage.tau_ema) * ema_eta
            ema_mu = stage.tau_ema * mu + (1 - stage.tau_ema) * ema_mu
        if progress is not None:
            progress()
    return KModeMixture.from_logits(eta, mu, cov)


def _teacher_means(ema_mu: Array, index: int, demo: Array, lam_demo: float) -> Array:
    """SDFT teacher means ``[..., K, d]``: the EMA means with mode ``index`` pulled to the
    demonstration, m_i^T = (1 - lam_demo) EMA(m_i) + lam_demo a_i."""
    mu = ema_mu.copy()
    mu[..., index, :] = (1.0 - lam_demo) * mu[..., index, :] + lam_demo * demo
    return mu


def _batch_scores(eta: Array, mu: Array, factor: Factorised, x: Array
                  ) -> tuple[Array, Array, Array]:
    """For S learners (eta ``[S, K]``, mu ``[S, K, d]``) and x ``[S, B, d]``: log q ``[S, B]``
    (up to the shared normaliser), d/deta ``[S, B, K]`` and d/dm ``[S, B, K, d]``."""
    prec = factor.precision
    z = factor.whiten(x[:, :, None, :] - mu[:, None, :, :])
    joint = log_softmax(eta, axis=-1)[:, None, :] - 0.5 * np.sum(z * z, axis=-1)
    log_q = np.logaddexp.reduce(joint, axis=-1)
    r = np.exp(joint - log_q[..., None])
    w = np.exp(log_softmax(eta, axis=-1))[:, None, :]
    d_mu = r[..., None] * ((x[:, :, None, :] - mu[:, None, :, :]) @ prec)
    return log_q, r - w, d_mu


def _batch_log_prob(eta: Array, mu: Array, factor: Factorised, x: Array) -> Array:
    z = factor.whiten(x[:, :, None, :] - mu[:, :, None, :].swapaxes(1, 2))
    return np.logaddexp.reduce(log_softmax(eta, axis=-1)[:, None, :]
                               - 0.5 * np.sum(z * z, axis=-1), axis=-1)


def _sample(eta: Array, mu: Array, factor: Factorised, n: int, rng: Streams) -> Array:
    """n draws per learner ``[S, n, d]`` from softmax(eta), mu ``[S, K, d]``."""
    cum = np.cumsum(np.exp(log_softmax(eta, axis=-1)), axis=-1)
    u = rng.uniform(n)[0]
    labels = np.minimum(np.sum(u[..., None] > cum[:, None, :], axis=-1), eta.shape[1] - 1)
    centres = np.take_along_axis(mu, labels[..., None], axis=1)
    return centres + factor.colour(rng.normal(n, mu.shape[-1])[0])


def _finite_stage(stage: StageConfig, index: int, eta: Array, mu: Array, means: Array,
                  cov: Array, batch: int, rng: Streams, progress: Callable[[], None] | None
                  ) -> tuple[Array, Array]:
    factor = factorise(cov, cov.shape[-1])
    data = stage_data(stage, index, means, cov)
    target = stage_target(stage, index, means, cov)
    data_eta = np.broadcast_to(np.log(np.maximum(data.weights, 1e-300)), eta.shape)
    data_mu = np.broadcast_to(data.means, mu.shape)
    ema_eta, ema_mu = eta.copy(), mu.copy()
    for _ in range(stage.steps):
        if stage.method == "sft":
            x = _sample(np.where(data_eta < -600, -np.inf, data_eta), data_mu, factor, batch, rng)
            _, s_eta, s_mu = _batch_scores(eta, mu, factor, x)
            g_eta, g_mu = -s_eta.mean(axis=1), -s_mu.mean(axis=1)
        else:
            x = _sample(eta, mu, factor, batch, rng)
            log_q, s_eta, s_mu = _batch_scores(eta, mu, factor, x)
            if stage.method == "reverse_kl":
                ref_eta = np.broadcast_to(np.log(np.maximum(target.weights, 1e-300)), eta.shape)
                log_p = _batch_log_prob(np.where(ref_eta < -600, -np.inf, ref_eta),
                                        np.broadcast_to(target.means, mu.shape), factor, x)
            else:
                log_p = _batch_log_prob(
                    ema_eta, _teacher_means(ema_mu, index, means[index], stage.lam_demo),
                    factor, x)
            f = log_q - log_p
            c = f - f.mean(axis=1, keepdims=True)
            g_eta = np.einsum("sb,sbk->sk", c, s_eta) / batch
            g_mu = np.einsum("sb,sbkd->skd", c, s_mu) / batch
        eta = eta - stage.learning_rate * g_eta
        mu = mu - stage.learning_rate * g_mu
        eta = eta - eta.max(axis=1, keepdims=True)
        ema_eta = stage.tau_ema * eta + (1 - stage.tau_ema) * ema_eta
        ema_mu = stage.tau_ema * mu + (1 - stage.tau_ema) * ema_mu
        if progress is not None:
            progress()
    return eta, mu


# -- results ---------------------------------------------------------------------------
@dataclass
class ContinualResult:
    """The split retention matrix of a chain and its predictions.

    ``retained_mass``, ``drift`` ``[K, K]`` (mean over seeds; NaN where j > i),
    ``retained_mass_se``, ``drift_se`` (standard errors over seeds; 0 in the population
    regime), ``predicted_mass`` ``[K, K]`` (stage fixed points), ``predicted_drift_bound``
    ``[K, K]`` (overlap-gated bound after reverse-KL stages, NaN otherwise),
    ``overlap_gate`` ``[K, K]`` (lemma bound (1/2) BC(a_j, a_k) of the true modes).
    """

    config: ContinualConfig
    task_means: Array
    retained_mass: Array
    drift: Array
    retained_mass_se: Array
    drift_se: Array
    predicted_mass: Array
    predicted_drift_bound: Array
    overlap_gate: Array

    @property
    def n_tasks(self) -> int:
        """K."""
        return int(self.retained_mass.shape[0])

    def summary(self) -> dict[str, Any]:
        """Continual-learning summaries of the measured and the predicted mass, and drift."""
        out: dict[str, Any] = {}
        for prefix, mat in (("", self.retained_mass), ("predicted_", self.predicted_mass)):
            out.update({prefix + k: v for k, v in cl_summaries(mat).items()})
        last = self.drift[-1]
        out["final_drift"] = [float(v) for v in last]
        out["max_drift"] = [float(np.nanmax(self.drift[:, j])) for j in range(self.n_tasks)]
        out["mean_final_drift"] = float(np.mean(last[:-1])) if self.n_tasks > 1 else 0.0
        return out


def cl_summaries(mass: Array) -> dict[str, float]:
    """Average retention, backward transfer and forgetting from a retention matrix ``[K, K]``.

    Over old tasks j < K - 1 with R[j, j] the value right after learning task j:
    average_retention = mean_j R[K-1, j] / R[j, j], backward_transfer = mean_j
    (R[K-1, j] - R[j, j]), forgetting = mean_j (max_{j <= i < K-1} R[i, j] - R[K-1, j]),
    average_final_mass = mean_j R[K-1, j].
    """
    k = mass.shape[0]
    old = range(k - 1)
    if k < 2:
        return {"average_retention": 1.0, "backward_transfer": 0.0, "forgetting": 0.0,
                "average_final_mass": float(mass[-1, 0])}
    diag = np.array([mass[j, j] for j in old])
    final = np.array([mass[-1, j] for j in old])
    best = np.array([np.max(mass[j:k - 1, j]) for j in old])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diag > 0, final / diag, 0.0)
    return {"average_retention": float(np.mean(ratio)),
            "backward_transfer": float(np.mean(final - diag)),
            "forgetting": float(np.mean(best - final)),
            "average_final_mass": float(np.mean(final))}


def _drift_bound(q: KModeMixture, target: KModeMixture) -> Array:
    """sum_l B*_jl D(a_j, a_l) + sum_l B_jl D(m_j, m_l) per mode (lemma bounds, closed form);
    NaN for modes the target drops."""
    b_q, b_p = q.misassignment_bounds(), target.misassignment_bounds()
    for b in (b_q, b_p):
        np.fill_diagonal(b, 0.0)
    b_p = np.where(np.isfinite(b_p), b_p, 0.0)
    out = np.sum(b_p * target.distances(), axis=1) + np.sum(b_q * q.distances(), axis=1)
    return np.where(target.weights > 0, out, np.nan)  # a dropped mode has no restoring force


def predict_mass(config: ContinualConfig) -> Array:
    """The theory's retained mass ``[K, K]``: each stage's fixed point applied in turn (entry of
    the new mode scales the previous prediction by 1 - entry_weight). No dynamics are run."""
    k, cov, means = config.n_tasks, config.covariance(), config.task_means()
    pred = np.full((k, k), np.nan)
    pred[0, 0] = 1.0
    for i, stage in enumerate(config.stages, start=1):
        start = np.concatenate([(1 - config.entry_weight) * pred[i - 1, :i],
                                [config.entry_weight]])
        pred[i, :i + 1] = predicted_weights(stage, i, start, means, cov)
    return pred


def run_continual(config: ContinualConfig, progress: Callable[[], None] | None = None
                  ) -> ContinualResult:
    """Run the chain in the configured regime; ``progress()`` is called after every step."""
    k, cov = config.n_tasks, config.covariance()
    means = config.task_means()
    finite = config.regime == "finite"
    n_seeds = config.seeds if finite else 1
    shape = (k, k)
    mass = np.full((n_seeds, *shape), np.nan)
    drift = np.full((n_seeds, *shape), np.nan)
    pred = predict_mass(config)
    bound = np.full(shape, np.nan)
    mass[:, 0, 0], drift[:, 0, 0] = 1.0, 0.0
    eta = np.zeros((n_seeds, 1))
    mu = np.broadcast_to(means[:1], (n_seeds, 1, config.dim)).copy()
    rng = Streams([config.seed], [0], n_seeds) if finite else None
    factor = factorise(cov, config.dim)
    for i, stage in enumerate(config.stages, start=1):
        w_prev = np.exp(log_softmax(eta, axis=-1))
        start = means[i - 1] + config.new_mean_start * (means[i] - means[i - 1])
        w0 = np.concatenate([(1 - config.entry_weight) * w_prev,
                             np.full((n_seeds, 1), config.entry_weight)], axis=1)
        eta = np.log(w0)
        mu = np.concatenate([mu, np.broadcast_to(start, (n_seeds, 1, config.dim))], axis=1)
        if finite:
            assert rng is not None
            eta, mu = _finite_stage(stage, i, eta, mu, means, cov, config.batch_size, rng,
                                    progress)
        else:
            q = _population_stage(stage, i, KModeMixture(w0[0], mu[0], cov), means, progress)
            eta, mu = np.log(q.weights)[None], q.means[None].copy()
            if stage.method == "reverse_kl":
                bound[i, :i + 1] = _drift_bound(q, stage_target(stage, i, means, cov))
        w = np.exp(log_softmax(eta, axis=-1))
        mass[:, i, :i + 1] = w
        drift[:, i, :i + 1] = factor.distance(mu, means[:i + 1])
    se = (lambda a: a.std(axis=0, ddof=1) / np.sqrt(n_seeds)) if n_seeds > 1 else (
        lambda a: np.where(np.isnan(a[0]), np.nan, 0.0))
    gate = KModeMixture(np.full(k, 1.0 / k), means, cov).misassignment_bounds()
    np.fill_diagonal(gate, 0.0)
    return ContinualResult(config, means, mass.mean(axis=0), drift.mean(axis=0), se(mass),
                           se(drift), pred, bound, gate)


def _matrix(a: Array) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]


def result_json(result: ContinualResult) -> dict[str, Any]:
    """``{"stages", "retained_mass", "drift", "predicted_mass", "summary"}`` (docs/continual.md);
    undefined entries (task not learned yet) are null."""
    summary = result.summary()
    summary.update(regime=result.config.regime,
                   retained_mass_se=_matrix(result.retained_mass_se),
                   drift_se=_matrix(result.drift_se),
                   predicted_drift_bound=_matrix(result.predicted_drift_bound),
                   overlap_gate=_matrix(result.overlap_gate),
                   task_means=result.task_means.tolist(),
                   methods=[s.method for s in result.config.stages])
    return {"stages": result.n_tasks, "retained_mass": _matrix(result.retained_mass),
            "drift": _matrix(result.drift), "predicted_mass": _matrix(result.predicted_mass),
            "summary": summary}
