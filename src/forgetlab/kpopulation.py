"""Exact population expectations for K-mode mixtures sharing one covariance Sigma.

The reduction. After whitening z = L^{-1} x (Sigma = L L^T) the logits of every mixture
involved are l_k(z) = log w_k + z_k^T z - |z_k|^2 / 2 (z_k the whitened means), up to the
quadratic term shared by all. Let Q (``[d, r]``, orthonormal) span the differences of all the
whitened means of all mixtures that appear together (r <= M - 1 for M means, and r <= d).
Under z ~ N(z_mu, I) write z = z_mu + Q t + z_perp with t ~ N(0, I_r) and z_perp independent,
mean zero, orthogonal to Q: z_k^T z_perp is the same for every mean, so it cancels from every
softmax and every difference of log-sum-exps. Every expectation is therefore an r-dimensional
Gaussian integral over the discriminant coordinates t, whatever d is; first moments follow
from E[f (z - z_mu)] = Q E[f t] (z_perp has mean zero and is independent of f).

The rule (rank r <= 3). A tensor product of composite 12-point Gauss-Legendre rules on
[-7.75, 7.75]^r (the Gaussian mass outside is below 1e-14 per axis; nodes outside the ball
of radius 7.75 are dropped). A softmax or log-sum-exp of logits with slopes a_k (``[r]``) has its
complex singularities at imaginary distance >= pi / g from the real axes, g the largest
|a_j - a_k|. Panels of half-width h = min(0.75, pi / (1.5 g)) see them at Bernstein-ellipse
parameter rho >= 1.5 + sqrt(1 + 1.5^2) = 3.3, so the 12-point rule converges like
rho^{-24} ~ 4e-13 per panel, for any separation. The absolute error of expectations of
bounded integrands (responsibilities, their products, log-ratios of magnitude O(1)) is about
1e-12 (tests/test_kpopulation: against scipy dblquad in d = 2, quad in d = 1, Monte Carlo in
d = 5 and the two-mode engine for K = 2). The node count grows like (15.5 / 2h)^r * 12^r;
``MAX_NODES`` bounds it.

Rank r > 3 (more than four modes in general position in d > 3): no exact rule here. The
certified bound :func:`responsibility_bounds` gives every E[r_k] within
[1 - sum_{l != k} E[s_lk], min_{l != k} E[s_kl]], s_kl = sigmoid(l_k - l_l) the pairwise
posterior (r_k <= s_kl, and 1 - r_k = sum_l r_l <= sum_l s_lk), each E[s_kl] a 1-D integral
from :mod:`forgetlab.quadrature` (relative accuracy 1e-13); the interval is tight when the
modes are separated.

Coordinates: weight gradients are with respect to the logits eta (all K of them; the sum of
a weight gradient is zero), mean gradients with respect to the raw means.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray

from forgetlab.kmixture import KModeMixture
from forgetlab.quadrature import log_gaussian_expectation

Array = NDArray[np.float64]

MAX_RANK = 3
MAX_NODES = 6_000_000
_HALF_RANGE = 7.75
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(12)
_CHUNK = 400_000  # nodes per block (bounds memory)


def _check_same(mixtures: list[KModeMixture]) -> None:
    first = mixtures[0]
    for mix in mixtures[1:]:
        if mix.dim != first.dim:
            raise ValueError(f"mixtures have d={first.dim} and d={mix.dim}; they must share d")
        if not mix.factor.same(first.factor):
            raise ValueError("all mixtures must share one covariance")


def discriminant_basis(mixtures: list[KModeMixture]) -> Array:
    """Orthonormal Q ``[d, r]`` spanning the differences of all whitened means."""
    z = np.concatenate([m.whiten(m.means) for m in mixtures], axis=0)
    diffs = z[1:] - z[0]
    if diffs.shape[0] == 0:
        return np.zeros((z.shape[1], 0))
    _, sing, vt = np.linalg.svd(diffs, full_matrices=False)
    tol = 1e-12 * max(1.0, float(np.max(np.abs(z))))
    rank = int(np.sum(sing > tol))
    return np.ascontiguousarray(vt[:rank].T)


def _rule(rank: int, sharpness: float) -> tuple[Array, Array]:
    """Nodes ``[N, r]`` and weights ``[N]`` (times the N(0, I_r) density) for logit slopes
    differing by at most ``sharpness``; the half-width is rounded down to 0.75 * 2^(-n/4)
    so that rules are reused."""
    if rank == 0:
        return np.zeros((1, 0)), np.ones(1)
    need = min(0.75, np.pi / (1.5 * max(sharpness, 1e-300)))
    return _cached_rule(rank, int(np.ceil(4.0 * np.log2(0.75 / need) - 1e-9)))


@functools.lru_cache(maxsize=32)
def _cached_rule(rank: int, level: int) -> tuple[Array, Array]:
    half = 0.75 * 2.0 ** (-level / 4.0)
    panels = int(np.ceil(_HALF_RANGE / half))
    edges = np.linspace(-_HALF_RANGE, _HALF_RANGE, 2 * panels + 1)
    mid, hw = 0.5 * (edges[1:] + edges[:-1]), 0.5 * (edges[1:] - edges[:-1])
    t1 = (mid[:, None] + hw[:, None] * _GL_NODES).ravel()
    w1 = (hw[:, None] * _GL_WEIGHTS).ravel() * np.exp(-0.5 * t1**2) / np.sqrt(2.0 * np.pi)
    if t1.size**rank > MAX_NODES * 2:
        raise ValueError(f"the exact K-mode rule needs {t1.size}^{rank} nodes (separation too "
                         f"large for rank {rank}); use responsibility_bounds")
    grids = np.meshgrid(*([t1] * rank), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod([g.ravel() for g in np.meshgrid(*([w1] * rank), indexing="ij")], axis=0)
    keep = np.sum(nodes**2, axis=-1) <= _HALF_RANGE**2
    nodes, weights = nodes[keep], weights[keep]
    nodes.flags.writeable = False
    weights.flags.writeable = False
    return nodes, weights


class Projection:
    """The discriminant coordinates of a set of mixtures and the quadrature rule on them.

    ``logits(mix, mu, t)`` gives the logits of ``mix`` (up to the common terms) at nodes t
    under x ~ N(mu, Sigma).
    """

    def __init__(self, mixtures: list[KModeMixture]) -> None:
        _check_same(mixtures)
        self.mixtures = mixtures
        self.basis = discriminant_basis(mixtures)
        self.rank = int(self.basis.shape[1])
        if self.rank > MAX_RANK:
            raise ValueError(f"the means span {self.rank} discriminant directions; the exact "
                             f"K-mode engine handles at most {MAX_RANK} (use "
                             "responsibility_bounds)")
        sharp = 0.0
        for mix in mixtures:
            a = mix.whiten(mix.means) @ self.basis
            if a.shape[0] > 1:
                sharp = max(sharp, float(np.max(np.abs(a[:, None, :] - a[None, :, :]))))
        self.nodes, self.weights = _rule(self.rank, sharp)

    def logits(self, mix: KModeMixture, mu: Array, t: Array) -> Array:
        """l_k at nodes t (``[r, N]``, one column per node) for x ~ N(mu, Sigma): ``[K, N]``
        (common terms dropped)."""
        zk = mix.whiten(mix.means)
        zmu = mix.whiten(mu)
        with np.errstate(divide="ignore"):
            const = np.log(mix.weights) + zk @ zmu - 0.5 * np.sum(zk * zk, axis=-1)
        return (zk @ self.basis) @ t + const[:, None]

    def blocks(self) -> list[tuple[Array, Array]]:
        """(nodes ``[r, n]``, weights ``[n]``) in chunks of at most ``_CHUNK`` nodes."""
        n = self.nodes.shape[0]
        return [(np.ascontiguousarray(self.nodes[i:i + _CHUNK].T), self.weights[i:i + _CHUNK])
                for i in range(0, n, _CHUNK)]


def _softmax(logits: Array) -> tuple[Array, Array]:
    """(softmax over the first axis ``[K, N]``, log-sum-exp ``[N]``), stable; -inf logits give
    weight 0."""
    top = np.max(logits, axis=0)
    e = np.exp(logits - top)
    total = np.sum(e, axis=0)
    return e / total, top + np.log(total)


def _means(mu: Array, dim: int) -> Array:
    mu = np.asarray(mu, dtype=float)
    if mu.ndim == 1:
        mu = mu[None, :] if dim > 1 or mu.size != 1 else mu[:, None]
    if mu.ndim != 2 or mu.shape[1] != dim:
        raise ValueError(f"means must have shape [M, d={dim}], got {mu.shape}")
    return mu


# -- responsibilities -------------------------------------------------------------------
def responsibility_moments(mix: KModeMixture, means: Array, proj: Projection | None = None
                           ) -> tuple[Array, Array]:
    """(E[r_k] ``[M, K]``, E[r_k (x - mu_m)] ``[M, K, d]``) under x ~ N(mu_m, Sigma)."""
    proj = proj or Projection([mix])
    mu = _means(means, mix.dim)
    e0 = np.zeros((mu.shape[0], mix.n_modes))
    e1 = np.zeros((mu.shape[0], mix.n_modes, proj.rank))
    for m in range(mu.shape[0]):
        for t, w in proj.blocks():
            r = _softmax(proj.logits(mix, mu[m], t))[0]
            e0[m] += r @ w
            e1[m] += (r * w) @ t.T
    first = np.einsum("mkr,dr->mkd", e1, proj.basis) @ mix.chol.T  # back to x: L Q E[r t]
    return e0, first


def expected_responsibilities(mix: KModeMixture, means: Array) -> Array:
    """E_{x ~ N(mu_m, Sigma)}[r_k(x)], ``[M, K]`` (exact engine)."""
    return responsibility_moments(mix, means)[0]


def soft_misassignments(mix: KModeMixture) -> Array:
    """eps_jk = E_{x ~ phi_j}[r_k(x)], ``[K, K]`` (rows sum to 1; off-diagonal <= the lemma
    bound :meth:`KModeMixture.misassignment_bounds`)."""
    return expected_responsibilities(mix, mix.means)


def responsibility_bounds(mix: KModeMixture, means: Array) -> tuple[Array, Array]:
    """Certified (lower, upper) bounds on E_{N(mu_m, Sigma)}[r_k], each ``[M, K]``, any rank.

    r_k <= s_kl = sigmoid(l_k - l_l) for every l, and 1 - r_k <= sum_{l != k} s_lk. Under
    N(mu, Sigma), l_k - l_l ~ N(log(w_k/w_l) + (z_k - z_l)^T (z_mu - (z_k + z_l)/2), D_kl^2),
    so each E[s_kl] is one 1-D expectation (:func:`forgetlab.quadrature`).
    """
    mu = _means(means, mix.dim)
    zk, zmu = mix.whiten(mix.means), mix.whiten(mu)
    with np.errstate(divide="ignore"):
        lw = np.log(mix.weights)
    dz = zk[:, None, :] - zk[None, :, :]  # [K, K, d]
    mid = 0.5 * (zk[:, None, :] + zk[None, :, :])
    mean = (lw[:, None] - lw[None, :])[None] + np.einsum(
        "kld,mkld->mkl", dz, zmu[:, None, None, :] - mid[None])
    mean = np.where(np.isnan(mean), -np.inf, mean)
    pair = np.exp(log_gaussian_expectation("sigmoid", mean,
                                           np.broadcast_to(np.linalg.norm(dz, axis=-1),
                                                           mean.shape)))
    k = mix.n_modes
    off = ~np.eye(k, dtype=bool)
    upper = np.where(off[None], pair, np.inf).min(axis=-1) if k > 1 else np.ones((len(mu), 1))
    lower = 1.0 - np.sum(np.where(off[None], np.swapaxes(pair, -1, -2), 0.0), axis=-1)
    return np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)


# -- divergences and gradients ----------------------------------------------------------
def expected_log_ratio(q: KModeMixture, p: KModeMixture, means: Array,
                       proj: Projection | None = None) -> tuple[Array, Array, Array]:
    """Under x ~ N(mu_m, Sigma): (E[log q - log p] ``[M]``, E[r^q_k] ``[M, K_q]``,
    E[r^p_k] ``[M, K_p]``), all from one rule."""
    proj = proj or Projection([q, p])
    mu = _means(means, q.dim)
    out = np.zeros(mu.shape[0])
    rq = np.zeros((mu.shape[0], q.n_modes))
    rp = np.zeros((mu.shape[0], p.n_modes))
    for m in range(mu.shape[0]):
        for t, w in proj.blocks():
            lq, lp = proj.logits(q, mu[m], t), proj.logits(p, mu[m], t)
            (resp_q, sq), (resp_p, sp) = _softmax(lq), _softmax(lp)
            out[m] += (sq - sp) @ w
            rq[m] += resp_q @ w
            rp[m] += resp_p @ w
    return out, rq, rp


def kl_divergence(p: KModeMixture, q: KModeMixture) -> float:
    """KL(p || q) = sum_k w^p_k E_{phi(.; m^p_k)}[log p - log q] (exact engine)."""
    vals = expected_log_ratio(p, q, p.means)[0]
    keep = p.weights > 0
    return max(float(np.sum(p.weights[keep] * vals[keep])), 0.0)


def forward_kl_gradient(learner: KModeMixture, data: KModeMixture) -> tuple[Array, Array]:
    """Gradient of E_data[-log q] (= KL(data || q) + const): (d/deta ``[K]``, d/dm ``[K, d]``).

    d/deta_k = w_k - E_data[r_k], d/dm_k = -Sigma^{-1} E_data[r_k (x - m_k)], with
    E_{phi_c}[r_k (x - m_k)] = E_c[r_k] (mu_c - m_k) + E_c[r_k (x - mu_c)].
    """
    proj = Projection([learner, data])
    keep = data.weights > 0
    mu, v = data.means[keep], data.weights[keep]
    e0, e1 = responsibility_moments(learner, mu, proj)
    prec = learner.factor.precision
    moment = e0[..., None] * (mu[:, None, :] - learner.means[None]) + e1
    g_eta = learner.weights - v @ e0
    g_mean = -np.einsum("m,mkd->kd", v, moment) @ prec
    return g_eta, g_mean


def reverse_kl_gradient(learner: KModeMixture, target: KModeMixture) -> tuple[Array, Array]:
    """Gradient of KL(q || p) in (eta ``[K]``, means ``[K, d]``) (K-mode C3/C4).

    d/deta_k = w_k (E_{phi_k}[log q/p] - KL(q || p)),
    d/dm_k = w_k Sigma^{-1} (sum_l E_{phi_k}[r_l] m_l - sum_l E_{phi_k}[pi_l] a_l)
    (Stein's lemma; pi the target's responsibilities, a_l its means). The mean term equals
    w_k Sigma^{-1} [(m_k - a_k) + sum_l eps_kl (m_l - m_k) - sum_l eps*_kl (a_l - a_k)]
    when mode k of the target is at a_k: every perturbation is gated by a misassignment.
    """
    vals, rq, rp = expected_log_ratio(learner, target, learner.means)
    w = learner.weights
    kl = float(np.sum(w * vals))
    prec = learner.factor.precision
    g_mean = w[:, None] * ((rq @ learner.means - rp @ target.means) @ prec)
    return w * (vals - kl), g_mean


def fisher_information(mix: KModeMixture) -> Array:
    """F = E_q[s s^T], ``[(K-1) + K d]`` square, order (eta_1..eta_{K-1}, m_0, .., m_{K-1}).

    Scores s = (r_k - w_k for k >= 1; r_k Sigma^{-1}(x - m_k)). Under phi_c, with whitened
    z = z_c + Q t + z_perp: Sigma^{-1}(x - m_k) = L^{-T} (Q (Q^T (z_c - z_k) + t) + z_perp),
    so the mean blocks are L^{-T} (Q G_kl Q^T + E[r_k r_l] (I - Q Q^T)) L^{-1} with G from
    the rule (z_c - z_k lies in span Q).
    """
    proj = Projection([mix])
    k, d, r = mix.n_modes, mix.dim, proj.rank
    basis = proj.basis
    zq = mix.whiten(mix.means) @ basis  # [K, r]
    n_eta = k - 1
    small = np.zeros((n_eta + k * r, n_eta + k * r))
    rr = np.zeros((k, k))
    for c in range(k):
        if mix.weights[c] == 0:
            continue
        for t, w in proj.blocks():
            resp = _softmax(proj.logits(mix, mix.means[c], t))[0]  # [K, N]
            v = (zq[c] - zq)[:, :, None] + t[None, :, :]  # [K, r, N]
            s = np.concatenate([resp[1:] - mix.weights[1:, None],
                                (resp[:, None, :] * v).reshape(k * r, -1)], axis=0)
            small += mix.weights[c] * (s * w) @ s.T
            rr += mix.weights[c] * (resp * w) @ resp.T
    out = np.zeros((n_eta + k * d, n_eta + k * d))
    out[:n_eta, :n_eta] = small[:n_eta, :n_eta]
    lift = mix.chol_inv.T @ basis  # L^{-T} Q, [d, r]
    perp = mix.chol_inv.T @ (np.eye(d) - basis @ basis.T) @ mix.chol_inv
    for a in range(k):
        ra = slice(n_eta + a * r, n_eta + (a + 1) * r)
        xa = slice(n_eta + a * d, n_eta + (a + 1) * d)
        out[:n_eta, xa] = small[:n_eta, ra] @ lift.T
        out[xa, :n_eta] = out[:n_eta, xa].T
        for b in range(k):
            rb = slice(n_eta + b * r, n_eta + (b + 1) * r)
            xb = slice(n_eta + b * d, n_eta + (b + 1) * d)
            out[xa, xb] = lift @ small[ra, rb] @ lift.T + rr[a, b] * perp
    return out
