"""forgetlab: forgetting in post-training, quantified.

A two-mode mixture models an old task and a new task; post-training methods move its weight and
means; forgetlab measures mass forgetting and old-component drift and checks them against the
theory's exact predictions.
"""

__version__ = "0.1.0"

# Public names (explicit re-exports).
from forgetlab.gaussian import bhattacharyya_coefficient as bhattacharyya_coefficient  # noqa: E402
from forgetlab.mixture import MixtureParams as MixtureParams  # noqa: E402
from forgetlab.mixture import TwoModeMixture as TwoModeMixture  # noqa: E402
from forgetlab.population import fisher_information as fisher_information  # noqa: E402
from forgetlab.population import forward_kl_gradient as forward_kl_gradient  # noqa: E402
from forgetlab.population import kl_divergence as kl_divergence  # noqa: E402
from forgetlab.population import misassignment as misassignment  # noqa: E402
from forgetlab.population import reverse_kl_gradient as reverse_kl_gradient  # noqa: E402
from forgetlab.dynamics import simulate  # noqa: E402,F401
from forgetlab.sweep.store import load_results  # noqa: E402,F401
from forgetlab.config import MixtureConfig as MixtureConfig  # noqa: E402
from forgetlab.theory import drift_bound as drift_bound  # noqa: E402
from forgetlab.theory import frozen_model_optimum as frozen_model_optimum  # noqa: E402
from forgetlab.theory import local_geometry as local_geometry  # noqa: E402
from forgetlab.theory import reverse_kl_optimum as reverse_kl_optimum  # noqa: E402
from forgetlab.theory import starvation_probability as starvation_probability  # noqa: E402
