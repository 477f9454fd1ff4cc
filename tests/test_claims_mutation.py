"""Mutation tests: a plausible bug injected into a public function makes the claim fail.

Each case names the mutation and the claim that must catch it, runs that claim alone at the
quick profile with the bug monkeypatched in (in a worker of a process pool of every core,
undone after the claim), and requires status ``failed`` with at least one
failing check whose name contains the expected text (so the right check catches it, not an
unrelated crash). Without the mutation the same claims pass (``test_claims_suite``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from forgetlab import gaussian, population
from forgetlab.claims import Profile, run_claim, select
from forgetlab.methods import oapl, replay_rl, sft
from forgetlab.mixture import MixtureParams
from forgetlab.parallel import available_cores, process_pool
from forgetlab.theory import near_policy

Patch = Callable[[pytest.MonkeyPatch], None]


def _scaled_misassignment(key: str, factor: float) -> Patch:
    """soft_misassignments()[key] multiplied by ``factor`` (0 drops the term)."""
    original = population.soft_misassignments

    def apply(mp: pytest.MonkeyPatch) -> None:
        def mutated(learner: Any, target: Any) -> dict[str, np.ndarray]:
            out = dict(original(learner, target))
            out[key] = out[key] * factor
            return out

        mp.setattr(population, "soft_misassignments", mutated)

    return apply


def _scaled(module: Any, name: str, factor: float) -> Patch:
    """``module.name(...)`` multiplied by ``factor`` (a constant factor on an expectation)."""
    original = getattr(module, name)

    def apply(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(module, name, lambda *a, **k: original(*a, **k) * factor)

    return apply


def _target_without_old_mode(mp: pytest.MonkeyPatch) -> None:
    """The reverse-KL target built with (almost) no old component: alpha -> 1e-3."""
    original = population.reverse_kl_gradient

    def mutated(learner: Any, target: Any) -> MixtureParams:
        weak = target.with_params(np.full_like(np.asarray(target.weight_old, float), 1e-3),
                                  target.mean_old, target.mean_new)
        return original(learner, weak)

    mp.setattr(population, "reverse_kl_gradient", mutated)


def _score_mean_new_scaled(mp: pytest.MonkeyPatch) -> None:
    """The new-mean component of the expected scores (the forward-KL gradient) 1% too large."""
    original = population.expected_scores

    def mutated(learner: Any, means: Any) -> MixtureParams:
        g = original(learner, means)
        return MixtureParams(g.weight_old, g.mean_old, 1.01 * g.mean_new)

    mp.setattr(population, "expected_scores", mutated)


def _replay_off_by_one(mp: pytest.MonkeyPatch) -> None:
    """Off-by-one in the replay mixture: the replayed weight lambda is taken one step of the
    fraction grid too low (lambda - 0.01)."""
    original = sft.training_components

    def mutated(problem: Any, learner: Any, replay: str, fraction: Any) -> Any:
        return original(problem, learner, replay, np.asarray(fraction, float) - 0.01)

    mp.setattr(sft, "training_components", mutated)


def _biased_weights(mp: pytest.MonkeyPatch) -> None:
    """Biased importance-weighted estimator: every weight 5% too large."""
    original = replay_rl.importance_weights
    mp.setattr(replay_rl, "importance_weights", lambda *a, **k: 1.05 * original(*a, **k))


def _biased_kl(mp: pytest.MonkeyPatch) -> None:
    """Gaussian KL (the drift loss) 2% too large."""
    import forgetlab.claims.c1_definitions as c1

    original = gaussian.gaussian_kl
    mp.setattr(c1, "gaussian_kl", lambda *a, **k: 1.02 * original(*a, **k))


def _engine_expectations_high(mp: pytest.MonkeyPatch) -> None:
    """Every Gaussian expectation of the exact engine 0.1% too large (a constant added to the
    log-expectation the population engine integrates with)."""
    original = population._log_e
    mp.setattr(population, "_log_e", lambda *a, **k: original(*a, **k) + np.log(1.001))


def _oapl_mean_value(mp: pytest.MonkeyPatch) -> None:
    """OAPL's V_hat taken as the group mean of r instead of tau log mean exp(r / tau)."""
    mp.setattr(oapl, "group_value", lambda rewards, tau: rewards.mean(axis=-1))


def _chen_exact_sign(mp: pytest.MonkeyPatch) -> None:
    """Sign error in the exact reverse-KL gradient of the Chen et al. toy (ascent, not descent)."""
    from forgetlab.chen2025 import exact

    original = exact.reverse_kl_grad_two_mode
    mp.setattr(exact, "reverse_kl_grad_two_mode", lambda theta: -original(theta))


MUTATIONS: list[tuple[str, str, Patch, str]] = [
    # (claim, mutation, patch, text of a check that must fail)
    ("C1", "drift loss KL 2% too large", _biased_kl, "KL(p_old||phi(m_o))"),
    ("C2", "E_{p_new}[r_o] 0.1% too large", _scaled(population, "expected_responsibility", 1.001),
     "rho"),
    ("C2", "expected new-mean score 1% too large", _score_mean_new_scaled, "brute-force"),
    ("C3", "dropped misassignment term eps_q in the reverse-KL gradient",
     _scaled_misassignment("eps_q", 0.0), "distance to"),
    ("C4", "eps_q in the reverse-KL drift gate 5% too large", _scaled_misassignment("eps_q", 1.05),
     "brute-force"),
    ("C5", "Fisher information 0.1% too large", _scaled(population, "fisher_information", 1.001),
     "Fisher"),
    ("C4", "every engine expectation 0.1% too large", _engine_expectations_high, "brute-force"),
    ("C6", "off-by-one in the replay mixture", _replay_off_by_one, "lambda"),
    ("C6", "every engine expectation 0.1% too large", _engine_expectations_high,
     "brute-force optimiser"),
    ("C7", "biased importance weights (x 1.05)", _biased_weights, "mean IW gradient"),
    ("C8", "ball success probability 2% too large",
     _scaled(near_policy, "ball_success_probability", 1.02), "TTT"),
    ("C8", "OAPL V_hat = mean r (not the log-mean-exp)", _oapl_mean_value, "verifier reward"),
    ("C9", "reverse-KL target built without its old component", _target_without_old_mode,
     "direction"),
    ("Chen2025", "sign error in the exact reverse-KL gradient", _chen_exact_sign,
     "exact reverse KL"),
]


def _mutated_run(index: int) -> tuple[str, str | None, list[str]]:
    """(status, error, failing check names) of MUTATIONS[index]'s claim with its bug in.

    Runs in a pool worker; the patch is undone before the worker takes the next one."""
    claim_id, _, patch, _ = MUTATIONS[index]
    mp = pytest.MonkeyPatch()
    try:
        patch(mp)
        result = run_claim(select([claim_id])[0], Profile("quick"), 20260312)
    finally:
        mp.undo()
    return result.status, result.error, [c.name for c in result.checks if not c.passed]


@pytest.fixture(scope="module")
def mutated_runs() -> list[tuple[str, str | None, list[str]]]:
    """Every mutation's run, in MUTATIONS order, on a process pool of every core (they are
    independent)."""
    pool = process_pool(available_cores())
    try:
        return list(pool.map(_mutated_run, range(len(MUTATIONS))))
    finally:
        pool.shutdown()


@pytest.mark.parametrize("index", range(len(MUTATIONS)),
                         ids=[f"{m[0]}: {m[1]}" for m in MUTATIONS])
def test_mutation_is_caught(index: int, mutated_runs: list[tuple[str, str | None, list[str]]]
                            ) -> None:
    claim_id, mutation, _, expected = MUTATIONS[index]
    status, error, failing = mutated_runs[index]
    assert error is None, error
    assert status == "failed", f"{claim_id} did not catch: {mutation}"
    assert any(expected in name for name in failing), (mutation, failing)
