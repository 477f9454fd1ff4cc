"""The method vocabulary: one table of method names and knobs that both sides read.

Every post-training method has one name and one set of knobs, whether it runs on the Gaussian
mixture (:mod:`forgetlab.methods`) or on a language model (:mod:`forgetlab.lm.methods`). This
module is that table, as data: for each method a one-line meaning, the sides that implement it,
and its knobs (default, range or choices, one-line meaning, the side(s) it applies to).
:func:`knobs_for` gives one side's knobs; both registries build their methods from it, and a
test checks that each side's implementation reads exactly the knobs the table lists.

Spelling: names are written with underscores (``ttt_discover``, ``replay_rl``, ``self_sft``),
like the knobs and the modules that implement them. The hyphenated forms (``ttt-discover``)
and the older language-model name ``rft`` (= ``self_sft``) are accepted everywhere as aliases
(:func:`canonical_name`), silently, so existing configurations keep working. A knob may have an
alias too (OAPL's single ``tau`` sets ``tau_value`` and ``tau_ratio``; distillation's ``mix`` is
``beta``).

A knob applies to ``both`` sides unless marked ``mixture`` (e.g. the verifiable reward's
``radius``: the language model's verifier is exact) or ``lm`` (e.g. ``clip_eps``: PPO-style
ratio clipping acts on off-policy samples of a network). Where a shared knob has a different
default or choice set on one side, :data:`METHODS` says so in ``lm`` overrides, and the docs
table says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from forgetlab._validation import as_finite

SIDES = ("mixture", "lm")
MIXTURE_REWARDS = ("target", "verifiable", "callable")
"""Reward kinds on the mixture (:mod:`forgetlab.methods.rewards`)."""
LM_REWARDS = ("verifier", "verifier_both", "verifier_new", "target")
"""Reward kinds on the language model (:mod:`forgetlab.lm.target`)."""
LM_VERIFIERS = LM_REWARDS[:3]
BASELINES = ("none", "mean", "loo")
"""Score-function baselines of the mixture's estimators."""
ENTROPIC_GAMMA_CAP = 1e3
"""Cap on the scale-free tilt gamma (max r - min r) of the adaptive-gamma rule, both sides.

The cap is reached only where KL(softmax(gamma r) || uniform) = ln 2 has no solution (half the
group or more ties at the top reward): the KL then rises toward its limit as gamma grows, so
the rule's answer is gamma = infinity, all weight on the top rewards. A scale-free cap of 1e3
gives the others a relative weight e^{-1000}, zero in float64: the limit itself, for any reward
scale (a cap on gamma itself, as the language model once had at 10, left e^{-10} and depended on
the reward's units)."""


@dataclass(frozen=True)
class Knob:
    """A method setting: default, one-line doc, and its allowed range or choices.

    ``kind`` is ``float`` (range ``low``/``high``, a scalar or one value per configuration),
    ``int`` (likewise, integral), ``str`` (one of ``choices``), ``bool``, or ``object`` (any
    value, e.g. a callable; not settable from TOML). ``side`` is ``"both"``, ``"mixture"`` or
    ``"lm"``: where the knob exists.
    """

    default: Any
    doc: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] | None = None
    side: str = "both"

    def validate(self, value: Any, name: str) -> Any:
        """The checked value (float arrays for numeric knobs), or ValueError naming ``name``."""
        if self.kind in (float, int):
            if self.kind is int and np.any(np.asarray(value) != np.round(np.asarray(value))):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            arr = as_finite(value, name, self.low, self.high, self.open_low, self.open_high)
            if arr.ndim > 1:
                raise ValueError(f"{name} must be a scalar or one value per configuration")
            return arr.astype(int) if self.kind is int else arr
        if self.kind is str:
            if value not in (self.choices or ()):
                raise ValueError(
                    f"{name} must be one of {', '.join(map(repr, self.choices or ()))}, "
                    f"got {value!r}")
            return value
        if self.kind is bool:
            if not isinstance(value, bool | np.bool_):
                raise ValueError(f"{name} must be true or false, got {value!r}")
            return bool(value)
        return value


@dataclass(frozen=True)
class MethodEntry:
    """One method: meaning, the sides that implement it, knobs, side overrides, aliases."""

    summary: str
    knobs: Mapping[str, Knob]
    sides: tuple[str, ...] = SIDES
    lm: Mapping[str, Knob] = field(default_factory=dict)
    """Language-model versions of shared knobs (another default or choice set)."""
    knob_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Old knob name -> the knobs it sets."""


def _mixture_reward(default: str, radius: float) -> dict[str, Knob]:
    """The reward knobs of a reward-driven method on the mixture (kind, radius, credit, fn)."""
    return {
        "reward": Knob(default, "reward: target log-density, verifiable 0/1, or callable",
                       kind=str, choices=MIXTURE_REWARDS),
        "radius": Knob(radius, "success radius (Mahalanobis) of the verifiable reward", low=0.0,
                       open_low=True, side="mixture"),
        "credit_old": Knob(False, "the verifiable reward also credits D(x, a) <= radius",
                           kind=bool, side="mixture"),
        "reward_fn": Knob(None, "user reward x [C, S, n, d] -> [C, S, n]", kind=object,
                          side="mixture"),
    }


def _lm_reward(choices: tuple[str, ...] = LM_REWARDS) -> Knob:
    return Knob("verifier", "reward: the setting's verifier, verifier_both, verifier_new, or "
                "target (log p* - log pi)", kind=str, choices=choices)


_REPLAY = {
    "replay": Knob("none", "replay source R: none, old data, frozen initial model, or the "
                   "current model (stop-gradient)", kind=str,
                   choices=("none", "old", "initial", "current")),
    "replay_fraction": Knob(0.0, "replay fraction lambda in [0, 1)", low=0.0, high=1.0,
                            open_high=True),
}
_LM_REPLAY = Knob("none", "replay source R: none or old-task demonstrations", kind=str,
                  choices=("none", "old"))
_SELF_SFT = {
    **_mixture_reward("verifiable", 1.5),
    "regenerate_every": Knob(0, "k: copy the learner into the sampler every k steps "
                             "(0 = sample q_0 for good)", kind=int, low=0.0),
    "group_size": Knob(8, "samples per prompt G >= 1 when the pool is drawn", kind=int,
                       low=1.0, side="lm"),
    "pool_batches": Knob(4, "batches of prompts drawn into the filtered pool", kind=int,
                         low=1.0, side="lm"),
}
_CLIP_EPS = Knob(0.0, "PPO-style ratio clipping epsilon >= 0 (0 = off): the surrogate "
                 "min(rho A, clip(rho, 1 - eps, 1 + eps) A)", low=0.0, side="lm")
_DIVERGENCE = ("reverse", "forward")

METHODS: dict[str, MethodEntry] = {
    "sft": MethodEntry(
        "forward KL on new-task data E_D[-log q], optional replay (C2, C6)", dict(_REPLAY),
        lm={"replay": _LM_REPLAY}),
    "replay_sft": MethodEntry(
        "SFT with replay of old-task data, lambda = 0.5 by default (C6)",
        {**_REPLAY, "replay": replace(_REPLAY["replay"], default="old"),
         "replay_fraction": replace(_REPLAY["replay_fraction"], default=0.5)},
        lm={"replay": replace(_LM_REPLAY, default="old")}),
    "rl": MethodEntry(
        "on-policy RL -E_q[r] + tau KL(q || q_ref), reverse KL to p* by default (C3)",
        {**_mixture_reward("target", 1.0),
         "tau": Knob(1.0, "KL coefficient tau >= 0", low=0.0, side="mixture"),
         "reference": Knob("none", "reference model q_ref: none (entropy bonus) or the "
                           "initial model", kind=str, choices=("none", "initial"),
                           side="mixture"),
         "estimator": Knob("score", "score function, or pathwise for the means", kind=str,
                           choices=("score", "pathwise"), side="mixture"),
         "baseline": Knob("loo", "score-function baseline", kind=str, choices=BASELINES,
                          side="mixture"),
         "grpo": Knob(False, "GRPO normalisation of the signal within groups", kind=bool,
                      side="mixture"),
         "group_size": Knob(1, "group size G (divides the batch size)", kind=int, low=1.0),
         "kl_coef": Knob(0.0, "coefficient of (1/2)(log pi - log pi_0)^2 per sampled token",
                         low=0.0, side="lm"),
         "clip_eps": _CLIP_EPS,
         "ppo_epochs": Knob(1, "optimiser steps per sampled batch (PPO epochs; the ratio to "
                            "the sampler is 1 in the first)", kind=int, low=1.0, side="lm")},
        lm={"reward": _lm_reward(),
            "group_size": Knob(8, "samples per prompt G >= 2 (GRPO groups)", kind=int,
                               low=2.0)}),
    "replay_rl": MethodEntry(
        "reverse KL with replay: importance-weighted samples of (1 - lambda) q + lambda R (C7)",
        {"replay": Knob("old", "replay source R: old data or the frozen initial model",
                        kind=str, choices=("old", "initial")),
         "replay_fraction": Knob(0.5, "replay fraction lambda in [0, 1)", low=0.0, high=1.0,
                                 open_high=True),
         "clip": Knob(0.0, "clip importance weights at c (0 = no clipping)", low=0.0),
         "baseline": Knob("loo", "score-function baseline", kind=str, choices=BASELINES)},
        sides=("mixture",)),
    "self_sft": MethodEntry(
        "SFT on verified own samples: of q_0 once (RFT), or regenerated every k steps",
        dict(_SELF_SFT), lm={"reward": _lm_reward(LM_VERIFIERS)}),
    "iterative_sft": MethodEntry(
        "self_sft with the sampler regenerated from the learner every 10 steps by default",
        {**_SELF_SFT, "regenerate_every": replace(_SELF_SFT["regenerate_every"], default=10)},
        lm={"reward": _lm_reward(LM_VERIFIERS)}),
    "distill": MethodEntry(
        "on-policy distillation D(q, T) to a fixed teacher on the student's samples",
        {"divergence": Knob("reverse", "reverse KL(q||T), forward KL(T||q) or generalised JSD",
                            kind=str, choices=(*_DIVERGENCE, "jsd")),
         "beta": Knob(0.5, "JSD mixing coefficient beta in (0, 1] (1 = reverse KL, -> 0 "
                      "forward)", low=0.0, high=1.0, open_low=True),
         "teacher": Knob("target", "fixed teacher: target p* or new-task data p_new", kind=str,
                         choices=("target", "new"), side="mixture"),
         "baseline": Knob("loo", "score-function baseline", kind=str, choices=BASELINES,
                          side="mixture")},
        knob_aliases={"mix": ("beta",)}),
    "sdft": MethodEntry(
        "self-distillation to a demonstration-conditioned teacher: EMA student or frozen base",
        {"lam_demo": Knob(0.1, "demonstration anchor lam_demo in [0, 1]", low=0.0, high=1.0,
                          side="mixture"),
         "nu": Knob(0.0, "demonstration reweighting nu in [0, 1): beta^T = (1 - nu) EMA(beta)",
                    low=0.0, high=1.0, open_high=True, side="mixture"),
         "tau_ema": Knob(0.01, "EMA rate tau_ema in (0, 1]", low=0.0, high=1.0, open_low=True),
         "teacher": Knob("ema", "teacher weights: EMA of the student, or the frozen base",
                         kind=str, choices=("ema", "base")),
         "divergence": Knob("reverse", "reverse KL(q||T) or forward KL(T||q)", kind=str,
                            choices=_DIVERGENCE),
         "demo_offset": Knob(None, "mu_demo - b, a length-d vector (none: accurate, "
                             "mu_demo = b)", kind=object, side="mixture"),
         "baseline": Knob("loo", "score-function baseline (finite batch)", kind=str,
                          choices=BASELINES, side="mixture")},
        lm={"divergence": Knob("forward", "per-token forward KL(T||q) (the authors' as-run "
                               "setting) or reverse KL(q||T)", kind=str, choices=_DIVERGENCE)}),
    "ttt_discover": MethodEntry(
        "entropic objective log E_q[e^{gamma R}] with leave-one-out advantages, KL anchor",
        {**_mixture_reward("verifiable", 1.5),
         "gamma": Knob(1.0, "tilt gamma >= 0 (used when adaptive_gamma is false)", low=0.0),
         "adaptive_gamma": Knob(True, "choose gamma per group so KL(softmax(gamma r) || "
                                "uniform) = ln 2", kind=bool),
         "group_size": Knob(8, "group size k >= 2 (divides the batch size)", kind=int,
                            low=2.0),
         "kappa": Knob(0.0, "KL anchor kappa >= 0 to the base model q_0", low=0.0),
         "reuse": Knob(0, "reuse buffer size (best past draws appended to each group)",
                       kind=int, low=0.0),
         "clip_eps": _CLIP_EPS},
        lm={"reward": _lm_reward()}),
    "oapl": MethodEntry(
        "squared log-ratio regression to r - V_hat on draws of a sampler synced every L steps",
        {**_mixture_reward("verifiable", 1.5),
         "tau_value": Knob(1.0, "temperature of V_hat = tau_value log mean exp(r / tau_value)",
                           low=0.0, open_low=True),
         "tau_ratio": Knob(1.0, "coefficient of the log-ratio, tau_ratio log(q / q_lag)",
                           low=0.0, open_low=True),
         "lag": Knob(50, "synchronisation period L >= 1 (steps)", kind=int, low=1.0),
         "group_size": Knob(8, "group size G >= 1 (divides the batch size)", kind=int,
                            low=1.0)},
        lm={"reward": _lm_reward(),
            "lag": Knob(10, "synchronisation period L >= 1 (steps)", kind=int, low=1.0)},
        knob_aliases={"tau": ("tau_value", "tau_ratio")}),
}

ALIASES: dict[str, str] = {
    **{name.replace("_", "-"): name for name in METHODS if "_" in name},
    "rft": "self_sft",
}
"""Accepted old spellings -> the table's name."""


def canonical_name(name: str) -> str:
    """The table's name for ``name`` (itself, or what the alias stands for)."""
    return ALIASES.get(name, name)


def method_names(side: str) -> list[str]:
    """Names of the methods implemented on ``side`` (``"mixture"`` or ``"lm"``), sorted."""
    return sorted(n for n, entry in METHODS.items() if side in entry.sides)


def knobs_for(name: str, side: str) -> dict[str, Knob]:
    """The knobs of method ``name`` on ``side``, with that side's defaults and choices."""
    entry = METHODS[canonical_name(name)]
    overrides = entry.lm if side == "lm" else {}
    return {k: overrides.get(k, knob) for k, knob in entry.knobs.items()
            if knob.side in ("both", side)}


def expand_aliases(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with old knob names replaced by the knobs they set (an explicit new name
    wins over its alias)."""
    aliases = METHODS[canonical_name(name)].knob_aliases
    out = {k: v for k, v in values.items() if k not in aliases}
    for old, new in aliases.items():
        if old in values:
            for k in new:
                out.setdefault(k, values[old])
    return out


def validate_knobs(method: str, spec: Mapping[str, Knob], values: Mapping[str, Any]
                   ) -> dict[str, Any]:
    """Defaults filled in and every value checked; unknown knobs raise, listing the allowed."""
    values = expand_aliases(method, values) if canonical_name(method) in METHODS else values
    unknown = sorted(set(values) - set(spec))
    if unknown:
        allowed = ", ".join(sorted(spec)) or "(none)"
        raise ValueError(f"unknown knob '{unknown[0]}' for method '{method}'; allowed: {allowed}")
    return {k: knob.validate(values.get(k, knob.default), k) for k, knob in spec.items()}
