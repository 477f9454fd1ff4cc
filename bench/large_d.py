"""Cost of an exact population step in high dimension: d = 1000 against d = 1.

One configuration with its own (random, non-diagonal) covariance, a population reverse-KL
step (``population.reverse_kl_gradient`` then ``TwoModeMixture.with_params``), per
configuration-step, once the covariance is factorised (the learner and the target share one
:class:`forgetlab.gaussian.Factorised`; building it is timed separately). The same is done for
``forgetlab.simulate`` (population ``rl``, the training loop with its records; per step from
the difference between ``--steps`` and twice as many, so its set-up, which validates the
configuration's covariance, is reported apart) and for the
first build of a mixture from a raw d x d covariance (validation and factorisation, O(d^3)).
Timings are the fastest of ``--repeat`` rounds taken in turns.

Prints a table and one JSON line, also appended to ``bench/results/large_d.jsonl``.

    python bench/large_d.py [--dims 1,1000] [--steps 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from _results import append_result, best_times
from forgetlab import simulate
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import reverse_kl_gradient
from forgetlab.simconfig import SimulationConfig


def problem(d: int, rng: np.random.Generator) -> tuple[np.ndarray, TwoModeMixture, TwoModeMixture]:
    """A random covariance, a target and a learner sharing its factorisation."""
    a_mat = rng.normal(size=(d, d)) / np.sqrt(d)
    cov = a_mat @ a_mat.T + 0.5 * np.eye(d)
    chol = np.linalg.cholesky(cov)
    u = rng.normal(size=(2, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    a, b = np.zeros(d), 3.0 * chol @ u[0]  # separation D(a, b) = 3
    target = TwoModeMixture(0.3, a, b, cov)
    learner = TwoModeMixture(0.5, a + 0.3 * chol @ u[1], 0.5 * b, target.factor)
    return cov, target, learner


def steps(target: TwoModeMixture, learner: TwoModeMixture, n: int) -> TwoModeMixture:
    """n steps of gradient descent on KL(q || p*) with step 1e-3."""
    q = learner
    for _ in range(n):
        g = reverse_kl_gradient(q, target)
        q = q.with_params(q.weight_old - 1e-3 * g.weight_old, q.mean_old - 1e-3 * g.mean_old,
                          q.mean_new - 1e-3 * g.mean_new)
    return q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="1,1000")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    rng = np.random.default_rng(0)
    fns = {}
    for d in dims:
        cov, target, learner = problem(d, rng)
        cfgs = [SimulationConfig(method="rl", steps=n, stride=n, learning_rate=0.01,
                                 exact_metrics=False,
                                 problem={"dim": d, "cov": cov.tolist(), "separation": 3.0})
                for n in (args.steps, 2 * args.steps)]
        fns[f"step_{d}"] = lambda t=target, q=learner: steps(t, q, args.steps)
        fns[f"simulate_{d}"] = lambda c=cfgs[0]: simulate(c)
        fns[f"simulate2_{d}"] = lambda c=cfgs[1]: simulate(c)
        fns[f"factorise_{d}"] = lambda c=cov, d=d: TwoModeMixture(0.5, np.zeros(d), np.ones(d),
                                                                  c.copy())
    t = best_times(fns, args.repeat)
    out: dict[str, object] = {"bench": "large_d", "steps": args.steps}
    print(f"{'d':>6}{'gradient step ms':>18}{'simulate step ms':>18}{'factorise ms':>14}"
          f"{'simulate setup ms':>19}")
    for d in dims:
        row = {"step_s": t[f"step_{d}"] / args.steps,
               "simulate_step_s": (t[f"simulate2_{d}"] - t[f"simulate_{d}"]) / args.steps,
               "simulate_setup_s": 2 * t[f"simulate_{d}"] - t[f"simulate2_{d}"],
               "factorise_s": t[f"factorise_{d}"]}
        out[f"d{d}"] = row
        print(f"{d:>6}{row['step_s'] * 1e3:>18.3f}{row['simulate_step_s'] * 1e3:>18.3f}"
              f"{row['factorise_s'] * 1e3:>14.3f}{row['simulate_setup_s'] * 1e3:>19.1f}")
    lo, hi = min(dims), max(dims)
    out["ratio_step"] = t[f"step_{hi}"] / t[f"step_{lo}"]
    out["ratio_simulate_step"] = (out[f"d{hi}"]["simulate_step_s"]  # type: ignore[index]
                                  / out[f"d{lo}"]["simulate_step_s"])  # type: ignore[index]
    print(f"d={hi} / d={lo} per configuration-step: gradient {out['ratio_step']:.2f}x, "
          f"simulate {out['ratio_simulate_step']:.2f}x (goal <= 3x)")
    print(json.dumps(out))
    append_result("large_d", out)


if __name__ == "__main__":
    main()
