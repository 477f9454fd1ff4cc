"""Named simulation presets: one per method with sensible defaults, plus the external ones.

``get(name, **overrides)`` returns a validated :class:`~forgetlab.simconfig.SimulationConfig`
(overrides as in :meth:`SimulationConfig.with_updates`). Another module adds its own with
:func:`register_preset` (a config dict). External presets are models other than the
equal-covariance mixture: the Chen et al. toy's (:data:`forgetlab.chen2025.preset.PRESETS`),
listed here by name and description; ``forgetlab simulate`` runs them. Every method module is
imported before presets are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forgetlab.chen2025.preset import PRESETS as CHEN_PRESETS
from forgetlab.methods import list_methods
from forgetlab.simconfig import SimulationConfig, parse_config

_POP: dict[str, Any] = {"regime": "population", "steps": 400, "stride": 10,
                        "learning_rate": 1.0}
_FIN: dict[str, Any] = {"regime": "finite", "steps": 1000, "stride": 20, "learning_rate": 0.05,
                        "batch_size": 64, "seeds": 16}


@dataclass(frozen=True)
class Preset:
    """A named configuration (as a dict for :func:`parse_config`)."""

    name: str
    description: str
    data: dict[str, Any]


@dataclass(frozen=True)
class ExternalPreset:
    """A named preset of a model outside the mixture engine (``model``: its package)."""

    name: str
    description: str
    model: str


_PRESETS: dict[str, Preset] = {}
_EXTERNAL: dict[str, ExternalPreset] = {
    name: ExternalPreset(name, p.description, "chen2025") for name, p in CHEN_PRESETS.items()}


def register_preset(name: str, description: str, data: dict[str, Any]) -> None:
    """Add a preset (validated when used); names must be unique."""
    if name in _PRESETS or name in _EXTERNAL:
        raise ValueError(f"preset '{name}' is already registered")
    _PRESETS[name] = Preset(name, description, data)


def list_presets() -> dict[str, str]:
    """Preset name -> one-line description, sorted by name."""
    list_methods()
    every = {**{k: p.description for k, p in _PRESETS.items()},
             **{k: p.description for k, p in _EXTERNAL.items()}}
    return dict(sorted(every.items()))


def external(name: str) -> ExternalPreset | None:
    """The external preset called ``name``, if there is one."""
    return _EXTERNAL.get(name)


def get(name: str, **overrides: Any) -> SimulationConfig:
    """The preset's config with ``overrides`` applied; ValueError listing the names."""
    list_methods()
    if name not in _PRESETS:
        kind = "an external preset (run it with forgetlab simulate)" if name in _EXTERNAL \
            else "unknown"
        raise ValueError(f"preset '{name}' is {kind}; mixture presets: "
                         f"{', '.join(sorted(_PRESETS))}")
    config = parse_config(_PRESETS[name].data)
    return config.with_updates(**overrides) if overrides else config


register_preset("sft", "forward KL on new data (C2): the old weight decays to 0",
                {"method": "sft", **_POP})
register_preset("sft-em", "forward KL on new data with EM (beta <- rho(beta))",
                {"method": "sft", "optimizer": "em", **_POP})
register_preset("sft-replay-old", "forward KL with 30% old-data replay (C6): beta -> 0.3",
                {"method": "sft", "knobs": {"replay": "old", "replay_fraction": 0.3}, **_POP})
register_preset("sft-replay-initial", "forward KL with 30% replay of the frozen initial model",
                {"method": "sft", "knobs": {"replay": "initial", "replay_fraction": 0.3},
                 **_POP})
register_preset("sft-replay-current", "forward KL with 30% self-replay: plain SFT, slower",
                {"method": "sft", "knobs": {"replay": "current", "replay_fraction": 0.3},
                 **_POP})
register_preset("sft-finite", "forward KL on new data, minibatches of 64, 16 seeds",
                {"method": "sft", **_FIN})
register_preset("rl", "exact reverse KL to the target (C3): beta -> alpha, means -> (a, b)",
                {"method": "rl", **_POP, "problem": {"alpha": 0.3}})
register_preset("rl-finite", "reverse KL, on-policy REINFORCE with leave-one-out baseline",
                {"method": "rl", **_FIN, "problem": {"alpha": 0.3}})
register_preset("rl-verifiable", "KL-regularised RL, 0/1 new-task reward, reference q_0",
                {"method": "rl", **_FIN, "learning_rate": 0.1,
                 "knobs": {"reward": "verifiable", "radius": 1.5, "tau": 0.1,
                           "reference": "initial"}})
register_preset("replay-rl", "reverse KL with 50% old-data replay and importance weights (C7)",
                {"method": "replay-rl", **_FIN, "batch_size": 16,
                 "problem": {"alpha": 0.3, "beta0": 0.05},
                 "knobs": {"replay": "old", "replay_fraction": 0.5}})
register_preset("distill", "on-policy distillation, exact reverse KL to a fixed teacher p*",
                {"method": "distill", **_POP, "problem": {"alpha": 0.3}})
register_preset("distill-jsd", "on-policy distillation, generalised JSD (beta = 0.5), finite",
                {"method": "distill", **_FIN, "knobs": {"divergence": "jsd", "mix": 0.5},
                 "problem": {"alpha": 0.3}})
register_preset("sdft", "SDFT, EMA teacher pulled to the demonstration (C8): beta kept",
                {"method": "sdft", **_POP, "learning_rate": 0.5,
                 "knobs": {"lam_demo": 0.5, "tau_ema": 0.1},
                 "problem": {"separation": 6.0, "learner_new_mean": [4.0]}})
register_preset("sdft-reweight", "SDFT with demonstration reweighting nu = 0.2: beta decays",
                {"method": "sdft", **_POP, "knobs": {"lam_demo": 0.1, "tau_ema": 0.1,
                                                     "nu": 0.2},
                 "problem": {"separation": 10.0, "new_mean_start": 1.0}})
register_preset("sdft-no-anchor", "SDFT with lam_demo = 0, forward KL, no baseline: random walk",
                {"method": "sdft", **_FIN, "learning_rate": 0.2,
                 "knobs": {"lam_demo": 0.0, "tau_ema": 0.1, "divergence": "forward",
                           "baseline": "none"}})
register_preset("ttt-discover", "TTT-Discover, LOO entropic weights, adaptive gamma, 0/1 reward",
                {"method": "ttt-discover", **_FIN})
register_preset("ttt-discover-anchored", "TTT-Discover, exact, gamma 1.5, KL anchor kappa 2",
                {"method": "ttt-discover", **_POP, "learning_rate": 1.0,
                 "knobs": {"adaptive_gamma": False, "gamma": 1.5, "kappa": 2.0},
                 "problem": {"separation": 10.0, "new_mean_start": 1.0}})
register_preset("oapl", "OAPL, lagged sampler synced every 50 steps, 0/1 reward, tau = 1",
                {"method": "oapl", **_FIN})
register_preset("self-sft", "rejection-sampling fine-tuning on verified draws of q_0",
                {"method": "self-sft", **_FIN})
register_preset("iterative-sft", "iterative SFT, verified draws regenerated every 20 steps",
                {"method": "self-sft", **_FIN, "knobs": {"regenerate_every": 20}})
