"""forgetlab: forgetting in post-training, quantified.

A two-mode mixture models an old task and a new task; post-training methods move its weight and
means; forgetlab measures mass forgetting and old-component drift and checks them against the
theory's exact predictions.

The names below are re-exported lazily: ``import forgetlab`` (which every ``import
forgetlab.<module>`` runs first) loads no submodule, so a low layer such as
:mod:`forgetlab.mixture` never pulls in a higher one such as :mod:`forgetlab.dynamics`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "MixtureConfig": "forgetlab.config",
    "MixtureParams": "forgetlab.mixture",
    "TwoModeMixture": "forgetlab.mixture",
    "bhattacharyya_coefficient": "forgetlab.gaussian",
    "drift_bound": "forgetlab.theory",
    "fisher_information": "forgetlab.population",
    "forward_kl_gradient": "forgetlab.population",
    "frozen_model_optimum": "forgetlab.theory",
    "kl_divergence": "forgetlab.population",
    "load_results": "forgetlab.sweep.store",
    "local_geometry": "forgetlab.theory",
    "misassignment": "forgetlab.population",
    "reverse_kl_gradient": "forgetlab.population",
    "reverse_kl_optimum": "forgetlab.theory",
    "simulate": "forgetlab.dynamics",
    "starvation_probability": "forgetlab.theory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``forgetlab.<name>`` for a re-exported name, imported from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
