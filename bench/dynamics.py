"""Throughput and memory of the training loop (``forgetlab.simulate``) on the mixture.

1. Population regime: steps per second for C configurations in one batch (SFT with old-data
   replay over a grid of separations and replay fractions), against a per-configuration Python
   loop over ``simulate`` (timed on a subset; its cost is linear in configurations).
2. Finite batch, per method (``rl``: on-policy reverse KL, REINFORCE with the leave-one-out
   baseline; ``sft``: minibatch forward KL on new-task data), B samples per step, S seeds:
   the engine against a baseline that does the same arithmetic in plain numpy vectorised over
   the seeds (``[S, B]`` arrays, d = 1, about 20 lines per method), and against the machine's
   limit for the same work, drawing one uniform and one normal per sample from the same
   per-run generators and evaluating one exponential per sample. Both the baseline and the
   limit draw from the engine's per-run streams (``SeedSequence(seed, spawn_key=(0, s))``, one
   generator per run), so the baseline reproduces the engine's numbers (checked: the largest
   parameter difference is printed) and the comparison is of the arithmetic. The engine is
   timed on one thread and on ``--threads`` (its seed slices' gradients in threads, the same
   numbers), the limit likewise (the generators split over the threads); the baseline is
   numpy's single thread. Sample-steps per second, the fastest of ``--repeat`` rounds that
   time each entry in turn, for a large and a small B.
3. Memory: peak traced memory of two S-seed, B-sample runs with the same number of recorded
   points and 10x more steps in the second; streaming means the peaks match.

Prints a table and one JSON line, also appended to ``bench/results/dynamics.jsonl``.

    python bench/dynamics.py [--configs 10000] [--seeds 256] [--batch 1000] [--steps 40]
                             [--memory-steps 2000] [--repeat 3] [--threads W]
                             [--skip-population]
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from _results import append_result, best_time, best_times
from forgetlab import simulate
from forgetlab.parallel import available_cores, thread_map
from forgetlab.simconfig import SimulationConfig

LR = 0.01
ALPHA = 0.3
SEED = 0


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


def finite_config(seeds: int, batch: int, steps: int, stride: int | None = None,
                  method: str = "rl") -> SimulationConfig:
    return SimulationConfig(method=method, regime="finite", steps=steps, stride=stride or steps,
                            seeds=seeds, batch_size=batch, learning_rate=LR, seed=SEED,
                            exact_metrics=False, problem={"alpha": ALPHA})


# -- the seed-vectorised baseline ---------------------------------------------------------------
class Draws:
    """The engine's per-run streams (one generator per seed) filling ``[S, B]`` blocks."""

    def __init__(self, seeds: int) -> None:
        self.gens = [np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(0, s)))
                     for s in range(seeds)]

    def __call__(self, batch: int, seeds: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(uniforms, normals) ``[S, B]`` from every generator, or ``[len(seeds), B]`` from
        the generators of ``seeds``."""
        gens = self.gens if seeds is None else [self.gens[s] for s in seeds]
        u, z = np.empty((len(gens), batch)), np.empty((len(gens), batch))
        for row, gen in enumerate(gens):
            gen.random(out=u[row])
            gen.standard_normal(out=z[row])
        return u, z


def _problem() -> tuple[float, float, float, float, float]:
    """(a, b, m_n(0), beta0, sigma) of the benchmark problem (d = 1)."""
    v = finite_config(1, 1, 1).problem.arrays()
    return (float(v["a"][0]), float(v["b"][0]), float(v["start"][0]), float(v["beta0"]),
            float(np.sqrt(v["cov"][0, 0])))


def _log_phi(x: np.ndarray, mean: np.ndarray | float, sigma: float) -> np.ndarray:
    return -0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * ((x - mean) / sigma) ** 2


def baseline(method: str, seeds: int, steps: int, batch: int) -> np.ndarray:
    """``method`` written plainly in numpy over ``[S, B]``: final (beta, m_o, m_n) ``[3, S]``."""
    a, b, start, beta0, sigma = _problem()
    draws = Draws(seeds)
    eta = np.full((seeds, 1), np.log(beta0 / (1 - beta0)))
    m_o, m_n = np.full((seeds, 1), a), np.full((seeds, 1), start)
    for _ in range(steps):
        beta = 1 / (1 + np.exp(-eta))
        u, z = draws(batch)
        if method == "rl":  # x ~ q, signal log p* - log q, leave-one-out baseline
            x = np.where(u < beta, m_o, m_n) + sigma * z
        else:  # sft: x ~ N(b, sigma^2), the mean score
            x = b + sigma * z
        lo = np.log(beta) + _log_phi(x, m_o, sigma)
        ln = np.log1p(-beta) + _log_phi(x, m_n, sigma)
        log_q = np.logaddexp(lo, ln)
        if method == "rl":
            signal = np.logaddexp(np.log(ALPHA) + _log_phi(x, a, sigma),
                                  np.log1p(-ALPHA) + _log_phi(x, b, sigma)) - log_q
            total = signal.sum(axis=1, keepdims=True)
            coef = -(signal - (total - signal) / (batch - 1))
        else:
            coef = -np.ones_like(x)
        r_o = np.exp(lo - log_q)
        g_beta = np.mean(coef * (r_o / beta - (1 - r_o) / (1 - beta)), axis=1)
        g_mo = np.mean(coef * r_o * (x - m_o), axis=1) / sigma**2
        g_mn = np.mean(coef * (1 - r_o) * (x - m_n), axis=1) / sigma**2
        eta = eta - LR * (g_beta * (beta * (1 - beta))[:, 0])[:, None]
        m_o, m_n = m_o - LR * g_mo[:, None], m_n - LR * g_mn[:, None]
    return np.stack([1 / (1 + np.exp(-eta[:, 0])), m_o[:, 0], m_n[:, 0]])


def limit(seeds: int, steps: int, batch: int, threads: int = 1) -> float:
    """One uniform, one normal (the same per-run generators) and one exp per sample-step; the
    generators split into ``threads`` groups drawing in threads, synchronised every step."""
    draws = Draws(seeds)
    groups = [g for g in np.array_split(np.arange(seeds), threads) if g.size]
    acc = 0.0

    def step(group: np.ndarray) -> float:
        u, z = draws(batch, group)
        return float(np.exp(z)[0, 0] + u[0, 0])

    with ThreadPoolExecutor(len(groups)) as pool:
        for _ in range(steps):
            acc += sum(thread_map(step, groups, threads, pool))
    return acc


def engine_final(traj) -> np.ndarray:
    return np.stack([traj.weight_old[0, :, -1], traj.mean_old[0, :, -1, 0],
                     traj.mean_new[0, :, -1, 0]])


def peak_memory(config: SimulationConfig) -> float:
    tracemalloc.start()
    simulate(config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def finite_rows(method: str, S: int, B: int, T: int, repeat: int, threads: int
                ) -> tuple[list[tuple[str, str, float]], dict[str, Any]]:
    """Engine (1 and ``threads`` threads), baseline and limit for one method and batch size."""
    cfg = finite_config(S, B, T, method=method)
    work = S * B * T
    counts = sorted({1, threads})
    runs: dict[str, Callable[[], object]] = {"baseline": lambda: baseline(method, S, T, B)}
    for w in counts:
        runs[f"engine {w}t"] = lambda w=w: simulate(cfg, threads=w)
        runs[f"limit {w}t"] = lambda w=w: limit(S, T, B, w)
    rate = {k: work / t for k, t in best_times(runs, repeat).items()}
    reference = baseline(method, S, T, B)
    diff = max(float(np.max(np.abs(engine_final(simulate(cfg, threads=w)) - reference)))
               for w in counts)
    rows = [(f"{method} B={B}, numpy over seeds (1t)", "sample-steps/s", rate["baseline"])]
    entry: dict[str, Any] = {"method": method, "seeds": S, "batch": B, "steps": T,
                             "threads": threads, "baseline_sample_steps_per_s": rate["baseline"],
                             "max_abs_param_diff_vs_baseline": diff}
    for w in counts:
        key = "" if w == 1 else "_threads"
        rows += [(f"{method} B={B}, engine {w}t", "sample-steps/s", rate[f"engine {w}t"]),
                 (f"{method} B={B}, normals + exp limit {w}t", "sample-steps/s",
                  rate[f"limit {w}t"])]
        entry |= {f"engine_sample_steps_per_s{key}": rate[f"engine {w}t"],
                  f"limit_sample_steps_per_s{key}": rate[f"limit {w}t"],
                  f"ratio_vs_baseline{key}": rate[f"engine {w}t"] / rate["baseline"],
                  f"fraction_of_limit{key}": rate[f"engine {w}t"] / rate[f"limit {w}t"]}
    return rows, entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--pop-steps", type=int, default=20)
    parser.add_argument("--baseline-configs", type=int, default=10)
    parser.add_argument("--skip-population", action="store_true")
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--small-batch", type=int, default=16,
                        help="a second finite-batch comparison with this many samples per step")
    parser.add_argument("--methods", default="rl,sft")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="threads for the engine's and the limit's second rows")
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []
    out: dict[str, object] = {"bench": "dynamics"}

    if not args.skip_population:
        configs = population_configs(args.configs, args.pop_steps)
        t_batch = best_time(lambda: simulate(configs), 1)
        subset = configs[: args.baseline_configs]
        t_loop = best_time(lambda: [simulate(c) for c in subset], 1) * len(configs) / len(subset)
        pop_batch = args.pop_steps / t_batch
        rows += [("population, batch of C", "steps/s", pop_batch),
                 ("population, batch of C", "config-steps/s", pop_batch * len(configs)),
                 ("population, one call per config (per-call overhead)", "config-steps/s",
                  args.pop_steps * len(configs) / t_loop)]
        out["population"] = {"configs": len(configs), "steps": args.pop_steps,
                             "steps_per_s": pop_batch,
                             "config_steps_per_s": pop_batch * len(configs),
                             "loop_config_steps_per_s": args.pop_steps * len(configs) / t_loop,
                             "ratio_vs_loop": t_loop / t_batch}

    finite = []
    for method in args.methods.split(","):
        for B in (args.batch, args.small_batch):
            new_rows, entry = finite_rows(method, args.seeds, B, args.steps, args.repeat,
                                        max(1, args.threads))
            rows += new_rows
            finite.append(entry)
    out["finite"] = finite

    if args.memory_steps:
        short, long, B, S = args.memory_steps // 10, args.memory_steps, args.batch, args.seeds
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
    for f in finite:
        line = (f"{f['method']} B={f['batch']}: engine / numpy over seeds "
                f"{f['ratio_vs_baseline']:.2f}x (1t)")
        if "ratio_vs_baseline_threads" in f:
            line += f", {f['ratio_vs_baseline_threads']:.2f}x ({f['threads']}t)"
        line += f"; engine / limit {f['fraction_of_limit']:.2f} (1t)"
        if "fraction_of_limit_threads" in f:
            line += f", {f['fraction_of_limit_threads']:.2f} ({f['threads']}t)"
        print(line + f"; max |engine - baseline| {f['max_abs_param_diff_vs_baseline']:.1e}")
    if "population" in out:
        print(f"population batch / loop: {out['population']['ratio_vs_loop']:.1f}x")  # type: ignore[index]
    print(json.dumps(out))
    append_result("dynamics", out)


if __name__ == "__main__":
    main()
