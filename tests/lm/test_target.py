"""The explicit two-mode target, the reward kinds and the knob-derived theory predictions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from forgetlab.lm.benchmark import predict  # noqa: E402
from forgetlab.lm.corpus import VOCAB, Task, TaskConfig  # noqa: E402
from forgetlab.lm.methods import Setting, make_method  # noqa: E402
from forgetlab.lm.model import GPT, GPTConfig  # noqa: E402
from forgetlab.lm.target import TARGET_EPS, target_logprob  # noqa: E402

pytestmark = pytest.mark.lm

TASK = Task(TaskConfig(n_digits=2, new_shifts=(3, 7)))
CLOSE = Task(TaskConfig(n_digits=2, new_close=True))
V = len(VOCAB)


def _all_answers() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(V), repeat=TASK.answer_len)))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_target_is_normalised_over_the_answer_space(alpha: float) -> None:
    answers = _all_answers()  # 18^3 = 5832 answers
    for digits in ([[1, 2]], [[9, 0]], [[5, 5]]):
        d = torch.tensor(digits).expand(answers.shape[0], -1)
        logp = target_logprob(TASK, d, answers, alpha)
        assert torch.isfinite(logp).all()
        assert abs(float(torch.logsumexp(logp, 0))) < 1e-12
        # the old answer's own mass: alpha (1 - eps + eps/V)^T plus the other modes' leakage
        old = TASK.old_answers(d[:1])
        got = float(target_logprob(TASK, d[:1], old, alpha).exp())
        hit, miss = 1 - TARGET_EPS + TARGET_EPS / V, TARGET_EPS / V
        new_hits = [int((TASK.new_answers(d[:1], s) == old).sum()) for s in (3, 7)]
        want = alpha * hit ** 3 + (1 - alpha) * sum(
            0.5 * hit ** k * miss ** (3 - k) for k in new_hits)
        assert abs(got - want) < 1e-12 * max(want, 1e-300)


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_target_with_the_close_answer_is_normalised_and_splits_the_new_mass(alpha: float) -> None:
    answers = _all_answers()
    d = torch.tensor([[1, 2]]).expand(answers.shape[0], -1)
    logp = target_logprob(CLOSE, d, answers, alpha)
    assert abs(float(torch.logsumexp(logp, 0))) < 1e-12
    hit, miss = 1 - TARGET_EPS + TARGET_EPS / V, TARGET_EPS / V
    close = CLOSE.close_answers(d[:1])  # B21: shares its digits with the old answer A21
    far = CLOSE.new_answers(d[:1], 3)  # B45
    want_close = alpha * miss * hit ** 2 + (1 - alpha) * 0.5 * (hit ** 3 + hit * miss ** 2)
    want_far = alpha * miss ** 3 + (1 - alpha) * 0.5 * (hit ** 3 + hit * miss ** 2)
    for answer, want in ((close, want_close), (far, want_far)):
        got = float(target_logprob(CLOSE, d[:1], answer, alpha).exp())
        assert abs(got - want) < 1e-12


def _independent_log_target(digits: np.ndarray, answer: np.ndarray, alpha: float) -> float:
    """p* from per-position probability tables, multiplied out in numpy."""
    modes = [("A" + "".join(str(x) for x in digits[::-1]), alpha)]
    modes += [("B" + "".join(str((x + s) % 10) for x in digits), (1 - alpha) / 2)
              for s in (3, 7)]
    total = 0.0
    for text, weight in modes:
        prob = 1.0
        for pos, ch in enumerate(text):
            table = np.full(V, TARGET_EPS / V)
            table[VOCAB.index(ch)] += 1 - TARGET_EPS
            prob *= table[answer[pos]]
        total += weight * prob
    return math.log(total)


def test_target_signal_is_log_target_minus_log_policy() -> None:
    cfg = GPTConfig(vocab_size=V, block_size=TASK.block_size, n_layer=1, n_head=2, n_embd=16)
    policy = GPT(cfg, torch.Generator().manual_seed(0)).double().eval()
    setting = Setting(TASK, policy, policy, "m", "m", True, 6,
                      torch.Generator().manual_seed(1), target_old_mass=0.4)
    gen = torch.Generator().manual_seed(2)
    digits = TASK.questions(6, gen)
    prompts = TASK.prompts("m", digits)
    answers = torch.randint(0, V, (6, TASK.answer_len), generator=gen)
    answers[0] = TASK.old_answers(digits[:1])[0]
    answers[1] = TASK.new_answers(digits[1:2], 7)[0]
    signal = setting.signal("target", digits, prompts, answers, policy)
    with torch.no_grad():
        ids = torch.cat([prompts, answers], 1)
        logp = torch.log_softmax(policy(ids[:, :-1]), -1)
    p = prompts.shape[1]
    for i in range(6):
        log_pi = sum(float(logp[i, p - 1 + t, answers[i, t]]) for t in range(TASK.answer_len))
        want = _independent_log_target(digits[i].numpy(), answers[i].numpy(), 0.4) - log_pi
        assert abs(float(signal[i]) - want) < 1e-9
    both = setting.signal("verifier_both", digits, prompts, answers, policy)
    new = setting.signal("verifier_new", digits, prompts, answers, policy)
    assert both[:2].tolist() == [1.0, 1.0] and new[:2].tolist() == [0.0, 1.0]
    assert torch.equal(setting.signal("verifier", digits, prompts, answers, policy), both)


def test_reward_knob_is_validated() -> None:
    assert make_method("rl:reward=target").knobs()["reward"] == "target"
    with pytest.raises(ValueError, match="reward must be one of"):
        make_method("rl:reward=bogus")
    with pytest.raises(ValueError, match="one of .verifier., .verifier_both., .verifier_new., got"):
        make_method("rft:reward=target")


def test_predictions_follow_the_knobs() -> None:
    def pred(spec: str, setting: str = "same_prompts") -> tuple[str, str]:
        m = make_method(spec)
        return predict(m.name, m.knobs(), setting, 0.5)[:2]

    assert pred("sft") == ("loses", "C2")
    assert pred("replay_sft") == ("keeps", "C6")
    assert pred("replay_sft:replay_fraction=0.9") == ("gains", "C6")
    assert pred("rl:reward=target") == ("keeps", "C3")
    assert pred("oapl:reward=target") == ("keeps", "C3")
    assert pred("rl") == ("gains", "C8")
    assert pred("rl:reward=verifier_new") == ("loses", "C8")
    assert pred("ttt_discover:reward=verifier_new,kappa=0.1") == (
        "loses less than unanchored", "C8")
    assert pred("rft:reward=verifier_new") == ("loses", "C2")
    assert pred("distill:divergence=forward") == ("keeps", "C6")
    assert pred("sdft") == ("keeps", "C8")
    assert pred("rl", "held_out")[0] == "not modelled"
