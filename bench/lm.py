"""Training throughput of forgetlab's LM pre-training loop against a plain PyTorch loop.

Both loops train the same model (same config, same initial weights) on the same synthetic
batches, in the same process; the table reports training tokens per second (every position of
every sequence counts as one token), the ratio library / plain, and the peak resident memory.
A benchmark informs and never fails: it prints a table and one JSON line.

    python bench/lm.py [--steps 40] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from _results import append_result
from forgetlab.lm.corpus import VOCAB, Task
from forgetlab.lm.model import GPT, GPTConfig
from forgetlab.lm.train import PretrainConfig, pretrain
from forgetlab.parallel import available_cores


def plain_loop(task: Task, config: GPTConfig, cfg: PretrainConfig) -> GPT:
    """The obvious loop: AdamW at a fixed learning rate, cross-entropy on answer tokens."""
    gen = torch.Generator().manual_seed(cfg.seed)
    model = GPT(config, gen)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.steps):
        seqs, mask = task.pretrain_batch(cfg.batch_size, gen)
        logits = model(seqs[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), seqs[:, 1:].reshape(-1), reduction="none")
        loss = (loss * mask[:, 1:].reshape(-1)).sum() / mask[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--quick", action="store_true", help="the quick profile's 2 x 64 model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = Task()
    width, layers, batch = (64, 2, 128) if args.quick else (128, 3, 256)
    config = GPTConfig(len(VOCAB), task.block_size, n_layer=layers, n_head=4, n_embd=width)
    cfg = PretrainConfig(steps=args.steps, batch_size=batch, warmup=1)
    tokens = args.steps * batch * (task.block_size - 1)
    rows = {}
    for name, run in (("plain", plain_loop), ("forgetlab", lambda t, c, p: pretrain(t, c, p)),
                      ("plain (repeat)", plain_loop), ("forgetlab (repeat)",
                                                       lambda t, c, p: pretrain(t, c, p))):
        start = time.perf_counter()
        run(task, config, cfg)
        rows[name] = tokens / (time.perf_counter() - start)
    plain = max(rows["plain"], rows["plain (repeat)"])
    lib = max(rows["forgetlab"], rows["forgetlab (repeat)"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = GPT(config).num_params()
    print(f"model: {layers} layers x {width} ({params} parameters), batch {batch} x "
          f"{task.block_size - 1} tokens, {args.steps} steps, {args.threads} threads")
    print(f"{'loop':<22}{'tokens/s':>12}")
    for name, value in rows.items():
        print(f"{name:<22}{value:>12.0f}")
    print(f"ratio forgetlab / plain (best of two): {lib / plain:.3f}; peak RSS {peak_mb:.0f} MB")
    result = {"bench": "lm", "tokens_per_s_forgetlab": lib, "tokens_per_s_plain": plain,
              "ratio": lib / plain, "peak_rss_mb": peak_mb, "params": params,
              "steps": args.steps, "threads": args.threads}
    print(json.dumps(result))
    append_result("lm", result)


if __name__ == "__main__":
    main()
