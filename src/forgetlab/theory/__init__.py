"""Predictions of the theory, one module per claim family (theory.md section 4).

- :mod:`~forgetlab.theory.forward_kl` (C2): rho(beta), the weight identity, the EM map, the fixed
  point 0 and the decay laws near 0;
- :mod:`~forgetlab.theory.reverse_kl` (C3): the reverse-KL optimum and its gradient;
- :mod:`~forgetlab.theory.drift` (C4): the overlap-gated drift bounds along a trajectory;
- :mod:`~forgetlab.theory.geometry` (C5): Hessian = Fisher at the optimum, spectrum, contraction;
- :mod:`~forgetlab.theory.replay` (C6, C7): forward-KL fixed points with replay, importance
  weights and starvation.
"""

from forgetlab.theory.drift import DriftBound, drift_bound
from forgetlab.theory.forward_kl import (
    asymptotic_weight,
    decay_constants,
    em_map,
    regime_thresholds,
    rho,
    separated_weight,
    weight_gradient,
)
from forgetlab.theory.geometry import LocalGeometry, local_geometry, separated_fisher
from forgetlab.theory.replay import (
    current_model_scale,
    frozen_model_optimum,
    importance_second_moment,
    importance_weight_bound,
    old_data_optimum,
    starvation_bound,
    starvation_probability,
)
from forgetlab.theory.reverse_kl import (
    optimum_gradient,
    reverse_kl_optimum,
    separated_weight_gradient,
)

__all__ = [
    "DriftBound", "LocalGeometry", "asymptotic_weight", "current_model_scale", "decay_constants",
    "drift_bound", "em_map", "frozen_model_optimum", "importance_second_moment",
    "importance_weight_bound", "local_geometry", "old_data_optimum", "optimum_gradient",
    "regime_thresholds", "reverse_kl_optimum", "rho", "separated_fisher",
    "separated_weight", "separated_weight_gradient", "starvation_bound",
    "starvation_probability", "weight_gradient",
]
