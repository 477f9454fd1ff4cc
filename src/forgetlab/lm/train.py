"""Pre-training the built-in model (cached on disk) and the post-training loop.

The loop is shared by every method: the method returns a loss for step t, the loop takes the
optimiser step, calls the method's ``after_step`` hook (EMA teacher, lagged sampler) and every
``eval_every`` steps records the metrics of :class:`~forgetlab.lm.evaluate.Evaluator`; it stops
when the new-task gain reaches ``target_gain``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from forgetlab.lm.corpus import Task, TaskConfig
from forgetlab.lm.losses import token_cross_entropy
from forgetlab.lm.model import GPT, GPTConfig

CACHE_FORMAT = 1
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training schedule: AdamW, linear warm-up then cosine decay to ``lr / 10``."""

    steps: int = 1000
    batch_size: int = 256
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0


def default_cache_dir() -> Path:
    """``$FORGETLAB_CACHE`` or ``~/.cache/forgetlab``."""
    return Path(os.environ.get("FORGETLAB_CACHE", Path.home() / ".cache" / "forgetlab"))


def cache_key(task: TaskConfig, model: GPTConfig, train: PretrainConfig) -> str:
    """Hash of everything that determines the pre-trained weights: the configurations, the
    torch version and torch's CPU thread count (its reductions, hence the weights, depend on it:
    1 and 2 threads differ by up to 0.02 in a weight after the quick pre-training).

    The post-training target's accepted answers (``new_shifts``, ``new_close``) do not enter
    pre-training and are left out, so the two-answer variant shares the base model."""
    corpus = {k: v for k, v in task.as_dict().items() if k not in ("new_shifts", "new_close")}
    blob = json.dumps(
        {"format": CACHE_FORMAT, "task": corpus, "model": asdict(model),
         "train": asdict(train), "torch": torch.__version__.split("+")[0],
         "threads": torch.get_num_threads()},
        sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + torch.cos(torch.tensor(frac * torch.pi)).item()))


def pretrain(
    task: Task, model_config: GPTConfig, cfg: PretrainConfig, progress: Progress | None = None
) -> tuple[GPT, list[float]]:
    """Train a fresh model on the task's pre-training corpus; returns it and the loss curve.

    The loss is the token cross-entropy on answer tokens (the prompts are uniform noise).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    model = GPT(model_config, gen)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        seqs, mask = task.pretrain_batch(cfg.batch_size, gen)
        logits = model(seqs[:, :-1])
        loss = token_cross_entropy(logits, seqs[:, 1:], mask[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, cfg.steps)
    model.eval()
    return model, losses


def load_or_pretrain(
    task: Task,
    model_config: GPTConfig,
    cfg: PretrainConfig,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[GPT, dict[str, Any]]:
    """The pre-trained model from ``cache_dir/lm/<key>.pt``, training and saving it if absent.

    Returns the model and a record (key, path, whether it was cached, seconds, final loss).
    """
    directory = (cache_dir or default_cache_dir()) / "lm"
    key = cache_key(task.config, model_config, cfg)
    path = directory / f"{key}.pt"
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = GPT(model_config)
        model.load_state_dict(state["model"])
        model.eval()
        return model, {"key": key, "path": str(path), "cached": True, **state["info"]}
    start = time.perf_counter()
    model, losses = pretrain(task, model_config, cfg, progress)
    info = {"seconds": time.perf_counter() - start,
            "final_loss": sum(losses[-20:]) / len(losses[-20:])}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"model": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)
    return model, {"key": key, "path": str(path), "cached": False, **info}


def frozen_copy(model: GPT) -> GPT:
    """A copy of ``model`` with gradients off (reference, teacher, lagged sampler)."""
    twin = copy.deepcopy(model)
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class StepMethod(Protocol):
    """What the post-training loop needs from a method (see :mod:`forgetlab.lm.methods`)."""

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]: ...

    def after_step(self, step: int) -> None: ...


@dataclass(frozen=True)
class PostTrainConfig:
    """Post-training schedule: Adam at a constant learning rate, evaluation cadence, stop rule."""

    max_steps: int = 150
    lr: float = 3e-4
    eval_every: int = 5
    target_gain: float | None = None
    grad_clip: float = 1.0


def post_train(
    policy: GPT,
    method: StepMethod,
    evaluate: Callable[[GPT], dict[str, float]],
    cfg: PostTrainConfig,
    progress: Progress | None = None,
) -> list[dict[str, float]]:
    """Run ``method`` on ``policy`` in place; returns the trajectory of evaluations.

    Evaluations happen at step 0 and every ``eval_every`` steps; the run stops after the first
    evaluation whose ``new_task_gain`` reaches ``target_gain`` or at ``max_steps``.
    """
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    trajectory = [{"step": 0, **evaluate(policy)}]
    start = time.perf_counter()
    for step in range(cfg.max_steps):
        policy.train()
        loss, diag = method.loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
        policy.eval()
        method.after_step(step)
        if progress is not None:
            progress(step + 1, cfg.max_steps)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps:
            record = {"step": step + 1, "loss": float(loss.detach()), **diag, **evaluate(policy),
                      "seconds": time.perf_counter() - start}
            trajectory.append(record)
            if cfg.target_gain is not None and record["new_task_gain"] >= cfg.target_gain:
                break
    return trajectory
