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
    "sft", "replay_sft", "rl", "rl:kl_coef=0.1", "rft", "iterative_sft", "distill",
    "distill:divergence=forward", "distill:divergence=jsd", "sdft", "ttt_discover", "oapl",
)

SETTINGS: dict[str, dict[str, Any]] = {
    "same_prompts": {"train_family": "m", "old_family": "m", "replay_family": "m",
                     "reward_old": True},
    "held_out": {"train_family": "n", "old_family": "o", "replay_family": "o",
                 "reward_old": False},
}

# What the mixture theory (theory.md) predicts for the old mass in the same-prompts setting,
# where the target keeps both modes: only forward KL on new-task data alone loses it.
THEORY: dict[str, tuple[str, str]] = {
    "sft": ("loses", "C2: forward KL to p_new has the fixed point beta = 0"),
    "replay_sft": ("keeps", "C6: replay of p_old keeps mass = replay fraction"),
    "rl": ("keeps", "C3/C8: the verifier credits both modes; tilt odds P_old(ok)/P_new(ok)"),
    "rft": ("keeps", "forward KL to pi_0 filtered by a verifier crediting both modes"),
    "iterative_sft": ("keeps", "repeated filtering multiplies odds by P_old(ok)/P_new(ok)"),
    "distill": ("keeps", "the fixed teacher has the base's mode mixture"),
    "sdft": ("keeps", "C8: demonstration that does not reweight modes"),
    "ttt_discover": ("keeps", "C8: tilt odds P_old(ok)/P_new(ok) with the old mode credited"),
    "oapl": ("keeps", "C8: per-sync odds Z_o/Z_n >= 1 when the old mode is credited"),
}


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
    """One post-training run, read at the first evaluation with gain >= target (if reached)."""

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

    @property
    def measured(self) -> str:
        """``loses`` if more than 0.1 of old mass was lost, else ``keeps``."""
        return "loses" if self.old_mass_lost > 0.1 else "keeps"


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
            if not trajectories:
                row.pop("trajectory")
            rows.append(row)
        return {"profile": self.profile, "methods": rows, "pretrain": self.pretrain,
                "base": self.base, "config": self.config, "seconds": self.seconds}

    def table(self) -> str:
        """The headline table as Markdown."""
        head = ("| setting | method | reached | steps | new-task gain | old mass lost | mass KL "
                "| old drift KL (± se) | theory (mass) |")
        lines = [head, "|" + "---|" * 9]
        for r in self.methods:
            theory = r.theory if r.setting == "same_prompts" else "not modelled"
            lines.append(
                f"| {r.setting} | {r.method} | {'yes' if r.reached else 'no'} | {r.steps} "
                f"| {r.new_task_gain:.3f} | {r.old_mass_lost:.3f} | {r.mass_kl:.4f} "
                f"| {r.old_drift_kl:.2e} ± {r.old_drift_kl_se:.1e} | {theory} |")
        return "\n".join(lines)

    def figures(self, out_dir: Path) -> list[Path]:
        """PNG per setting: old mass lost and old drift KL against new-task gain per method."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for setting in dict.fromkeys(r.setting for r in self.methods):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
            for r in (r for r in self.methods if r.setting == setting):
                gain = [p["new_task_gain"] for p in r.trajectory]
                axes[0].plot(gain, [p["old_mass_lost"] for p in r.trajectory], marker=".",
                             label=r.method)
                axes[1].plot(gain, [p["old_drift_kl"] for p in r.trajectory], marker=".",
                             label=r.method)
            for ax, ylabel in zip(axes, ("old mass lost  m_0 - m", "old-component drift KL"),
                                  strict=True):
                ax.axvline(self.config["target_gain"][setting], color="grey", ls=":")
                ax.set_xlabel("new-task gain")
                ax.set_ylabel(ylabel)
            axes[1].legend(fontsize=7)
            fig.suptitle(f"forgetlab lm benchmark ({self.profile}): {setting}")
            fig.tight_layout()
            path = out_dir / f"lm_{setting}.png"
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
) -> BenchmarkResult:
    """Pre-train (or load) the base and post-train every method in every setting.

    ``profile`` is ``"quick"`` (2 x 64 model, about a minute of pre-training on two idle cores,
    runs of at most 60 steps) or ``"full"`` (3 x 128, the lm.md sizes) or a :class:`Profile`.
    ``methods`` are method specs (``"name"`` or ``"name:knob=value"``, default
    :data:`DEFAULT_METHODS`); ``threads`` sets torch's CPU threads. Deterministic given
    ``seed``: each run draws from its own ``torch.Generator`` seeded by (seed, setting, method).
    """
    prof = PROFILES[profile] if isinstance(profile, str) and profile in PROFILES else profile
    if not isinstance(prof, Profile):
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    for s in settings:
        if s not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {s!r}")
    specs = list(methods or DEFAULT_METHODS)
    for spec in specs:
        make_method(spec)  # validate names and knobs before any training
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    start = time.perf_counter()
    task = Task(prof.task)

    def tick(label: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda i, n: progress(label, i, n))

    base, pre_info = load_or_pretrain(task, prof.model, prof.pretrain, cache_dir,
                                      tick("pre-training"))
    results: list[MethodResult] = []
    base_metrics: dict[str, dict[str, float]] = {}
    for setting in settings:
        cfg = SETTINGS[setting]
        evaluator = Evaluator(task, base, cfg["train_family"], cfg["old_family"],
                              prof.eval_prompts, prof.eval_samples, seed=seed + 1234)
        base_metrics[setting] = evaluator(base)
        post_cfg = replace(prof.post, target_gain=prof.target_gain[setting])
        for spec in specs:
            gen = torch.Generator().manual_seed(_run_seed(seed, setting, spec))
            policy = _trainable_copy(base)
            method = make_method(spec).bind(Setting(
                task, policy, base, cfg["train_family"], cfg["replay_family"],
                cfg["reward_old"], prof.batch_size, gen))
            t0 = time.perf_counter()
            traj = post_train(policy, method, evaluator, post_cfg, tick(f"{setting}: {spec}"))
            last = traj[-1]
            theory, reason = THEORY[method.name]
            results.append(MethodResult(
                method=spec, setting=setting,
                reached=last["new_task_gain"] >= prof.target_gain[setting],
                steps=int(last["step"]), new_task_gain=last["new_task_gain"],
                old_mass_lost=last["old_mass_lost"], mass_kl=last["mass_kl"],
                old_drift_kl=last["old_drift_kl"], old_drift_kl_se=last["old_drift_kl_se"],
                old_mass=last["old_mass"], old_acc_when_produced=last["old_acc_when_produced"],
                seconds=time.perf_counter() - t0, theory=theory, theory_reason=reason,
                knobs=method.knobs(), trajectory=traj,
            ))
    config = {"profile": asdict(prof), "settings": {s: SETTINGS[s] for s in settings},
              "target_gain": prof.target_gain, "seed": seed,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    return BenchmarkResult(prof.name, results, pre_info, base_metrics, config,
                           time.perf_counter() - start)


def _trainable_copy(base: torch.nn.Module) -> Any:
    import copy

    policy = copy.deepcopy(base)
    for p in policy.parameters():
        p.requires_grad_(True)
    return policy
