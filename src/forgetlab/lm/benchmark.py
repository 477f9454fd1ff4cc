"""The built-in LM benchmark: pre-train once (cached), post-train each method to a matched gain.

For each setting and method: copy the pre-trained base, post-train with the method until the
new-task gain (exact probability of a correct new answer, minus the base's) reaches the
setting's target or ``max_steps`` pass, evaluating every ``eval_every`` steps; record the whole
trajectory and, at the stopping checkpoint, the old mass lost, the mass KL and the old-component
drift KL (:mod:`forgetlab.lm.evaluate`).

Settings (lm.md):

* ``same_prompts``: train and measure on the mixed family ``m`` (pre-training: old mode with
  probability 1/2, noisy new mode otherwise). The target keeps both modes, so the verifier
  credits the correct old answer too; SFT sees new-task demonstrations, replay SFT adds old-task
  demonstrations on the same prompts.
* ``held_out``: train on the new-task family ``n``, measure on the old-task family ``o``; the
  verifier credits only correct new answers, replay uses old-task demonstrations on ``o``.

The explicit target p* of ``reward=target`` (:mod:`forgetlab.lm.target`) has old mass alpha =
the training family's pre-training old mass on ``same_prompts`` (0.5) and 0 on ``held_out``.
Each row carries the theory's prediction derived from the method's knobs (:func:`predict`), the
claim it rests on and whether the measured direction agrees.

Use :func:`run_benchmark` from Python, ``forgetlab lm benchmark`` from the shell.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

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
    "rft", "iterative_sft:reward=verifier_new", "distill", "distill:divergence=forward", "sdft",
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

VARIANTS: dict[str, tuple[int, ...]] = {"standard": (3,), "two-answer": (3, 7)}
"""The new task's accepted shifts: one, or two sequence-level answer modes (+3 or +7, each with
probability 1/2; pre-training knows only +3)."""

MASS_TOL = 0.05
"""|old mass lost| at most this reads as ``keeps``; above as ``loses``, below minus as ``gains``."""

ANCHORS = ("kl_coef", "kappa")


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
      ``rft``, SFT on new-mode samples only, C2), and with an anchor to pi_0 (``kl_coef`` or
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


@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run."""

    name: str
    model: GPTConfig
    pretrain: PretrainConfig
    post: PostTrainConfig
    batch_size: int
    eval_prompts: int
    eval_samples: int
    target_gain: dict[str, float]
    task: TaskConfig = field(default_factory=TaskConfig)


_V = len(VOCAB)
_BLOCK = Task().block_size
PROFILES = {
    "quick": Profile(
        "quick", GPTConfig(_V, _BLOCK, n_layer=2, n_head=4, n_embd=64),
        PretrainConfig(steps=600, batch_size=128),
        PostTrainConfig(max_steps=40, lr=2e-4, eval_every=2), batch_size=32,
        eval_prompts=48, eval_samples=8,
        target_gain={"same_prompts": 0.1, "held_out": 0.2},
    ),
    "full": Profile(
        "full", GPTConfig(_V, _BLOCK, n_layer=3, n_head=4, n_embd=128),
        PretrainConfig(steps=1000, batch_size=256),
        PostTrainConfig(max_steps=150, lr=5e-4, eval_every=5), batch_size=32,
        eval_prompts=128, eval_samples=16,
        target_gain={"same_prompts": 0.1, "held_out": 0.2},
    ),
}


@dataclass
class MethodResult:
    """One post-training run, read at the first evaluation with gain >= target (if reached).

    ``old_drift_kl`` at that checkpoint is exact (enumerated, ``drift_exact``) when the answer
    space is small enough, else the sampled estimate with standard error ``old_drift_kl_se``.
    ``theory`` is :func:`predict`'s prediction, ``claim`` its claim id and ``agrees`` whether
    the measured direction matches (``yes``, ``no`` or ``n/a``).
    """

    method: str
    setting: str
    reached: bool
    steps: int
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
    trajectory: list[dict[str, float]]
    claim: str = "-"
    agrees: str = "n/a"
    drift_exact: bool = False
    drift_samples: int = 0
    new_other_shift_share: float | None = None

    @property
    def measured(self) -> str:
        """``loses``, ``keeps`` or ``gains`` old mass (:func:`measured_direction`)."""
        return measured_direction(self.old_mass_lost)

    @property
    def drift_se_text(self) -> str:
        """The drift's uncertainty as the table prints it."""
        if self.drift_exact:
            return "exact (enumerated)"
        if self.old_drift_kl_se > 0:
            return f"± {self.old_drift_kl_se:.1e}"
        return f"n/a (no variance observed in {self.drift_samples} samples)"


def _agreement(results: list[MethodResult]) -> None:
    """Fill ``agrees``: direction match, or for an anchored run, less loss than the same run
    without the anchor (``n/a`` if that run is absent)."""
    for r in results:
        if r.theory == "not modelled":
            r.agrees = "n/a"
        elif r.theory == "loses less than unanchored":
            plain = {**r.knobs, **{a: 0.0 for a in ANCHORS if a in r.knobs}}
            twin = [o for o in results if o.setting == r.setting and o is not r
                    and o.method.split(":")[0] == r.method.split(":")[0] and o.knobs == plain]
            r.agrees = ("n/a" if not twin
                        else "yes" if r.old_mass_lost < twin[0].old_mass_lost else "no")
        else:
            r.agrees = "yes" if r.measured == r.theory else "no"


@dataclass
class BenchmarkResult:
    """All runs of one benchmark, with the configuration that produced them."""

    profile: str
    methods: list[MethodResult]
    pretrain: dict[str, Any]
    base: dict[str, dict[str, float]]
    config: dict[str, Any]
    seconds: float

    def to_dict(self, trajectories: bool = True) -> dict[str, Any]:
        """JSON-ready form; ``methods`` holds one object per (method, setting)."""
        rows = []
        for r in self.methods:
            row = asdict(r)
            row["measured"] = r.measured
            row["old_drift_kl_se_text"] = r.drift_se_text
            if not trajectories:
                row.pop("trajectory")
            rows.append(row)
        return {"profile": self.profile, "methods": rows, "pretrain": self.pretrain,
                "base": self.base, "config": self.config, "seconds": self.seconds}

    def table(self) -> str:
        """The headline table as Markdown."""
        two = self.config.get("variant") == "two-answer"
        cols = ["setting", "method", "reached", "steps", "new-task gain", "old mass lost",
                "mass KL", "old drift KL", "drift se", *(["+7 share"] if two else []),
                "theory (claim)", "measured", "agrees"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in self.methods:
            share = ([f"{r.new_other_shift_share:.3f}" if r.new_other_shift_share is not None
                      else "-"] if two else [])
            cells = [r.setting, r.method, "yes" if r.reached else "no", str(r.steps),
                     f"{r.new_task_gain:.3f}", f"{r.old_mass_lost:.3f}", f"{r.mass_kl:.4f}",
                     f"{r.old_drift_kl:.2e}", r.drift_se_text, *share,
                     f"{r.theory} ({r.claim})", r.measured, r.agrees]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def figures(self, out_dir: Path) -> list[Path]:
        """PNG per setting: old mass lost and old drift KL against new-task gain per method."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir.mkdir(parents=True, exist_ok=True)
        variant = self.config.get("variant", "standard")
        paths = []
        for setting in dict.fromkeys(r.setting for r in self.methods):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
            rows = [r for r in self.methods if r.setting == setting]
            for k, r in enumerate(rows):  # 20 distinct colours, then a second line style
                style = {"color": plt.get_cmap("tab20")(k % 20), "marker": ".",
                         "ls": "-" if k < 20 else "--", "label": r.method}
                gain = [p["new_task_gain"] for p in r.trajectory]
                axes[0].plot(gain, [p["old_mass_lost"] for p in r.trajectory], **style)
                axes[1].plot(gain, [p["old_drift_kl"] for p in r.trajectory], **style)
            for ax, ylabel in zip(axes, ("old mass lost  m_0 - m", "old-component drift KL"),
                                  strict=True):
                ax.axvline(self.config["target_gain"][setting], color="grey", ls=":")
                ax.set_xlabel("new-task gain")
                ax.set_ylabel(ylabel)
            axes[1].legend(fontsize=7)
            fig.suptitle(f"forgetlab lm benchmark ({self.profile}, {variant}): {setting}")
            fig.tight_layout()
            stem = setting if variant == "standard" else f"{variant}_{setting}"
            path = out_dir / f"lm_{stem}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            paths.append(path)
        return paths


def _run_seed(seed: int, setting: str, spec: str) -> int:
    return zlib.crc32(f"{seed}/{setting}/{spec}".encode())


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
) -> BenchmarkResult:
    """Pre-train (or load) the base and post-train every method in every setting.

    ``profile`` is ``"quick"`` (2 x 64 model, about a minute of pre-training on two idle cores,
    runs of at most 40 steps) or ``"full"`` (3 x 128, the lm.md sizes) or a :class:`Profile`.
    ``methods`` are method specs (``"name"`` or ``"name:knob=value"``, default
    :data:`DEFAULT_METHODS`); ``threads`` sets torch's CPU threads; ``variant`` is a key of
    :data:`VARIANTS` (``two-answer``: the new task accepts +3 or +7; the base is shared).
    Deterministic given ``seed``: each run draws from its own ``torch.Generator`` seeded by
    (seed, setting, method).
    """
    prof = PROFILES[profile] if isinstance(profile, str) and profile in PROFILES else profile
    if not isinstance(prof, Profile):
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    for s in settings:
        if s not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {s!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    specs = list(methods or DEFAULT_METHODS)
    for spec in specs:
        make_method(spec)  # validate names and knobs before any training
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    start = time.perf_counter()
    task = Task(replace(prof.task, new_shifts=VARIANTS[variant]))

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
        post_cfg = replace(prof.post, target_gain=prof.target_gain[setting])
        for spec in specs:
            gen = torch.Generator().manual_seed(_run_seed(seed, setting, spec))
            policy = _trainable_copy(base)
            method = make_method(spec).bind(Setting(
                task, policy, base, cfg["train_family"], cfg["replay_family"],
                cfg["reward_old"], prof.batch_size, gen, target_old_mass=alpha))
            t0 = time.perf_counter()
            traj = post_train(policy, method, evaluator, post_cfg, tick(f"{setting}: {spec}"))
            last = traj[-1]
            exact = evaluator.can_enumerate()
            drift = evaluator.exact_old_drift(policy) if exact else last["old_drift_kl"]
            theory, claim, reason = predict(method.name, method.knobs(), setting, alpha)
            results.append(MethodResult(
                method=spec, setting=setting,
                reached=last["new_task_gain"] >= prof.target_gain[setting],
                steps=int(last["step"]), new_task_gain=last["new_task_gain"],
                old_mass_lost=last["old_mass_lost"], mass_kl=last["mass_kl"],
                old_drift_kl=drift, old_drift_kl_se=0.0 if exact else last["old_drift_kl_se"],
                old_mass=last["old_mass"], old_acc_when_produced=last["old_acc_when_produced"],
                seconds=time.perf_counter() - t0, theory=theory, theory_reason=reason,
                knobs=method.knobs(), trajectory=traj, claim=claim, drift_exact=exact,
                drift_samples=prof.eval_samples,
                new_other_shift_share=last.get("new_other_shift_share"),
            ))
    _agreement(results)
    config = {"profile": asdict(prof), "settings": {s: SETTINGS[s] for s in settings},
              "target_gain": prof.target_gain, "target_old_mass": alphas, "seed": seed,
              "variant": variant, "new_shifts": list(VARIANTS[variant]),
              "mass_tol": MASS_TOL, "threads": torch.get_num_threads(),
              "torch": torch.__version__}
    return BenchmarkResult(prof.name, results, pre_info, base_metrics, config,
                           time.perf_counter() - start)


def _trainable_copy(base: torch.nn.Module) -> Any:
    import copy

    policy = copy.deepcopy(base)
    for p in policy.parameters():
        p.requires_grad_(True)
    return policy
