"""C1: the forgetting measures are what their definitions say, on samples and on runs.

- Drift quality loss: KL(p_old || phi(.; m_o)) = delta^2 / 2 with delta = D(m_o, a); checked
  against a Monte Carlo average of log phi(x; a) - log phi(x; m_o), x ~ p_old (4 standard errors).
- Starvation: the old-component count of B on-policy draws is Binomial(B, beta), so
  P(starved) = (1 - beta)^B; checked against the frequency of batches without an old draw
  sampled from the mixture (4 binomial standard errors).
- Mass forgetting and drift on runs: a simulated forward-KL run records beta(t) and
  delta(t) = D(m_o(t), a); recomputing both from the recorded parameters must agree to floating
  point, and the supremum of the recorded drift equals the maximum over the recorded path.
"""

from __future__ import annotations

import numpy as np

from forgetlab import presets
from forgetlab.claims.base import ClaimContext, ClaimResult, new_result
from forgetlab.claims.figures import Panel
from forgetlab.dynamics import simulate
from forgetlab.gaussian import gaussian_kl, mahalanobis
from forgetlab.mixture import TwoModeMixture

STATEMENT = (
    "Forgetting has two measurable forms: mass forgetting (the old weight beta(t) collapses) and "
    "old-component drift delta(t) = D(m_o(t), a), whose quality loss is KL(p_old || phi(.; m_o)) = "
    "delta^2/2. A batch of B on-policy draws is starved of the old mode with probability "
    "(1 - beta)^B."
)

N_SIGMA = 4.0


def _drift_loss(res: ClaimResult, rng: np.random.Generator, n: int, ax: Panel) -> None:
    dim = 3
    cov = np.diag([1.0, 2.0, 0.5])
    a = np.zeros(dim)
    deltas = np.array([0.25, 0.5, 1.0, 1.5, 2.0])
    direction = np.array([1.0, -1.0, 0.5])
    unit = direction / float(mahalanobis(direction, np.zeros(dim), cov))
    m_o = deltas[:, None] * unit  # [k, d], D(m_o, a) = deltas
    exact = gaussian_kl(a, m_o, cov)  # [k]
    old = TwoModeMixture(1.0, a, a, cov)
    x = old.sample(n, rng)[None, :, :]  # [1, n, d]
    prec = np.linalg.inv(cov)
    diff_m = x - m_o[:, None, :]  # [k, n, d]
    quad_m = np.einsum("kni,ij,knj->kn", diff_m, prec, diff_m)
    quad_a = np.einsum("kni,ij,knj->kn", x - a, prec, x - a)
    log_ratio = 0.5 * (quad_m - quad_a)  # log phi(x; a) - log phi(x; m_o), [k, n]
    mc = log_ratio.mean(axis=1)
    se = log_ratio.std(axis=1, ddof=1) / np.sqrt(n)
    # one sample serves every delta, so the five comparisons are one check: the worst of them
    z = np.abs(mc - exact) / se
    worst = int(np.argmax(z))
    res.check(f"KL(p_old||phi(m_o)) = delta^2/2, worst of delta={list(deltas)} "
              f"(delta={deltas[worst]:g})", exact[worst], mc[worst], N_SIGMA * se[worst],
              "Monte Carlo standard error",
              predicted_by="closed form", measured_by="Monte Carlo", independent=True)
    res.notes.append("drift loss by delta (exact, Monte Carlo +- s.e.): " + "; ".join(
        f"{d_k:g}: {e_k:.4f}, {m_k:.4f} +- {s_k:.4f}"
        for d_k, e_k, m_k, s_k in zip(deltas, exact, mc, se, strict=True)))
    ax.series(deltas, exact, mc, se)
    ax.label("drift delta = D(m_o, a) [Mahalanobis units]", "KL(p_old || phi(.; m_o)) [nats]",
          "quality loss of drift = delta^2 / 2")


def _starvation(res: ClaimResult, rng: np.random.Generator, n_batches: int, ax: Panel) -> None:
    betas = np.array([0.02, 0.05, 0.1, 0.2])
    sizes = np.array([1, 2, 4, 8, 16, 32])
    model = TwoModeMixture(betas, np.zeros(1), np.full(1, 4.0), 1.0)  # batch [k]
    _, is_old = model.sample_with_labels(n_batches * sizes.max(), rng)  # [k, n*Bmax]
    is_old = is_old.reshape(len(betas), n_batches, sizes.max())
    for i, beta in enumerate(betas):
        exact = (1.0 - beta) ** sizes
        freq = np.array([np.mean(~is_old[i, :, :b].any(axis=1)) for b in sizes])
        se = np.sqrt(exact * (1.0 - exact) / n_batches)
        for b, e, f, s in zip(sizes, exact, freq, se, strict=True):
            res.check(f"P(starved) beta={beta:g} B={b}", e, f, N_SIGMA * s,
                      "Monte Carlo standard error",
                      predicted_by="closed form", measured_by="Monte Carlo", independent=True)
        ax.series(sizes, exact, freq, se, color_index=i, name=f"beta={beta:g}")
    ax.xscale = "log2"
    ax.yscale = "log"
    ax.label("batch size B [samples]", "P(batch has no old draw) [probability]",
          "starvation = (1 - beta)^B")


def _runs(res: ClaimResult, ctx: ClaimContext, ax: Panel) -> None:
    config = presets.get("sft", steps=ctx.profile.pick(200, 1000), exact_metrics=False)
    traj = simulate(config)
    beta = np.asarray(traj.weight_old)
    recomputed = mahalanobis(traj.mean_old, traj.target_mean_old, traj.cov)
    drift = np.asarray(traj.drift)
    worst = float(np.max(np.abs(drift - recomputed)))
    res.check("max |drift - D(m_o, a)| on every run", 0.0, worst, 1e-9, "floating point",
              predicted_by="algebraic identity", measured_by="recorded run", independent=False)
    res.check("sup drift = max over recorded path", float(np.max(drift)),
              float(np.max(np.asarray(traj.drift_sup)[..., -1])), 1e-9, "floating point",
              predicted_by="algebraic identity", measured_by="recorded run", independent=False)
    ax.series(traj.steps, beta.reshape(-1, beta.shape[-1])[0], None)
    ax.label("step t [iterations]", "retained old weight beta(t) [probability]",
          "mass forgetting on an SFT run")


def run(ctx: ClaimContext) -> ClaimResult:
    """Check the definitions of drift loss, starvation and the per-run measures."""
    rng = ctx.rng()
    n = ctx.profile.pick(200_000, 2_000_000)
    n_batches = ctx.profile.pick(20_000, 200_000)
    res = new_result(ctx, STATEMENT, mc_samples=n, starvation_batches=n_batches,
                     tolerance_rule=f"{N_SIGMA:g} standard errors")
    fig = res.figure(3, title="C1: definitions of the forgetting measures")
    axes = fig.panels
    _drift_loss(res, rng, n, axes[0])
    _starvation(res, rng, n_batches, axes[1])
    _runs(res, ctx, axes[2])
    return res
