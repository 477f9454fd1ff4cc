"""forgetlab: forgetting in post-training, quantified.

A two-mode mixture models an old task and a new task; post-training methods move its weight and
means; forgetlab measures mass forgetting and old-component drift and checks them against the
theory's exact predictions.
"""

from forgetlab.config import MixtureConfig
from forgetlab.dynamics import simulate
from forgetlab.gaussian import bhattacharyya_coefficient
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.population import (
    fisher_information,
    forward_kl_gradient,
    kl_divergence,
    misassignment,
    reverse_kl_gradient,
)
from forgetlab.sweep.store import load_results
from forgetlab.theory import (
    drift_bound,
    frozen_model_optimum,
    local_geometry,
    reverse_kl_optimum,
    starvation_probability,
)

__version__ = "0.1.0"

__all__ = [
    "MixtureConfig",
    "MixtureParams",
    "TwoModeMixture",
    "bhattacharyya_coefficient",
    "drift_bound",
    "fisher_information",
    "forward_kl_gradient",
    "frozen_model_optimum",
    "kl_divergence",
    "load_results",
    "local_geometry",
    "misassignment",
    "reverse_kl_gradient",
    "reverse_kl_optimum",
    "simulate",
    "starvation_probability",
]
