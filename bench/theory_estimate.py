"""How close the time model of ``forgetlab theory`` is to the measured run time.

For a few dimensions (and the default 200 steps unless ``--steps`` is given) the script prints
the estimated run time of :func:`forgetlab.cli.theory_table.theory_summary`
(:func:`forgetlab.cli.theory.estimate`, the model the command checks against its 60 s
ceiling and uses to decide whether to show a progress bar) beside the measured wall time of
the same call, and their ratio. The model is meant to be right within a factor of about 3.
Prints a table and one JSON line.

    python bench/theory_estimate.py [--steps 200] [--dims 1 100 500 1000]
"""

from __future__ import annotations

import argparse
import json
import time

from _results import append_result
from forgetlab.cli.theory import estimate
from forgetlab.cli.theory_table import theory_summary
from forgetlab.config import MixtureConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 100, 500, 1000])
    args = parser.parse_args()
    rows = []
    print(f"{'dim':>5} {'steps':>6} {'estimate s':>11} {'measured s':>11} {'ratio':>6}")
    for d in args.dims:
        config = MixtureConfig.from_dict({"dim": d, "steps": args.steps})
        est = estimate(config).seconds
        start = time.perf_counter()
        theory_summary(config)
        wall = time.perf_counter() - start
        rows.append({"dim": d, "steps": args.steps, "estimate_s": est, "measured_s": wall,
                     "ratio": est / wall})
        print(f"{d:>5} {args.steps:>6} {est:>11.2f} {wall:>11.2f} {est / wall:>6.2f}",
              flush=True)
    result = {"bench": "theory_estimate", "rows": rows}
    print(json.dumps(result))
    append_result("theory_estimate", result)


if __name__ == "__main__":
    main()
