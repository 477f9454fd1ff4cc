"""The plan's memory estimate of a chunk against the traced peak of actually running it."""

from __future__ import annotations

import tracemalloc

import pytest

from forgetlab.sweep.engine import DynamicsRunner
from forgetlab.sweep.spec import parse_spec


@pytest.mark.parametrize(("regime", "batch", "dim", "configs", "seeds", "exact"), [
    ("finite", 256, 4, 10, 4, True),
    ("finite", 512, 2, 10, 8, False),
    ("population", 64, 2, 100, 1, True),
    ("population", 64, 8, 40, 1, False),
])
def test_estimate_is_within_a_factor_three_of_the_traced_peak(regime, batch, dim, configs, seeds,
                                                            exact):
    runner = DynamicsRunner()
    spec = parse_spec({"seeds": seeds, "base": {
        "regime": regime, "steps": 20, "stride": 5, "batch_size": batch, "exact_metrics": exact,
        "knobs": {"replay": "old"}, "problem": {"dim": dim}},
        "axes": {"problem.separation": [1.0 + 0.1 * i for i in range(configs)]}})
    runs = spec.runs(runner.resolve)
    tracemalloc.start()
    try:
        runner.run(runs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    ratio = runner.estimate_bytes(runs[0].config, configs, seeds) / peak
    assert 1 / 3 <= ratio <= 3.0, f"estimate / traced peak = {ratio:.2f}"


def _config(regime: str) -> dict:
    return DynamicsRunner().resolve({"regime": regime, "steps": 20, "stride": 5,
                                     "batch_size": 64, "problem": {"dim": 2}})


def test_estimates_count_configurations_times_seeds() -> None:
    runner = DynamicsRunner()
    finite, population = _config("finite"), _config("population")
    # finite batch: 2 configurations x 3 seeds cost what 6 configurations x 1 seed cost
    for est in (runner.estimate_bytes, runner.estimate_seconds):
        assert est(finite, 2, 3) == est(finite, 6, 1)
        # population: the seeds of a configuration are simulated once
        assert est(population, 2, 3) == est(population, 2, 1)
        assert est(finite, 2, 3) > est(finite, 1, 1)
        assert est(population, 3, 1) > est(population, 2, 1)
