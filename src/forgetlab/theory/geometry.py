"""Claim C5: local geometry of reverse KL at the target, and exponential convergence.

At theta* = (alpha, a, b) the model equals the target, so the Hessian of L_R(theta) =
KL(q_theta || p*) is the Fisher information: d^2/dtheta^2 E_q[log q - log p*] at q = p* equals
E_q[score score^T] (the terms with grad^2 log q cancel against E_q[grad^2 log q] + F = 0).
Order of the parameters: (beta, m_o[0..d-1], m_n[0..d-1]).

Gradient descent theta <- theta - s P grad L_R is locally the linear map I - s P F, so
||theta_t - theta*|| contracts by the spectral radius max_i |1 - s lambda_i(P F)|:

- ``"raw"``: raw weight beta, P = I, lambda_i = eigenvalues of F;
- ``"natural"``: logit weight eta and Sigma-preconditioned means (P = blockdiag(1, Sigma,
  Sigma)); the Hessian in (eta, m_o, m_n) at theta* is J F J, J = diag(alpha (1 - alpha), I, I)
  (the gradient vanishes there), and lambda_i are the eigenvalues of P^{1/2} J F J P^{1/2}.

For separated modes F ~ blockdiag(1/(alpha (1 - alpha)), alpha Sigma^{-1}, (1 - alpha) Sigma^{-1})
up to O(poly(Delta) BC); in natural coordinates this is blockdiag(alpha (1 - alpha), alpha I,
(1 - alpha) I): the condition number no longer depends on Sigma.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from forgetlab._validation import as_finite
from forgetlab.gaussian import cholesky
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import fisher_information

Array = NDArray[np.float64]
Parameterisation = Literal["raw", "natural"]


class LocalGeometry(NamedTuple):
    """Hessian at theta* (``[..., P, P]``), its spectrum and the contraction factor (``[...]``)."""

    hessian: Array
    eigenvalues: Array
    lambda_min: Array
    lambda_max: Array
    condition_number: Array
    contraction: Array


def _natural(matrix: Array, alpha: Array, cov: Array) -> Array:
    """P^{1/2} J M J P^{1/2}, J = diag(alpha (1 - alpha), I, I), P = blockdiag(1, Sigma, Sigma)."""
    dim = cov.shape[-1]
    root = cholesky(cov, dim)  # Sigma = L L^T: use P^{1/2} ~ blockdiag(1, L^T, L^T)
    left = np.zeros((*matrix.shape[:-2], 1 + 2 * dim, 1 + 2 * dim))
    left[..., 0, 0] = alpha * (1.0 - alpha)
    left[..., 1:dim + 1, 1:dim + 1] = np.swapaxes(root, -1, -2)
    left[..., dim + 1:, dim + 1:] = np.swapaxes(root, -1, -2)
    return left @ matrix @ np.swapaxes(left, -1, -2)


def _check(parameterisation: str) -> None:
    if parameterisation not in ("raw", "natural"):
        raise ValueError(f"parameterisation must be 'raw' or 'natural', got {parameterisation!r}")


def local_geometry(
    target: TwoModeMixture, step_size: ArrayLike, parameterisation: Parameterisation = "raw"
) -> LocalGeometry:
    """Hessian of L_R at theta* = F(theta*), eigenvalues, condition number and the predicted
    contraction factor max_i |1 - s lambda_i| of gradient descent with step s (``[...]``).

    ``natural`` uses the logit weight and Sigma-preconditioned means (module docstring); the
    Sigma^{1/2} factor is the Cholesky factor L, which gives the same eigenvalues.
    """
    _check(parameterisation)
    target.require_learner("target")
    step = as_finite(step_size, "step_size", low=0.0, open_low=True)
    hess = fisher_information(target)
    sym = hess if parameterisation == "raw" else _natural(hess, target.weight_old, target.cov)
    eig: Array = np.linalg.eigvalsh(0.5 * (sym + np.swapaxes(sym, -1, -2))).astype(np.float64)
    lam_min, lam_max = eig[..., 0], eig[..., -1]
    with np.errstate(divide="ignore"):
        cond = np.where(lam_min > 0, lam_max / np.where(lam_min > 0, lam_min, 1.0), np.inf)
    step = np.asarray(step)[..., None]
    contraction = np.max(np.abs(1.0 - step * eig), axis=-1)
    return LocalGeometry(hess, eig, lam_min, lam_max, cond, contraction)


def separated_fisher(
    alpha: ArrayLike, cov: ArrayLike, parameterisation: Parameterisation = "raw"
) -> Array:
    """blockdiag(1/(alpha (1 - alpha)), alpha Sigma^{-1}, (1 - alpha) Sigma^{-1}) (``raw``), or
    blockdiag(alpha (1 - alpha), alpha I, (1 - alpha) I) (``natural``): ``[..., 1+2d, 1+2d]``.

    ``cov`` must be a ``[..., d, d]`` matrix (use :func:`forgetlab.gaussian.cholesky` inputs).
    """
    _check(parameterisation)
    a = as_finite(alpha, "alpha", low=0.0, high=1.0, open_low=True, open_high=True)
    sigma = as_finite(cov, "cov")
    if sigma.ndim < 2 or sigma.shape[-1] != sigma.shape[-2]:
        raise ValueError(f"cov must be a [..., d, d] matrix, got shape {sigma.shape}")
    dim = sigma.shape[-1]
    block = np.eye(dim) if parameterisation == "natural" else np.linalg.inv(sigma)
    batch = np.broadcast_shapes(a.shape, sigma.shape[:-2])
    out = np.zeros((*batch, 1 + 2 * dim, 1 + 2 * dim))
    aa = np.broadcast_to(a, batch)
    var = aa * (1.0 - aa)
    out[..., 0, 0] = var if parameterisation == "natural" else 1.0 / var
    out[..., 1:dim + 1, 1:dim + 1] = aa[..., None, None] * block
    out[..., dim + 1:, dim + 1:] = (1.0 - aa)[..., None, None] * block
    return out
