"""The split of KL(pi_0 || pi) against brute-force enumeration of the whole answer space."""

from __future__ import annotations

import itertools
import math

import pytest

torch = pytest.importorskip("torch")

from forgetlab.lm.split import (  # noqa: E402
    bernoulli_kl,
    classifier_split,
    exact_old_drift,
    marker_split,
)

pytestmark = pytest.mark.lm

V, T, MARKER = 7, 3, 2
PROMPTS = torch.tensor([[1, 2, 3], [4, 5, 6], [0, 3, 3]])


def _brute_force(model_a, model_b, prompt: torch.Tensor, eos: int | None = None):
    """Every answer of length T as a distribution over strings; with an EOS, answers are cut
    after their first EOS and merged. Returns {answer: (p_a, p_b)}."""
    table: dict[tuple[int, ...], list[float]] = {}
    answers = torch.tensor(list(itertools.product(range(V), repeat=T)))
    ids = torch.cat([prompt.expand(len(answers), -1), answers], dim=1)
    for k, model in enumerate((model_a, model_b)):
        with torch.no_grad():
            logp = torch.log_softmax(model(ids[:, :-1]), dim=-1)[:, prompt.numel() - 1 :]
        tok = logp.gather(-1, answers[..., None]).squeeze(-1)
        for a, lp in zip(answers.tolist(), tok, strict=True):
            cut = a.index(eos) + 1 if eos is not None and eos in a else T
            key = tuple(a[:cut])
            table.setdefault(key, [0.0, 0.0])
            # the probability of a cut answer: its own tokens only (sum over the rest is one)
            if len(table[key]) == 2 and table[key][k] == 0.0:
                table[key][k] = float(lp[:cut].sum().exp())
    return table


def _full_kl(table) -> float:
    return sum(pa * math.log(pa / pb) for pa, pb in table.values() if pa > 0)


@pytest.mark.parametrize("eos", [None, 4])
def test_marker_split_identity_matches_brute_force(model_pair, eos) -> None:
    a, b = model_pair
    split = marker_split(a, b, PROMPTS, MARKER, T, exact=True, vocab_size=V, eos_id=eos)
    for i in range(PROMPTS.shape[0]):
        table = _brute_force(a, b, PROMPTS[i : i + 1], eos)
        assert abs(sum(pa for pa, _ in table.values()) - 1.0) < 1e-12
        full = _full_kl(table)
        assert full > 0.1  # the models differ: the identity is not trivially 0 = 0
        assert abs(float(split.full_kl[i]) - full) < 1e-6
        m0 = sum(pa for k, (pa, _) in table.items() if k[0] == MARKER)
        m = sum(pb for k, (_, pb) in table.items() if k[0] == MARKER)
        assert abs(float(split.old_mass_base[i]) - m0) < 1e-12
        assert abs(float(split.old_mass[i]) - m) < 1e-12
        old = sum(pa / m0 * math.log(pa / m0 * m / pb)
                  for k, (pa, pb) in table.items() if k[0] == MARKER and pa > 0)
        assert abs(float(split.old_drift_kl[i]) - old) < 1e-9


def test_terms_are_not_interchangeable(model_pair) -> None:
    """Swapping the roles of the models changes every term (the test above can fail)."""
    a, b = model_pair
    s1 = marker_split(a, b, PROMPTS, MARKER, T, exact=True, vocab_size=V)
    s2 = marker_split(b, a, PROMPTS, MARKER, T, exact=True, vocab_size=V)
    assert not torch.allclose(s1.full_kl, s2.full_kl, atol=1e-3)
    assert not torch.allclose(s1.old_drift_kl, s2.old_drift_kl, atol=1e-3)


def test_identical_models_give_zero(model_pair) -> None:
    a, _ = model_pair
    s = marker_split(a, a, PROMPTS, MARKER, T, exact=True, vocab_size=V)
    assert float(s.full_kl.abs().max()) < 1e-12


def test_sampled_marker_split_within_standard_errors(model_pair) -> None:
    a, b = model_pair
    exact = marker_split(a, b, PROMPTS, MARKER, T, exact=True, vocab_size=V)
    est = marker_split(a, b, PROMPTS, MARKER, T, n_samples=400,
                       gen=torch.Generator().manual_seed(3))
    assert torch.equal(est.old_mass, exact.old_mass)  # exact from one softmax either way
    for name, se in (("old_drift_kl", "old_drift_se"), ("new_change_kl", "new_change_se")):
        z = (getattr(est, name) - getattr(exact, name)) / getattr(est, se)
        assert float(z.abs().max()) < 4.5, name
        assert float(getattr(est, se).max()) < 0.2


def test_classifier_split_identity_and_agreement(model_pair) -> None:
    a, b = model_pair
    exact = marker_split(a, b, PROMPTS, MARKER, T, exact=True, vocab_size=V)
    est = classifier_split(a, b, PROMPTS, lambda ans, mask: ans[:, 0] == MARKER, T,
                           n_samples=2000, gen=torch.Generator().manual_seed(4))
    for name, se in (("old_mass_base", None), ("old_mass", "old_mass_se"),
                     ("old_drift_kl", "old_drift_se"), ("full_kl", "full_kl_se")):
        se_t = getattr(est, se) if se else torch.sqrt(
            exact.old_mass_base * (1 - exact.old_mass_base) / 2000)
        z = (getattr(est, name) - getattr(exact, name)) / se_t
        assert float(z.abs().max()) < 4.5, name


def test_bernoulli_kl_direct() -> None:
    p, q = torch.tensor([0.3, 0.0, 1.0]), torch.tensor([0.6, 0.2, 0.9])
    direct = [0.3 * torch.log(torch.tensor(0.5)) + 0.7 * torch.log(torch.tensor(0.7 / 0.4)),
              torch.log(torch.tensor(1 / 0.8)), torch.log(torch.tensor(1 / 0.9))]
    assert torch.allclose(bernoulli_kl(p, q), torch.stack(direct).double(), atol=1e-7)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="answer_len"):
        marker_split(lambda x: x, lambda x: x, PROMPTS, MARKER, 0, exact=True, vocab_size=V)
    with pytest.raises(ValueError, match="too large"):
        marker_split(lambda x: x, lambda x: x, PROMPTS, MARKER, 9, exact=True, vocab_size=50)
    with pytest.raises(ValueError, match="Generator"):
        marker_split(lambda x: x, lambda x: x, PROMPTS, MARKER, 3)


@pytest.mark.parametrize("eos", [None, 4])
def test_exact_old_drift_matches_brute_force(model_pair, eos) -> None:
    a, b = model_pair
    drift = exact_old_drift(a, b, PROMPTS, MARKER, T, V, eos_id=eos)
    for i in range(PROMPTS.shape[0]):
        table = _brute_force(a, b, PROMPTS[i : i + 1], eos)
        m0 = sum(pa for k, (pa, _) in table.items() if k[0] == MARKER)
        m = sum(pb for k, (_, pb) in table.items() if k[0] == MARKER)
        old = sum(pa / m0 * math.log(pa / m0 * m / pb)
                  for k, (pa, pb) in table.items() if k[0] == MARKER and pa > 0)
        assert old > 1e-3
        assert abs(float(drift[i]) - old) < 1e-9
    with pytest.raises(ValueError, match="too large"):
        exact_old_drift(a, b, PROMPTS, MARKER, 9, V)
