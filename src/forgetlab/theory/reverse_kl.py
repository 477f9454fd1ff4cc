"""Claim C3: reverse KL converges to the target, so there is no mass forgetting.

L_R(theta) = KL(q_theta || p*) >= 0 with equality iff q_theta = p*. For two distinct means the
two-mode family is identifiable up to the label swap, so the minimisers are exactly

  theta* = (alpha, a, b)   and   swap(theta*) = (1 - alpha, b, a),

and the gradient vanishes there. Exact weight gradient (engine):
d/dbeta L_R = E_{phi(.;m_o)}[log q / p*] - E_{phi(.;m_n)}[log q / p*]; at (m_o, m_n) = (a, b) and
separated modes it is logit(beta) - logit(alpha) + O(BC), because q / p* ~ beta / alpha on the
old mode and (1 - beta) / (1 - alpha) on the new one.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logit

from forgetlab._validation import as_finite
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.population import reverse_kl_gradient

Array = NDArray[np.float64]


def reverse_kl_optimum(target: TwoModeMixture) -> tuple[MixtureParams, MixtureParams]:
    """(theta*, swap(theta*)) = ((alpha, a, b), (1 - alpha, b, a)), ``[...]``, ``[..., d]``."""
    target.require_learner("target")
    return target.params, target.swapped().params


def optimum_gradient(target: TwoModeMixture) -> MixtureParams:
    """grad L_R at theta* (exact engine); zero up to rounding."""
    target.require_learner("target")
    return reverse_kl_gradient(target, target)


def separated_weight_gradient(weight_old: ArrayLike, alpha: ArrayLike) -> Array:
    """Separated-mode limit of d/dbeta L_R at (m_o, m_n) = (a, b): logit(beta) - logit(alpha).

    Error bound (log(1 + y) <= sqrt(y), E_{phi_a}[sqrt(phi_b / phi_a)] = BC): with
    r_w = sqrt((1 - w)/w), |exact - limit| <= (max(r_beta, r_alpha) + max(1/r_beta, 1/r_alpha)) BC.
    """
    beta = as_finite(weight_old, "weight_old", low=0.0, high=1.0, open_low=True, open_high=True)
    a = as_finite(alpha, "alpha", low=0.0, high=1.0, open_low=True, open_high=True)
    return logit(beta) - logit(a)
