"""C10 catches plausible bugs in the K-mode engine (each run alone at the quick profile)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from forgetlab import kpopulation
from forgetlab.claims import Profile, run_claim, select


def _failing(patch: Callable[[pytest.MonkeyPatch], None], mp: pytest.MonkeyPatch) -> list[str]:
    patch(mp)
    result = run_claim(select(["C10"])[0], Profile("quick"), 20260312)
    assert result.error is None, result.error
    assert result.status == "failed"
    return [c.name for c in result.checks if not c.passed]


def _no_first_moment(mp: pytest.MonkeyPatch) -> None:
    original = kpopulation.responsibility_moments

    def mutated(mix: Any, means: Any, proj: Any = None) -> tuple[np.ndarray, np.ndarray]:
        e0, e1 = original(mix, means, proj)
        return e0, 0.0 * e1

    mp.setattr(kpopulation, "responsibility_moments", mutated)


def _weight_gradient_sign(mp: pytest.MonkeyPatch) -> None:
    original = kpopulation.reverse_kl_gradient

    def mutated(learner: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
        g_eta, g_mu = original(learner, target)
        return -g_eta, g_mu

    mp.setattr(kpopulation, "reverse_kl_gradient", mutated)


def test_dropped_first_moment_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """E[r_k (x - mu)] dropped from the engine: the replay chain's modes drift."""
    failing = _failing(_no_first_moment, monkeypatch)
    assert any("replay chain: max drift" in name for name in failing), failing


@pytest.mark.slow
def test_weight_gradient_sign_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sign error in the reverse-KL weight gradient: the reverse chain misses its target."""
    failing = _failing(_weight_gradient_sign, monkeypatch)
    assert any("reverse chain: max |w_j" in name for name in failing), failing
