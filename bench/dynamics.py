"""Throughput and memory of the training loop (``forgetlab.simulate``) on the mixture.

1. Population regime: steps per second for C configurations in one batch (SFT with old-data
   replay over a grid of separations and replay fractions), against a per-configuration Python
   loop over ``simulate`` (timed on a subset; its cost is linear in configurations).
2. Finite batch: on-policy reverse KL (REINFORCE, leave-one-out baseline), B samples per step,
   S seeds in one vectorised run, against a per-run loop that does the same arithmetic the
   obvious way (one seed at a time), and against the cost of drawing the normals and evaluating
   one exponential per sample (a floor for any implementation). Sample-steps per second, for a
   large B (arrays of S x B leave the cache, so vectorising over seeds gains little) and a
   small B (per-call overhead dominates the per-run loop).
3. Memory: peak traced memory of two S-seed, B-sample runs with the same number of recorded
   points and 10x more steps in the second; streaming means the peaks match.

Prints a table and one JSON line.

    python bench/dynamics.py [--configs 10000] [--seeds 256] [--batch 1000] [--steps 40]
                             [--memory-steps 2000]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np

from forgetlab import simulate
from forgetlab.simconfig import SimulationConfig


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def population_configs(n: int, steps: int) -> list[SimulationConfig]:
    """n SFT-with-replay configurations on a (separation, lambda) grid."""
    side = int(np.ceil(np.sqrt(n)))
    seps = np.linspace(0.5, 8.0, side)
    lams = np.linspace(0.0, 0.9, side)
    grid = [(s, lam) for s in seps for lam in lams][:n]
    base = SimulationConfig(method="sft", steps=steps, stride=steps, learning_rate=0.5,
                            knobs={"replay": "old", "replay_fraction": 0.1},
                            exact_metrics=False)
    return [base.with_updates(knobs={"replay_fraction": float(lam)},
                              problem={"separation": float(s)}) for s, lam in grid]


def finite_config(seeds: int, batch: int, steps: int, stride: int | None = None
                  ) -> SimulationConfig:
    return SimulationConfig(method="rl", regime="finite", steps=steps, stride=stride or steps,
                            seeds=seeds, batch_size=batch, learning_rate=0.01,
                            exact_metrics=False, problem={"alpha": 0.3})


def baseline_run(gen: np.random.Generator, steps: int, batch: int) -> tuple[float, float, float]:
    """One seed, the obvious way: d = 1, unit variance, a = 0, b = 4, alpha = 0.3, logit weight."""
    eta, m_o, m_n = 0.0, 0.0, 2.0
    lr, c = 0.01, -0.5 * np.log(2 * np.pi)
    for _ in range(steps):
        beta = 1 / (1 + np.exp(-eta))
        is_old = gen.random(batch) < beta
        x = np.where(is_old, m_o, m_n) + gen.standard_normal(batch)
        lo, ln = c - 0.5 * (x - m_o) ** 2, c - 0.5 * (x - m_n) ** 2
        log_q = np.logaddexp(np.log(beta) + lo, np.log1p(-beta) + ln)
        log_p = np.logaddexp(np.log(0.3) + c - 0.5 * x**2, np.log(0.7) + c - 0.5 * (x - 4) ** 2)
        signal = log_p - log_q
        centred = signal - (signal.sum() - signal) / (batch - 1)
        r_o = np.exp(np.log(beta) + lo - log_q)
        g_beta = -np.mean(centred * (np.exp(lo - log_q) - np.exp(ln - log_q)))
        g_mo = -np.mean(centred * r_o * (x - m_o))
        g_mn = -np.mean(centred * (1 - r_o) * (x - m_n))
        eta -= lr * g_beta * beta * (1 - beta)
        m_o -= lr * g_mo
        m_n -= lr * g_mn
    return eta, m_o, m_n


def limit_run(gens: list[np.random.Generator], steps: int, batch: int) -> float:
    """Draw one uniform and one normal per sample and take one exponential, nothing else."""
    acc = 0.0
    for _ in range(steps):
        for gen in gens:
            gen.random(batch)
            acc += float(np.exp(gen.standard_normal(batch))[0])
    return acc


def peak_memory(config: SimulationConfig) -> float:
    tracemalloc.start()
    simulate(config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--pop-steps", type=int, default=20)
    parser.add_argument("--baseline-configs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--baseline-seeds", type=int, default=16)
    parser.add_argument("--small-batch", type=int, default=16,
                        help="a second finite-batch comparison with this many samples per step")
    parser.add_argument("--memory-steps", type=int, default=2000)
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []
    out: dict[str, object] = {"bench": "dynamics"}

    configs = population_configs(args.configs, args.pop_steps)
    t_batch = _timed(lambda: simulate(configs))
    subset = configs[: args.baseline_configs]
    t_loop = _timed(lambda: [simulate(c) for c in subset]) * len(configs) / len(subset)
    pop_batch = args.pop_steps / t_batch
    rows += [("population, batch of C", "steps/s", pop_batch),
             ("population, batch of C", "config-steps/s", pop_batch * len(configs)),
             ("population, per-config loop", "config-steps/s",
              args.pop_steps * len(configs) / t_loop)]
    out["population"] = {"configs": len(configs), "steps": args.pop_steps,
                         "steps_per_s": pop_batch,
                         "config_steps_per_s": pop_batch * len(configs),
                         "loop_config_steps_per_s": args.pop_steps * len(configs) / t_loop,
                         "ratio_vs_loop": t_loop / t_batch}

    S, T = args.seeds, args.steps
    gens = [np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(S)]
    k = args.baseline_seeds
    out["finite"] = []
    for B in (args.batch, args.small_batch):
        work = S * B * T
        cfg = finite_config(S, B, T)
        t_engine = _timed(lambda cfg=cfg: simulate(cfg))
        t_base = _timed(lambda B=B: [baseline_run(g, T, B) for g in gens[:k]]) * S / k
        t_limit = _timed(lambda B=B: limit_run(gens, T, B))
        engine, base, limit = work / t_engine, work / t_base, work / t_limit
        rows += [(f"finite B={B}, vectorised engine", "sample-steps/s", engine),
                 (f"finite B={B}, per-run loop", "sample-steps/s", base),
                 (f"finite B={B}, normals + exp floor", "sample-steps/s", limit)]
        out["finite"].append({"seeds": S, "batch": B, "steps": T,
                              "engine_sample_steps_per_s": engine,
                              "loop_sample_steps_per_s": base,
                              "limit_sample_steps_per_s": limit,
                              "ratio_vs_loop": engine / base, "fraction_of_limit": engine / limit})

    short, long, B = args.memory_steps // 10, args.memory_steps, args.batch
    mem_short = peak_memory(finite_config(S, B, short, stride=short // 4))
    mem_long = peak_memory(finite_config(S, B, long, stride=long // 4))
    rows += [(f"memory, {short} steps, 5 records", "peak MiB", mem_short),
             (f"memory, {long} steps, 5 records", "peak MiB", mem_long)]
    out["memory"] = {"seeds": S, "batch": B, "short_steps": short, "long_steps": long,
                     "peak_mib_short": mem_short, "peak_mib_long": mem_long,
                     "ratio_long_vs_short": mem_long / mem_short}

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':{width}s}  {'unit':>15s}  {'value':>14s}")
    for name, unit, value in rows:
        print(f"{name:{width}s}  {unit:>15s}  {value:14.4g}")
    ratios = ", ".join(f"B={f['batch']}: {f['ratio_vs_loop']:.2f}x"
                       for f in out["finite"])  # type: ignore[attr-defined]
    print(f"population batch / loop: {out['population']['ratio_vs_loop']:.1f}x;  "  # type: ignore[index]
          f"finite engine / loop: {ratios}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
