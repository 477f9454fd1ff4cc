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

from forgetlab import presets
from forgetlab.dynamics import simulate
from forgetlab.sweep.engine import DynamicsRunner
from forgetlab.sweep.spec import SweepSpec


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
        data = base.model_dump(mode="json", exclude={"seeds"})
        axis = {"problem.separation": [2.0 + 0.1 * i for i in range(n_configs)]}
        spec = SweepSpec(name, data, axis, seeds if base.regime == "finite" else 1)
        runs = spec.runs(runner.resolve)
        configs = [base.with_updates(problem={"separation": 2.0 + 0.1 * i})
                   for i in range(n_configs)]
        tracemalloc.start()
        start = time.perf_counter()
        simulate(configs)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        est_s, est_b = runner.estimate_seconds(runs), runner.estimate_bytes(runs)
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
    print(json.dumps({"bench": "resource_estimate", "steps": args.steps, "rows": rows}))


if __name__ == "__main__":
    main()
