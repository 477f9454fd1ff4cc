"""The built-in LM benchmark: pre-train once (cached), post-train each method over several seeds
and read every run at exactly matched new-task gains.

For each setting, method and seed: copy the pre-trained base, post-train with the method (its own
``torch.Generator``) until the new-task gain (exact probability of a correct new answer, minus
the base's) reaches the setting's highest gain level or ``max_steps`` pass, evaluating every
``eval_every`` steps. Each trajectory is read at every gain level g by linear interpolation
between the two evaluations around its first crossing of g (:func:`at_gain`), so every run is
compared at gain exactly g. Over the seeds, each entry is a mean with a 95 % t-interval
(:func:`t_interval`). Seeds vary the post-training randomness only: the pre-trained base and the
evaluation prompts and samples are shared.

Settings (lm.md):

* ``same_prompts``: train and measure on the mixed family ``m`` (pre-training: old mode with
  probability 1/2, noisy new mode otherwise). The target keeps both modes, so the verifier
  credits the correct old answer too; SFT sees new-task demonstrations, replay SFT adds old-task
  demonstrations on the same prompts.
* ``held_out``: train on the new-task family ``n``, measure on the old-task family ``o``; the
  verifier credits only correct new answers, replay uses old-task demonstrations on ``o``.

Tasks (:data:`VARIANTS`): ``standard`` (one correct new answer), ``two-answer`` (shift +3 or +7)
and ``several_answers`` (the far answer, shift +3, and the close answer with the old answer's
digits; a drift channel in pre-training: :mod:`forgetlab.lm.corpus`).

The explicit target p* of ``reward=target`` (:mod:`forgetlab.lm.target`) has old mass alpha =
the training family's pre-training old mass on ``same_prompts`` (0.5) and 0 on ``held_out``.
Each row carries the theory's prediction derived from the method's knobs (:func:`predict`), the
claim it rests on and a two-sided verdict from the interval (:func:`verdict`). Runs whose
trajectories are identical (the same computation under another name) form one row.

Use :func:`run_benchmark` from Python, ``forgetlab lm benchmark`` from the shell.
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from forgetlab.lm.corpus import VOCAB, Task, TaskConfig
from forgetlab.lm.evaluate import Evaluator
from forgetlab.lm.methods import Setting, make_method
from forgetlab.lm.model import GPTConfig
from forgetlab.lm.train import PostTrainConfig, PretrainConfig, load_or_pretrain, post_train

ProgressFn = Callable[[str, int, int], None]

DEFAULT_METHODS = (
    "sft", "replay_sft", "rl:reward=target", "oapl:reward=target", "rl",
    "rl:reward=verifier_new", "rl:reward=verifier_new,kl_coef=0.1",
    "ttt_discover:reward=verifier_new", "ttt_discover:reward=verifier_new,kappa=0.1",
    "self_sft", "iterative_sft:reward=verifier_new", "distill", "distill:divergence=forward",
    "sdft",
)
"""One analogue per theory statement (:func:`predict`): SFT (C2), replay SFT (C6), reverse KL to
the explicit target (C3), RL and TTT-Discover with a new-only reward without and with an anchor
to pi_0 (C8), the setting's verifier (C8 odds tilt), RFT, distillation and SDFT (C3/C8)."""

SETTINGS: dict[str, dict[str, Any]] = {
    "same_prompts": {"train_family": "m", "old_family": "m", "replay_family": "m",
                     "reward_old": True, "target_keeps_old": True},
    "held_out": {"train_family": "n", "old_family": "o", "replay_family": "o",
                 "reward_old": False, "target_keeps_old": False},
}

VARIANTS: dict[str, dict[str, Any]] = {
    "standard": {},
    "two-answer": {"new_shifts": (3, 7)},
    "several_answers": {"new_close": True, "pretrain_close_frac": 0.3, "old_shared_frac": 0.2},
}
"""The new task's changes to :class:`~forgetlab.lm.corpus.TaskConfig`: ``two-answer`` accepts two
sequence-level answer modes (+3 or +7; pre-training knows only +3, the base is shared);
``several_answers`` accepts the far answer (+3) and the close one (``B`` + the old answer's
digits, 30 % of the base's new-mode pre-training answers) and continues 20 % of the old-mode
pre-training answers with the shifted digits (the drift channel; its own base)."""

MASS_TOL = 0.05
"""|old mass lost| at most this reads as ``keeps``; above as ``loses``, below minus as ``gains``."""

CONFIDENCE = 0.95
"""Level of the t-intervals over seeds."""

ANCHORS = ("kl_coef", "kappa")

READ_AT_GAIN = ("step", "new_task_gain", "old_mass_lost", "mass_kl", "old_drift_kl",
                "old_drift_kl_se", "old_mass", "old_acc_when_produced", "new_other_shift_share",
                "new_close_share")
"""Trajectory entries read at a matched gain (:func:`at_gain`)."""

WITH_INTERVAL = ("steps", "new_task_gain", "old_mass_lost", "mass_kl", "old_drift_kl",
                 "old_mass", "old_acc_when_produced", "new_other_shift_share",
                 "new_close_share")
"""Row entries that carry a 95 % interval over seeds, as ``NAME_ci``."""

REGIONS: dict[str, tuple[float, float]] = {
    "loses": (MASS_TOL, math.inf), "keeps": (-MASS_TOL, MASS_TOL),
    "gains": (-math.inf, -MASS_TOL), "loses less than unanchored": (-math.inf, 0.0),
}
"""The predicted side of each prediction: old mass lost (for the anchored comparison: anchored
minus unanchored, paired by seed) inside the open interval."""


def predict(name: str, knobs: dict[str, Any], setting: str, alpha: float) -> tuple[str, str, str]:
    """The mixture theory's prediction for the old mass, from the method's knobs.

    Returns (prediction, claim, reason); prediction is ``keeps``, ``loses``, ``gains``,
    ``loses less than unanchored`` or ``not modelled`` (``held_out``: the theory has no shared
    parameters between prompt families). ``alpha`` is the target's old mass. The mapping:

    * forward KL on demonstrations (``sft``, ``replay_sft``): replay fraction lambda = 0 loses
      (C2, fixed point beta = 0); lambda > 0 retains mass lambda (C6), so it keeps if
      |lambda - alpha| <= :data:`MASS_TOL`, else gains or loses accordingly;
    * distillation and SDFT: the teacher (pi_0 with a new-task demonstration) has the base's mode
      mixture, so the optimum keeps the mass (reverse and JSD: C3; forward: C6 with the old mode
      in the data; SDFT: C8, a demonstration that does not reweight modes);
    * on-policy methods, by reward (``verifier`` is the setting's): ``target`` keeps (C3,
      reverse KL to p*); ``verifier_both`` gains (C8: each tilt multiplies the odds by
      P_old(ok)/P_new(ok) > 1); ``verifier_new`` loses (C8: odds shrink geometrically; for
      ``self_sft``, SFT on new-mode samples only, C2), and with an anchor to pi_0 (``kl_coef`` or
      ``kappa`` > 0) loses less than the same method without it (C8, fixed point
      q_0 e^{gamma R / kappa}).
    """
    if not SETTINGS[setting]["target_keeps_old"]:
        return "not modelled", "-", "held-out prompts: forgetting through shared parameters"
    if name in ("sft", "replay_sft"):
        lam = float(knobs["replay_fraction"])
        if lam == 0:
            return "loses", "C2", "forward KL to p_new alone: fixed point beta = 0"
        pred = ("keeps" if abs(lam - alpha) <= MASS_TOL else "gains" if lam > alpha
                else "loses")
        return pred, "C6", f"replay of p_old: retained mass = replay fraction {lam:g}"
    if name in ("distill", "sdft"):
        if name == "sdft":
            claim = "C8"
        else:
            claim = "C6" if knobs["divergence"] == "forward" else "C3"
        return "keeps", claim, "teacher = pi_0 + demonstration, the base's mode mixture"
    reward = knobs["reward"]
    if reward == "verifier":
        reward = "verifier_both" if SETTINGS[setting]["reward_old"] else "verifier_new"
    if reward == "target":
        return "keeps", "C3", f"reverse KL to p* with alpha = {alpha:g}"
    if reward == "verifier_both":
        return "gains", "C8", "tilt multiplies odds by P_old(ok)/P_new(ok) > 1"
    if name == "self_sft":
        return "loses", "C2", "SFT on new-mode samples only"
    if any(knobs.get(a, 0) > 0 for a in ANCHORS):
        return "loses less than unanchored", "C8", "anchor to pi_0: bounded odds at the fixed point"
    return "loses", "C8", "reward favours the new mode: odds shrink geometrically"


def measured_direction(old_mass_lost: float) -> str:
    """``loses``, ``keeps`` or ``gains`` by :data:`MASS_TOL`."""
    if old_mass_lost > MASS_TOL:
        return "loses"
    return "gains" if old_mass_lost < -MASS_TOL else "keeps"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE
               ) -> tuple[float, float] | None:
    """Student-t interval for the mean: mean -+ t_{(1 + c)/2, n - 1} s / sqrt(n), s the sample
    standard deviation (n - 1 in the denominator); None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * s / math.sqrt(n)
    return (mean - half, mean + half)


def at_gain(trajectory: Sequence[dict[str, float]], gain: float) -> dict[str, float] | None:
    """The trajectory read at new-task gain exactly ``gain``: each entry of
    :data:`READ_AT_GAIN` linearly interpolated between the two evaluations around the first one
    with ``new_task_gain >= gain`` (that evaluation itself if it is the first); None if the
    gain is never reached."""
    for i, rec in enumerate(trajectory):
        if rec["new_task_gain"] < gain:
            continue
        keys = [k for k in READ_AT_GAIN if k in rec]
        if i == 0:
            return {k: float(rec[k]) for k in keys}
        prev = trajectory[i - 1]
        w = (gain - prev["new_task_gain"]) / (rec["new_task_gain"] - prev["new_task_gain"])
        return {k: float(prev[k] + w * (rec[k] - prev[k])) for k in keys}
    return None


def verdict(interval: tuple[float, float] | None, prediction: str) -> tuple[str, str]:
    """Two-sided check of ``prediction`` (a key of :data:`REGIONS`) against an interval:
    ``yes`` if it lies inside the predicted side, ``no`` if it lies wholly outside, else
    ``undecided``; with the reason."""
    if interval is None:
        return "undecided", "one seed: no interval"
    low, high = REGIONS[prediction]
    lo, hi = interval
    side = f"predicted side ({low:g}, {high:g})"
    if low < lo and hi < high:
        return "yes", f"interval [{lo:.3g}, {hi:.3g}] inside the {side}"
    if hi <= low or lo >= high:
        return "no", f"interval [{lo:.3g}, {hi:.3g}] outside the {side}"
    return "undecided", f"interval [{lo:.3g}, {hi:.3g}] straddles an edge of the {side}"


@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run.

    ``target_gain[setting]`` is the headline matched gain, ``gain_levels[setting]`` further
    levels read from the same runs; ``seeds`` the default number of post-training seeds."""

    name: str
    model: GPTConfig
    pretrain: PretrainConfig
    post: PostTrainConfig
    batch_size: int
    eval_prompts: int
    eval_samples: int
    target_gain: dict[str, float]
    task: TaskConfig = field(default_factory=TaskConfig)
    gain_levels: dict[str, tuple[float, ...]] = field(default_factory=dict)
    seeds: int = 1

    def levels(self, setting: str) -> tuple[float, ...]:
        """The sorted matched-gain levels of ``setting``, the headline one included."""
        return tuple(sorted({self.target_gain[setting], *self.gain_levels.get(setting, ())}))


_V = len(VOCAB)
_BLOCK = Task().block_size
PROFILES = {
    "quick": Profile(
        "quick", GPTConfig(_V, _BLOCK, n_layer=2, n_head=4, n_embd=64),
        PretrainConfig(steps=600, batch_size=128),
        PostTrainConfig(max_steps=30, lr=2e-4, eval_every=1), batch_size=32,
        eval_prompts=48, eval_samples=8,
        target_gain={"same_prompts": 0.1, "held_out": 0.2},
        gain_levels={"same_prompts": (0.05, 0.1), "held_out": (0.1, 0.2)}, seeds=3,
    ),
    "full": Profile(
        "full", GPTConfig(_V, _BLOCK, n_layer=3, n_head=4, n_embd=128),
        PretrainConfig(steps=1000, batch_size=256),
        PostTrainConfig(max_steps=150, lr=5e-4, eval_every=1), batch_size=32,
        eval_prompts=128, eval_samples=16,
        target_gain={"same_prompts": 0.1, "held_out": 0.2},
        gain_levels={"same_prompts": (0.05, 0.1, 0.2), "held_out": (0.1, 0.2, 0.3)}, seeds=5,
    ),
}


@dataclass
class MethodResult:
    """One method (or several with identical trajectories) in one setting, read at one matched
    gain over its seeds.

    Entries are means over the ``seeds`` seeds that reached ``matched_gain``
    (``seeds_reached``; every seed's last evaluation if none did), ``intervals`` their 95 %
    t-intervals (None for one seed); ``per_seed`` the values of each seed (None where it did
    not reach the gain).
    ``same_trajectory`` lists other method specs whose runs were identical (collapsed into this
    row). ``old_drift_kl`` is the sampled estimate (``eval_samples`` continuations of pi_0 per
    prompt, the same at every evaluation), ``old_drift_kl_se`` its mean sampling standard
    error. ``theory`` is :func:`predict`'s prediction, ``claim`` its claim id, ``agrees`` the
    two-sided :func:`verdict` (``yes``, ``no``, ``undecided`` or ``n/a``) and ``agrees_reason``
    why. ``new_close_share`` (``several_answers``): the share of the correct new mass on the
    close answer; ``prefers`` which new answer holds more of it.
    """

    method: str
    setting: str
    reached: bool
    steps: float
    new_task_gain: float
    old_mass_lost: float
    mass_kl: float
    old_drift_kl: float
    old_drift_kl_se: float
    old_mass: float
    old_acc_when_produced: float
    seconds: float
    theory: str
    theory_reason: str
    knobs: dict[str, Any]
    trajectories: list[list[dict[str, float]]]
    claim: str = "-"
    agrees: str = "n/a"
    agrees_reason: str = ""
    drift_exact: bool = False
    drift_samples: int = 0
    new_other_shift_share: float | None = None
    new_close_share: float | None = None
    task: str = "standard"
    matched_gain: float = 0.0
    seeds: int = 1
    seeds_reached: int = 0
    same_trajectory: list[str] = field(default_factory=list)
    per_seed: list[dict[str, float] | None] = field(default_factory=list)
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)

    @property
    def measured(self) -> str:
        """``loses``, ``keeps`` or ``gains`` old mass (:func:`measured_direction` of the mean)."""
        return measured_direction(self.old_mass_lost)

    @property
    def prefers(self) -> str | None:
        """``close`` or ``far``: the new answer with more of the correct new mass, if there are
        a close and a far one."""
        if self.new_close_share is None:
            return None
        return "close" if self.new_close_share > 0.5 else "far"

    @property
    def names(self) -> str:
        """The row's method spec and those collapsed into it."""
        return " = ".join([self.method, *self.same_trajectory])


def _fingerprint(trajectories: list[list[dict[str, float]]]) -> tuple[Any, ...]:
    """What makes two runs the same: every evaluation of every seed."""
    return tuple(tuple((rec["step"], rec["new_task_gain"], rec["old_mass_lost"], rec["mass_kl"],
                        rec["old_drift_kl"]) for rec in traj) for traj in trajectories)


def _summarise(runs: list[list[dict[str, float]]], gain: float) -> tuple[
        list[dict[str, float] | None], int]:
    """Per seed, the run read at ``gain`` (None where it did not reach it; every seed's last
    evaluation if none did), and how many seeds reached it."""
    read = [at_gain(traj, gain) for traj in runs]
    n_reached = sum(r is not None for r in read)
    if n_reached:
        return read, n_reached
    return [{k: float(t[-1][k]) for k in READ_AT_GAIN if k in t[-1]} for t in runs], 0


def _agreement(results: list[MethodResult]) -> None:
    """Fill ``agrees``: the two-sided :func:`verdict` on old mass lost, or for an anchored run
    on the per-seed difference to the same run without the anchor (``n/a`` with a reason when
    the theory does not model the setting or that run is absent)."""
    for r in results:
        if r.theory == "not modelled":
            r.agrees, r.agrees_reason = "n/a", r.theory_reason
            continue
        if r.theory == "loses less than unanchored":
            plain = {**r.knobs, **{a: 0.0 for a in ANCHORS if a in r.knobs}}
            twin = [o for o in results if (o.task, o.setting, o.matched_gain)
                    == (r.task, r.setting, r.matched_gain) and o is not r
                    and any(_same_method(spec, r.method, plain)
                            for spec in (o.method, *o.same_trajectory))]
            if not twin:
                r.agrees, r.agrees_reason = "n/a", "the same method without the anchor was not run"
                continue
            diffs = [a["old_mass_lost"] - b["old_mass_lost"]
                     for a, b in zip(r.per_seed, twin[0].per_seed, strict=True)
                     if a is not None and b is not None]
            r.agrees, why = verdict(t_interval(diffs), r.theory)
            r.agrees_reason = f"anchored minus {twin[0].method}, paired by seed: {why}"
            continue
        r.agrees, r.agrees_reason = verdict(r.intervals.get("old_mass_lost"), r.theory)


def _same_method(spec: str, other: str, knobs: dict[str, Any]) -> bool:
    """Whether ``spec`` names the method of ``other`` with exactly ``knobs``."""
    return spec.split(":")[0] == other.split(":")[0] and make_method(spec).knobs() == knobs


@dataclass
class BenchmarkResult:
    """All runs of one benchmark, with the configuration that produced them."""

    profile: str
    methods: list[MethodResult]
    pretrain: dict[str, Any]
    base: dict[str, dict[str, float]]
    config: dict[str, Any]
    seconds: float

    def agreement_counts(self) -> dict[str, dict[str, int]]:
        """Verdicts per matched gain (``setting@gain``), one per distinct trajectory; the
        ``yes`` count is the number of independent confirmations at that gain."""
        counts: dict[str, dict[str, int]] = {}
        for r in self.methods:
            c = counts.setdefault(f"{r.setting}@{r.matched_gain:g}",
                                  {"yes": 0, "no": 0, "undecided": 0, "n/a": 0})
            c[r.agrees] += 1
        return counts

    def to_dict(self, trajectories: bool = True) -> dict[str, Any]:
        """JSON-ready form; ``methods`` holds one object per distinct run, setting and gain."""
        rows = []
        for r in self.methods:
            row = asdict(r)
            intervals = row.pop("intervals")
            trajs = row.pop("trajectories")
            row.update({f"{k}_ci": list(v) if v is not None else None
                        for k, v in intervals.items()})
            row["measured"] = r.measured
            row["prefers"] = r.prefers
            row["old_drift_kl_se_text"] = f"± {r.old_drift_kl_se:.1e} (sampling)"
            if trajectories:
                row["trajectory"] = trajs[0]
                row["trajectories"] = trajs
            rows.append(row)
        return {"profile": self.profile, "seeds": self.config["seeds"], "methods": rows,
                "agreement": self.agreement_counts(), "pretrain": self.pretrain,
                "base": self.base, "config": self.config, "seconds": self.seconds}

    def table(self) -> str:
        """The headline table as Markdown: means with 95 % intervals over seeds."""
        variant = self.config.get("variant", "standard")
        share = {"two-answer": ("+7 share", "new_other_shift_share"),
                 "several_answers": ("close share", "new_close_share")}.get(variant)
        cols = ["setting", "gain", "method", "reached", "steps", "old mass lost", "mass KL",
                "old drift KL", *([share[0]] if share else []), "theory (claim)", "measured",
                "agrees"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in self.methods:
            gain = (f"{r.matched_gain:g}" if r.seeds_reached
                    else f"{r.matched_gain:g} (not reached: {r.new_task_gain:.3f})")
            extra = [_cell(r, share[1], ".3f")] if share else []
            cells = [r.setting, gain, r.names, f"{r.seeds_reached}/{len(r.per_seed)}",
                     _cell(r, "steps", ".1f"), _cell(r, "old_mass_lost", ".3f"),
                     _cell(r, "mass_kl", ".4f"), _cell(r, "old_drift_kl", ".1e"), *extra,
                     f"{r.theory} ({r.claim})", r.measured, r.agrees]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line per matched gain: verdicts over distinct trajectories."""
        return "\n".join(
            f"{key}: {c['yes']} independent confirmations, {c['no']} disagreements, "
            f"{c['undecided']} undecided, {c['n/a']} n/a (one per distinct trajectory)"
            for key, c in self.agreement_counts().items())

    def figures(self, out_dir: Path) -> list[Path]:
        """PNG per setting: old mass lost and old drift KL against new-task gain per method,
        one line per seed."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir.mkdir(parents=True, exist_ok=True)
        variant = self.config.get("variant", "standard")
        paths = []
        for setting in dict.fromkeys(r.setting for r in self.methods):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
            first = self.config["levels"][setting][0]
            rows = [r for r in self.methods if r.setting == setting and r.matched_gain == first]
            for k, r in enumerate(rows):  # 20 distinct colours, then a second line style
                style = {"color": plt.get_cmap("tab20")(k % 20), "marker": ".",
                         "ls": "-" if k < 20 else "--", "lw": 0.8}
                for i, traj in enumerate(r.trajectories):
                    gain = [p["new_task_gain"] for p in traj]
                    label = r.names if i == 0 else None
                    axes[0].plot(gain, [p["old_mass_lost"] for p in traj], label=label, **style)
                    axes[1].plot(gain, [p["old_drift_kl"] for p in traj], **style)
            for ax, ylabel in zip(axes, ("old mass lost  m_0 - m", "old-component drift KL"),
                                  strict=True):
                for level in self.config["levels"][setting]:
                    ax.axvline(level, color="grey", ls=":")
                ax.set_xlabel("new-task gain")
                ax.set_ylabel(ylabel)
            axes[0].legend(fontsize=6)
            fig.suptitle(f"forgetlab lm benchmark ({self.profile}, {variant}): {setting}")
            fig.tight_layout()
            stem = setting if variant == "standard" else f"{variant}_{setting}"
            path = out_dir / f"lm_{stem}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            paths.append(path)
        return paths


def _cell(r: MethodResult, key: str, fmt: str) -> str:
    """``mean [low, high]`` of a row entry (``-`` if absent)."""
    mean = getattr(r, key)
    if mean is None:
        return "-"
    ci = r.intervals.get(key)
    return f"{mean:{fmt}}" + (f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci is not None else "")


def _run_seed(seed: int, setting: str, k: int) -> int:
    """Generator seed of post-training seed ``k``: shared by every method (common random
    numbers), so identical computations give identical runs."""
    return zlib.crc32(f"{seed}/{setting}/{k}".encode())


def _rows(task_name: str, setting: str, spec: str, runs: list[list[dict[str, float]]],
          gains: Sequence[float], method: Any, alpha: float, seconds: float, samples: int
          ) -> list[MethodResult]:
    """One :class:`MethodResult` per matched gain for the seeds' trajectories ``runs``."""
    theory, claim, reason = predict(method.name, method.knobs(), setting, alpha)
    out = []
    for gain in gains:
        per_seed, n_reached = _summarise(runs, gain)
        used = [p for p in per_seed if p is not None]
        mean = {k: sum(p[k] for p in used) / len(used) for k in used[0]}
        mean["steps"] = mean.pop("step")
        intervals = {k: t_interval([p["step" if k == "steps" else k] for p in used])
                     if k in mean else None for k in WITH_INTERVAL}
        out.append(MethodResult(
            method=spec, setting=setting, reached=n_reached == len(runs), steps=mean["steps"],
            new_task_gain=mean["new_task_gain"], old_mass_lost=mean["old_mass_lost"],
            mass_kl=mean["mass_kl"], old_drift_kl=mean["old_drift_kl"],
            old_drift_kl_se=mean["old_drift_kl_se"], old_mass=mean["old_mass"],
            old_acc_when_produced=mean["old_acc_when_produced"], seconds=seconds,
            theory=theory, theory_reason=reason, knobs=method.knobs(), trajectories=runs,
            claim=claim, drift_samples=samples,
            new_other_shift_share=mean.get("new_other_shift_share"),
            new_close_share=mean.get("new_close_share"), task=task_name, matched_gain=gain,
            seeds=len(used), seeds_reached=n_reached, per_seed=per_seed, intervals=intervals))
    return out


def run_benchmark(
    profile: str | Profile = "quick",
    methods: Sequence[str] | None = None,
    settings: Sequence[str] = ("same_prompts", "held_out"),
    *,
    cache_dir: Path | None = None,
    threads: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    variant: str = "standard",
    seeds: int | None = None,
) -> BenchmarkResult:
    """Pre-train (or load) the base and post-train every method in every setting, ``seeds``
    times (default: the profile's).

    ``profile`` is ``"quick"`` (2 x 64 model, about a minute of pre-training on two idle cores,
    runs of at most 30 steps, 3 seeds) or ``"full"`` (3 x 128, the lm.md sizes, 5 seeds) or a
    :class:`Profile`. ``methods`` are method specs (``"name"`` or ``"name:knob=value"``, default
    :data:`DEFAULT_METHODS`); ``threads`` sets torch's CPU threads; ``variant`` is a key of
    :data:`VARIANTS`. Deterministic given ``seed``: post-training seed k of a setting draws from
    its own ``torch.Generator`` seeded by (seed, setting, k), the same for every method.
    """
    prof = PROFILES[profile] if isinstance(profile, str) and profile in PROFILES else profile
    if not isinstance(prof, Profile):
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    for s in settings:
        if s not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {s!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    n_seeds = prof.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    specs = list(dict.fromkeys(methods or DEFAULT_METHODS))
    for spec in specs:
        make_method(spec)  # validate names and knobs before any training
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    start = time.perf_counter()
    task = Task(replace(prof.task, **VARIANTS[variant]))

    def tick(label: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda i, n: progress(label, i, n))

    base, pre_info = load_or_pretrain(task, prof.model, prof.pretrain, cache_dir,
                                      tick("pre-training"))
    results: list[MethodResult] = []
    base_metrics: dict[str, dict[str, float]] = {}
    alphas: dict[str, float] = {}
    for setting in settings:
        cfg = SETTINGS[setting]
        alpha = task.config.old_mass[cfg["train_family"]] if cfg["target_keeps_old"] else 0.0
        alphas[setting] = alpha
        evaluator = Evaluator(task, base, cfg["train_family"], cfg["old_family"],
                              prof.eval_prompts, prof.eval_samples, seed=seed + 1234)
        base_metrics[setting] = evaluator(base)
        gains = prof.levels(setting)
        post_cfg = replace(prof.post, target_gain=gains[-1])
        seen: dict[tuple[Any, ...], MethodResult] = {}
        for spec in specs:
            runs, seconds = [], 0.0
            for k in range(n_seeds):
                gen = torch.Generator().manual_seed(_run_seed(seed, setting, k))
                policy = _trainable_copy(base)
                method = make_method(spec).bind(Setting(
                    task, policy, base, cfg["train_family"], cfg["replay_family"],
                    cfg["reward_old"], prof.batch_size, gen, target_old_mass=alpha))
                t0 = time.perf_counter()
                runs.append(post_train(policy, method, evaluator, post_cfg,
                                       tick(f"{setting}: {spec} (seed {k})")))
                seconds += time.perf_counter() - t0
            rows = _rows(variant, setting, spec, runs, gains, method, alpha,
                         seconds / n_seeds, prof.eval_samples)
            key = (_fingerprint(runs), rows[0].theory, rows[0].claim)
            if key in seen:  # the same computation under another name: one row
                for r in (x for x in results if x.method == seen[key].method
                          and x.setting == setting):
                    r.same_trajectory.append(spec)
                continue
            seen[key] = rows[0]
            results.extend(rows)
    results.sort(key=lambda r: (list(settings).index(r.setting), r.matched_gain))
    _agreement(results)
    config = {"profile": asdict(prof), "settings": {s: SETTINGS[s] for s in settings},
              "target_gain": prof.target_gain, "levels": {s: prof.levels(s) for s in settings},
              "seeds": n_seeds, "confidence": CONFIDENCE, "target_old_mass": alphas,
              "seed": seed, "variant": variant, "task": task.config.as_dict(),
              "new_shifts": list(task.config.new_shifts), "mass_tol": MASS_TOL,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    return BenchmarkResult(prof.name, results, pre_info, base_metrics, config,
                           time.perf_counter() - start)


def _trainable_copy(base: torch.nn.Module) -> Any:
    policy = copy.deepcopy(base)
    for p in policy.parameters():
        p.requires_grad_(True)
    return policy
