"""How close the resource model of ``forgetlab sweep plan`` is to measured time and memory.

For a few single-call workloads (population and finite batch, one and several configurations)
the script prints the estimated run time and peak memory (``DynamicsRunner.estimate_seconds``
and ``estimate_bytes``, the model every command checks before it runs) beside the wall time
and the traced peak memory of the same ``simulate`` call, and their ratios. The model is meant
to be right within a factor of a few; the bounds it enforces (docs/cli.md) are far from
ordinary runs. Prints a table and one JSON line.

    python bench/resource_estimate.py [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

from _results import append_result
from forgetlab import presets
from forgetlab.dynamics import simulate
from forgetlab.sweep.engine import DynamicsRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    runner = DynamicsRunner()
    cases = [("sft-replay-old", 1, 1), ("sft-replay-old", 16, 1), ("sft-finite", 1, 16),
             ("sft-finite", 4, 64), ("rl-finite", 8, 32)]
    rows = []
    for name, n_configs, seeds in cases:
        base = presets.get(name, steps=args.steps, stride=10, seeds=seeds)
        resolved = runner.resolve(base.model_dump(mode="json", exclude={"seeds"}))
        configs = [base.with_updates(problem={"separation": 2.0 + 0.1 * i})
                   for i in range(n_configs)]
        tracemalloc.start()
        start = time.perf_counter()
        simulate(configs)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        est_s = runner.estimate_seconds(resolved, n_configs, seeds)
        est_b = runner.estimate_bytes(resolved, n_configs, seeds)
        rows.append({"preset": name, "configs": n_configs, "seeds": seeds,
                     "measured_s": seconds, "estimated_s": est_s, "time_ratio": est_s / seconds,
                     "measured_bytes": peak, "estimated_bytes": est_b,
                     "memory_ratio": est_b / max(peak, 1)})
    print(f"{'preset':16s} {'C':>3s} {'S':>3s} {'measured s':>11s} {'estimated s':>12s} "
          f"{'ratio':>6s} {'traced MiB':>11s} {'est. MiB':>9s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['preset']:16s} {r['configs']:3d} {r['seeds']:3d} {r['measured_s']:11.3f} "
              f"{r['estimated_s']:12.3f} {r['time_ratio']:6.2f} "
              f"{r['measured_bytes'] / 2**20:11.2f} {r['estimated_bytes'] / 2**20:9.2f} "
              f"{r['memory_ratio']:6.2f}")
    result = {"bench": "resource_estimate", "steps": args.steps, "rows": rows}
    print(json.dumps(result))
    append_result("resource_estimate", result)


if __name__ == "__main__":
    main()
