"""Regression pin: a fixed set of runs (tests/pinned_runs.py) reproduces the recorded numbers.

This is a consistency test (the code against its own earlier output), not verification: it
proves that speed work and refactors did not change results. Every run must agree with its
recorded numbers to 1e-12 relative. Within one installation a finite-batch run is bit-identical
for the same seed (tests/test_dynamics.py checks executors and chunkings against each other);
across numpy releases its vectorised exp/log may differ in the last bit, so the pin allows a few
ulps rather than failing on a new numpy. Population runs are deterministic, but the exact
engine's 1-D quadrature may reorder floating-point sums (each expectation is accurate to about
1e-13 relative anyway, see docs/engine.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pinned_runs import runs, values

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "pinned_runs.json").read_text())
RUNS = runs()


def _floats(hexes: list[str]) -> np.ndarray:
    return np.array([float.fromhex(h) for h in hexes])


def test_fixture_covers_every_run() -> None:
    assert sorted(FIXTURE) == sorted(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_reproduces_recorded_numbers(name: str) -> None:
    got = values(RUNS[name])
    for key, hexes in FIXTURE[name].items():
        np.testing.assert_allclose(_floats(got[key]), _floats(hexes), rtol=1e-12, atol=1e-15,
                                   err_msg=f"{name} {key}")


def test_the_pin_catches_a_cache_that_mixes_up_mixtures(monkeypatch) -> None:
    """Mutation check: a log-density cache keyed on nothing (the learner's values reused for
    the target) changes the pinned rl numbers."""
    from forgetlab.methods import base

    real = base.SampleBatch.log_prob

    def first_only(self, mix):  # type: ignore[no-untyped-def]
        if self._log_probs:
            return next(iter(self._log_probs.values()))[1]
        return real(self, mix)

    monkeypatch.setattr(base.SampleBatch, "log_prob", first_only)
    with pytest.raises(AssertionError):
        test_run_reproduces_recorded_numbers("rl/finite")
