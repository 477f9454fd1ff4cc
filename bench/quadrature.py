"""Cost of the exact engine's 1-D expectations against a fixed 32-node Gauss-Hermite rule.

Inputs: ``--n`` pairs (m, s), m uniform on [-30, 30] and s uniform on [0, 10] (the range the
population engine feeds it: u-means and separations Delta_q), for f = sigmoid (and the other
integrands with ``--kinds``). Timed in one process, the fastest of ``--repeat`` rounds
that time each entry in turn:

- engine: ``quadrature.log_gaussian_expectation(kind, m, s)`` on the whole batch, and on a
  single pair (m, s) = (1, 4), per expectation;
- baseline: E[f] ~ sum_i w_i f(m + sqrt(2) s x_i) / sqrt(pi) over the 32 Gauss-Hermite nodes
  x_i, vectorised over the batch (its log, to compare like with like); its error against the
  engine is reported too (the engine is checked against ``scipy.integrate.quad`` in
  tests/test_quadrature.py).

Prints a table and one JSON line, also appended to ``bench/results/quadrature.jsonl``.

    python bench/quadrature.py [--n 20000] [--repeat 15] [--kinds sigmoid,softplus]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.special import expit

from _results import append_result, best_times
from forgetlab.quadrature import log_gaussian_expectation

NODES, WEIGHTS = np.polynomial.hermite.hermgauss(32)
PLAIN_F = {
    "sigmoid": expit,
    "sigmoid_prime": lambda u: expit(u) * expit(-u),
    "softplus": lambda u: np.logaddexp(0.0, u),
    "sigmoid_sq_prime": lambda u: expit(u) ** 2 * expit(-u),
}


def gauss_hermite(kind: str, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """log of the fixed 32-node Gauss-Hermite estimate of E[f(u)], u ~ N(m, s^2)."""
    u = m[:, None] + np.sqrt(2.0) * s[:, None] * NODES
    return np.log(PLAIN_F[kind](u) @ WEIGHTS / np.sqrt(np.pi))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--kinds", default="sigmoid,sigmoid_prime,softplus,sigmoid_sq_prime")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    m, s = rng.uniform(-30, 30, args.n), rng.uniform(0, 10, args.n)
    one_m, one_s = np.array([1.0]), np.array([4.0])
    out: dict[str, object] = {"bench": "quadrature", "n": args.n, "m_range": [-30, 30],
                              "s_range": [0, 10], "rows": []}
    print(f"{'kind':<18}{'engine us/exp':>15}{'GH32 us/exp':>13}{'ratio':>8}"
          f"{'single us':>11}{'GH32 single':>13}{'ratio':>8}{'GH32 max rel err':>18}")
    for kind in args.kinds.split(","):
        t = best_times({
            "engine": lambda k=kind: log_gaussian_expectation(k, m, s),
            "gh": lambda k=kind: gauss_hermite(k, m, s),
            "engine1": lambda k=kind: [log_gaussian_expectation(k, one_m, one_s)
                                       for _ in range(20)],
            "gh1": lambda k=kind: [gauss_hermite(k, one_m, one_s) for _ in range(20)]},
            args.repeat)
        t_eng, t_gh = t["engine"] / args.n, t["gh"] / args.n
        t_eng1, t_gh1 = t["engine1"] / 20, t["gh1"] / 20
        with np.errstate(divide="ignore"):
            err = float(np.max(np.abs(np.expm1(gauss_hermite(kind, m, s)
                                               - log_gaussian_expectation(kind, m, s)))))
        row = {"kind": kind, "engine_s_per_expectation": t_eng, "gh32_s_per_expectation": t_gh,
               "ratio_vs_gh32": t_eng / t_gh, "engine_s_single": t_eng1,
               "gh32_s_single": t_gh1, "ratio_single": t_eng1 / t_gh1,
               "gh32_max_rel_error": err}
        out["rows"].append(row)  # type: ignore[attr-defined]
        print(f"{kind:<18}{t_eng * 1e6:>15.3f}{t_gh * 1e6:>13.3f}{t_eng / t_gh:>8.1f}"
              f"{t_eng1 * 1e6:>11.1f}{t_gh1 * 1e6:>13.1f}{t_eng1 / t_gh1:>8.1f}{err:>18.2e}")
    print(json.dumps(out))
    append_result("quadrature", out)


if __name__ == "__main__":
    main()
