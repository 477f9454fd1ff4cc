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


@pytest.mark.parametrize("eos", [None, 0, 4])
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


@pytest.mark.parametrize("eos", [None, 0, 4])
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


def _brute_terms(table, is_old) -> dict[str, float]:
    """m_0, m, KL_old, KL_new and the full KL of an enumerated table, old iff ``is_old(key)``."""
    m0 = sum(pa for k, (pa, _) in table.items() if is_old(k))
    m = sum(pb for k, (_, pb) in table.items() if is_old(k))

    def cond(flag: bool, z0: float, z: float) -> float:
        return sum(pa / z0 * math.log(pa / z0 * z / pb)
                   for k, (pa, pb) in table.items() if is_old(k) == flag and pa > 0)

    return {"m0": m0, "m": m, "old": cond(True, m0, m), "new": cond(False, 1 - m0, 1 - m),
            "full": _full_kl(table)}


@pytest.mark.parametrize("eos", [None, 0, 4])
@pytest.mark.parametrize("marker", [(2, 5), (2, 5, 1)])
def test_multi_token_marker_split_matches_brute_force(model_pair, eos, marker) -> None:
    """Old iff the answer starts with several tokens: every term against enumeration."""
    a, b = model_pair
    split = marker_split(a, b, PROMPTS, list(marker), T, exact=True, vocab_size=V, eos_id=eos)
    for i in range(PROMPTS.shape[0]):
        table = _brute_force(a, b, PROMPTS[i : i + 1], eos)
        ref = _brute_terms(table, lambda k: tuple(k[: len(marker)]) == marker)
        assert ref["old"] > 1e-3 or len(marker) == T
        assert abs(float(split.old_mass_base[i]) - ref["m0"]) < 1e-12
        assert abs(float(split.old_mass[i]) - ref["m"]) < 1e-12
        assert abs(float(split.old_drift_kl[i]) - ref["old"]) < 1e-9
        assert abs(float(split.new_change_kl[i]) - ref["new"]) < 1e-9
        assert abs(float(split.full_kl[i]) - ref["full"]) < 1e-9


def test_multi_token_sampled_marker_split_within_standard_errors(model_pair) -> None:
    a, b = model_pair
    marker = [2, 5]
    exact = marker_split(a, b, PROMPTS, marker, T, exact=True, vocab_size=V, eos_id=4)
    est = marker_split(a, b, PROMPTS, marker, T, n_samples=400, eos_id=4,
                       gen=torch.Generator().manual_seed(5))
    assert torch.allclose(est.old_mass, exact.old_mass, atol=1e-12, rtol=0)
    # the old branch has one free position after the marker: its KL is exact, se ~ 0
    assert torch.allclose(est.old_drift_kl, exact.old_drift_kl, atol=1e-12, rtol=0)
    z = (est.new_change_kl - exact.new_change_kl) / est.new_change_se
    assert float(z.abs().max()) < 4.5 and float(est.new_change_se.min()) > 1e-3


def test_marker_split_target_se_adds_samples(model_pair) -> None:
    a, b = model_pair
    est = marker_split(a, b, PROMPTS, MARKER, T, n_samples=8, target_se=0.02,
                       max_samples=4096, gen=torch.Generator().manual_seed(6))
    m0 = est.old_mass_base
    assert float(est.samples.min()) > 8
    assert float(torch.maximum(m0 * est.old_drift_se, (1 - m0) * est.new_change_se).max()) \
        <= 0.02


class _Biased:
    """A model whose logit for ``token`` is shifted by ``bias`` everywhere (a different LM)."""

    def __init__(self, model, token: int, bias: float) -> None:
        self.model, self.token, self.bias = model, token, bias

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(ids).clone()
        out[..., self.token] += self.bias
        return out


def _reads_marker(ans: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ans[:, 0] == MARKER


TERMS = (("old_mass", "old_mass_se"), ("mass_kl", "mass_kl_se"),
         ("old_drift_kl", "old_drift_se"), ("new_change_kl", "new_change_se"),
         ("full_kl", "full_kl_se"))


def _z_scores(a, b, n: int, seeds: range) -> torch.Tensor:
    """(estimate - exact) / s.e. of the classifier split over seeds ``[seeds, prompts, terms]``,
    the exact side from the marker split by enumeration."""
    exact = marker_split(a, b, PROMPTS, MARKER, T, exact=True, vocab_size=V)
    zs = []
    for seed in seeds:
        est = classifier_split(a, b, PROMPTS, _reads_marker, T, n_samples=n,
                               gen=torch.Generator().manual_seed(seed))
        zs.append(torch.stack([(getattr(est, k) - getattr(exact, k)) / getattr(est, s)
                               for k, s in TERMS], dim=-1))
    return torch.stack(zs)


@pytest.fixture
def blind_pair(model_pair):
    """A base that almost never starts with the marker (m_0 ~ 1e-4) and a tuned model that
    often does: the case a one-sided (base samples only) estimator books as drift."""
    a, b = model_pair
    return _Biased(a, MARKER, -9.0), _Biased(b, MARKER, 1.5)


@pytest.mark.parametrize("swap", [False, True])
def test_two_sided_classifier_agrees_with_marker_split(blind_pair, swap) -> None:
    """Every term within 3 s.e. of the exact split, base and tuned either way round."""
    a, b = blind_pair[::-1] if swap else blind_pair
    exact = marker_split(a, b, PROMPTS, MARKER, T, exact=True, vocab_size=V)
    assert float(exact.old_mass_base.max() if not swap else exact.old_mass.max()) < 1e-3
    assert float(exact.mass_kl.min()) > 0.1  # the mass term is large: the check has teeth
    z = _z_scores(a, b, 400, range(7, 8))
    assert float(z.abs().max()) < 3.0, z


@pytest.mark.slow  # 16 s; the one-sided estimator test below still runs by default
def test_two_sided_standard_errors_are_calibrated(blind_pair, model_pair) -> None:
    """Coverage over repeated seeds: |z| < 1 about 68 % and |z| < 2 about 95 % of the time."""
    z = torch.cat([_z_scores(*pair, 200, range(20)).flatten()
                   for pair in (model_pair, blind_pair, blind_pair[::-1])])
    assert torch.isfinite(z).all()
    within1, within2 = float((z.abs() < 1).double().mean()), float((z.abs() < 2).double().mean())
    assert 0.55 < within1 < 0.82, within1
    assert 0.88 < within2 <= 0.995, within2
    per_term = (z.view(-1, len(TERMS)).abs() < 2).double().mean(0)
    assert float(per_term.min()) > 0.75, per_term  # no term far off on its own


def test_one_sided_estimator_is_caught(blind_pair, monkeypatch) -> None:
    """Mutation: draw the 'tuned' samples from the base (the old one-sided estimator's blind
    spot); the agreement check must fail."""
    import forgetlab.lm.split as split_mod

    a, b = blind_pair
    real = split_mod.draw
    monkeypatch.setattr(split_mod, "draw", lambda fn, *x, **k: real(a, *x, **k))
    z = _z_scores(a, b, 400, range(7, 8))
    assert float(z.abs().max()) > 3.0


def test_jackknife_scale_mutation_is_caught(model_pair, monkeypatch) -> None:
    """Mutation: standard errors 3x too small; the coverage check must fail."""
    import forgetlab.lm.split as split_mod

    real = split_mod.two_sided_estimate

    def small(*args):
        t, se, d = real(*args)
        return t, se / 3, d

    monkeypatch.setattr(split_mod, "two_sided_estimate", small)
    z = _z_scores(*model_pair, 200, range(10)).flatten()
    assert float((z.abs() < 2).double().mean()) < 0.88


def test_classifier_target_se_and_diagnostics(model_pair) -> None:
    a, b = model_pair
    est = classifier_split(a, b, PROMPTS, _reads_marker, T, n_samples=16, target_se=0.05,
                           max_samples=4096, gen=torch.Generator().manual_seed(8))
    assert float(est.samples.min()) > 16
    worst = torch.stack([est.old_mass_se, est.mass_kl_se, est.full_kl_se,
                         est.old_mass_base * est.old_drift_se]).max(0).values
    assert float(worst.max()) <= 0.05 * 1.05
    assert float(est.ess_old.min()) > 1 and 0 < float(est.overlap.max()) <= 1
    again = classifier_split(a, b, PROMPTS, _reads_marker, T, n_samples=16, target_se=0.05,
                             max_samples=4096, gen=torch.Generator().manual_seed(8))
    assert torch.equal(again.full_kl, est.full_kl)  # same seed, same numbers
