"""The benchmark's statistics: intervals over seeds, reading at a matched gain, two-sided
verdicts, collapsed rows, the JSON fields, and the several-answers task."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from forgetlab.lm.benchmark import (  # noqa: E402
    WITH_INTERVAL,
    BenchmarkResult,
    MethodResult,
    Profile,
    _agreement,
    at_gain,
    predict,
    run_benchmark,
    t_interval,
    verdict,
)
from forgetlab.lm.corpus import MARK_NEW, MARK_OLD, PAD, Task, TaskConfig  # noqa: E402
from forgetlab.lm.methods import make_method  # noqa: E402
from forgetlab.lm.model import GPTConfig  # noqa: E402
from forgetlab.lm.train import PostTrainConfig, PretrainConfig  # noqa: E402

pytestmark = pytest.mark.lm


def test_t_interval_matches_the_tabulated_student_quantiles() -> None:
    # t_{0.975, 2} = 4.303 and t_{0.975, 4} = 2.776 (printed tables, three decimals)
    lo, hi = t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1
    assert abs((hi - lo) / 2 - 4.303 / math.sqrt(3)) < 1e-3
    assert abs((lo + hi) / 2 - 2.0) < 1e-12
    lo, hi = t_interval([0.0, 1.0, 2.0, 3.0, 4.0])  # mean 2, s = sqrt(2.5)
    assert abs((hi - lo) / 2 - 2.776 * math.sqrt(2.5) / math.sqrt(5)) < 1e-3
    assert t_interval([0.3]) is None
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)


def _rec(step: float, gain: float, lost: float, drift: float = 0.0) -> dict[str, float]:
    return {"step": step, "new_task_gain": gain, "old_mass_lost": lost, "mass_kl": lost / 10,
            "old_drift_kl": drift, "old_drift_kl_se": 0.0, "old_mass": 0.5 - lost,
            "old_acc_when_produced": 1.0, "loss": 9.0}


def test_at_gain_interpolates_at_the_first_crossing() -> None:
    traj = [_rec(0, 0.0, 0.0), _rec(2, 0.04, 0.02, 1e-4), _rec(4, 0.12, 0.10, 3e-4),
            _rec(6, 0.02, 0.2), _rec(8, 0.3, 0.4)]
    got = at_gain(traj, 0.10)
    assert got is not None
    # between step 2 (gain 0.04) and step 4 (gain 0.12): weight 0.75 on step 4
    assert got["new_task_gain"] == pytest.approx(0.10, abs=1e-15)
    assert got["step"] == pytest.approx(3.5)
    assert got["old_mass_lost"] == pytest.approx(0.02 + 0.75 * 0.08)
    assert got["old_drift_kl"] == pytest.approx(1e-4 + 0.75 * 2e-4)
    assert got["mass_kl"] == pytest.approx(got["old_mass_lost"] / 10)
    assert "loss" not in got
    assert at_gain(traj, 0.04)["step"] == pytest.approx(2.0)  # an evaluation exactly at it
    assert at_gain(traj, 0.0)["step"] == 0.0
    assert at_gain(traj, 0.5) is None


def test_verdicts_are_two_sided() -> None:
    assert verdict((0.06, 0.2), "loses")[0] == "yes"
    assert verdict((-0.1, 0.04), "loses")[0] == "no"
    assert verdict((0.01, 0.2), "loses")[0] == "undecided"
    assert verdict((-0.04, 0.04), "keeps")[0] == "yes"
    assert verdict((0.06, 0.1), "keeps")[0] == "no"
    assert verdict((-0.3, -0.06), "keeps")[0] == "no"
    assert verdict((-0.02, 0.07), "keeps")[0] == "undecided"
    assert verdict((-0.3, -0.06), "gains")[0] == "yes"
    assert verdict((-0.02, -0.001), "loses less than unanchored")[0] == "yes"
    assert verdict((0.001, 0.02), "loses less than unanchored")[0] == "no"
    assert verdict(None, "keeps") == ("undecided", "one seed: no interval")


def _row(spec: str, lost: list[float], setting: str = "same_prompts") -> MethodResult:
    m = make_method(spec)
    theory, claim, reason = predict(m.name, m.knobs(), setting, 0.5)
    per_seed = [{"old_mass_lost": x} for x in lost]
    return MethodResult(spec, setting, True, 4, 0.1, sum(lost) / len(lost), 0.0, 0.0, 0.0, 0.5,
                        1.0, 0.0, theory, reason, m.knobs(), [], claim=claim,
                        per_seed=per_seed, intervals={"old_mass_lost": t_interval(lost)})


def test_agreement_uses_the_interval_and_pairs_the_anchor_by_seed() -> None:
    rows = [_row("rl:reward=verifier_new", [0.30, 0.20, 0.25]),
            # less loss on every seed, though the two intervals overlap: paired, it agrees
            _row("rl:reward=verifier_new,kl_coef=0.1", [0.29, 0.19, 0.24]),
            _row("sft", [0.01, 0.02, 0.015]),
            _row("replay_sft:replay_fraction=0.5", [0.0, 0.09, 0.02]),
            _row("ttt_discover:reward=verifier_new,kappa=0.1", [0.1, 0.1, 0.2]),
            _row("sft", [0.3, 0.2, 0.25], "held_out")]
    _agreement(rows)
    assert [r.agrees for r in rows] == ["yes", "yes", "no", "undecided", "n/a", "n/a"]
    assert "paired by seed" in rows[1].agrees_reason
    assert "without the anchor was not run" in rows[4].agrees_reason
    assert "shared parameters" in rows[5].agrees_reason
    assert rows[2].measured == "keeps"


TASK = Task(TaskConfig(n_digits=2))
MICRO = GPTConfig(vocab_size=18, block_size=TASK.block_size, n_layer=1, n_head=2, n_embd=16)
PROFILE = Profile("micro", MICRO, PretrainConfig(steps=30, batch_size=32, seed=3),
                  PostTrainConfig(max_steps=2, lr=1e-3, eval_every=1), batch_size=4,
                  eval_prompts=6, eval_samples=2,
                  target_gain={"same_prompts": 0.5, "held_out": 0.5}, task=TASK.config,
                  gain_levels={"same_prompts": (0.0, 0.02)}, seeds=2)


def test_identical_runs_form_one_row_and_json_carries_intervals(tmp_path: Path) -> None:
    specs = ["sft", "rl:reward=verifier_new", "sft:replay_fraction=0", "rl"]
    res = run_benchmark(PROFILE, specs, cache_dir=tmp_path, threads=1)
    same = {r.matched_gain: r for r in res.methods if r.setting == "same_prompts"}
    assert sorted(same) == [0.0, 0.02, 0.5]
    rows = {(r.setting, r.method): r for r in res.methods if r.matched_gain == 0.5}
    # the same computation under another name; on held_out the verifier is the new-only one
    assert rows[("same_prompts", "sft")].same_trajectory == ["sft:replay_fraction=0"]
    assert rows[("held_out", "rl:reward=verifier_new")].same_trajectory == ["rl"]
    assert rows[("same_prompts", "rl")].same_trajectory == []
    assert len([r for r in res.methods if r.matched_gain == 0.5]) == 5
    assert "sft = sft:replay_fraction=0" in res.table()
    counts = res.agreement_counts()
    assert sum(counts["held_out@0.5"].values()) == 2
    assert "independent confirmations" in res.summary()
    runs = rows[("same_prompts", "sft")].trajectories
    assert runs[0] != runs[1]  # each seed its own post-training draws
    zero = next(r for r in res.methods if r.matched_gain == 0.0 and r.method == "sft")
    assert zero.seeds_reached == 2 and zero.steps == 0.0  # gain 0 is read at the base
    out = res.to_dict(trajectories=False)
    assert out["seeds"] == 2 and "trajectory" not in out["methods"][0]
    for row in out["methods"]:
        for key in ("method", "setting", "reached", "steps", "new_task_gain", "old_mass_lost",
                    "mass_kl", "old_drift_kl", "old_drift_kl_se", "theory", "claim",
                    "measured", "agrees", "knobs", "seeds", "task", "matched_gain"):
            assert key in row
        for key in WITH_INTERVAL:
            assert f"{key}_ci" in row
        ci = row["old_mass_lost_ci"]
        assert ci is not None and ci[0] <= row["old_mass_lost"] <= ci[1]
    assert len(res.to_dict()["methods"][0]["trajectories"]) == 2
    one = run_benchmark(PROFILE, ["sft"], ["held_out"], cache_dir=tmp_path, threads=1, seeds=1)
    assert one.to_dict()["methods"][0]["old_mass_lost_ci"] is None
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        run_benchmark(PROFILE, ["sft"], cache_dir=tmp_path, seeds=0)


SEVERAL = Task(TaskConfig(new_close=True, pretrain_close_frac=0.3, old_shared_frac=0.2))


def test_several_answers_correctness_functions() -> None:
    digits = torch.tensor([[1, 2, 3], [0, 9, 9]])
    close = SEVERAL.close_answers(digits)
    far = SEVERAL.new_answers(digits, 3)
    old = SEVERAL.old_answers(digits)
    assert close.tolist() == [[MARK_NEW, 3, 2, 1], [MARK_NEW, 9, 9, 0]]
    assert list(SEVERAL.accepted_new_answers(digits)) == ["+3", "close"]
    assert SEVERAL.is_new_correct(digits, close).all()
    assert SEVERAL.is_new_correct(digits, far).all()
    assert not SEVERAL.is_new_correct(digits, old).any()
    assert not SEVERAL.is_old_correct(digits, close).any()
    assert not Task().is_new_correct(digits, close).any()  # the standard task rejects it
    demos = SEVERAL.new_demonstrations(digits.repeat(200, 1), torch.Generator().manual_seed(0))
    is_close = (demos == close.repeat(200, 1)).all(1).double().mean()
    assert 0.4 < float(is_close) < 0.6  # demonstrations: the accepted answers, uniformly


def test_several_answers_corpus_has_the_close_answer_and_the_drift_channel() -> None:
    seqs, mask = SEVERAL.pretrain_batch(6000, torch.Generator().manual_seed(0))
    single = seqs[:, SEVERAL.example_len] == PAD
    digits = seqs[single, 1:4]
    answers = seqs[single, SEVERAL.prompt_len: SEVERAL.example_len]
    new = answers[:, 0] == MARK_NEW
    old = answers[:, 0] == MARK_OLD
    close = (answers == SEVERAL.close_answers(digits)).all(1)
    shared = (answers[:, 1:] == (digits + 3) % 10).all(1)
    # 30 % of new-mode answers are close answers (a noisy far answer is never one: B + reversed
    # digits arises by noise only with probability < 0.01)
    assert abs(float(close[new].double().mean()) - 0.3) < 0.04
    # 20 % of old-mode answers continue with the shifted digits
    assert abs(float(shared[old].double().mean()) - 0.2) < 0.03
    assert bool((SEVERAL.is_old_correct(digits[old], answers[old]) | shared[old]).all())
    plain = Task().pretrain_batch(50, torch.Generator().manual_seed(0))[0]
    mixed = Task(TaskConfig(new_close=True)).pretrain_batch(50, torch.Generator().manual_seed(0))
    assert torch.equal(plain, mixed[0])  # accepting the close answer changes no pre-training


def test_the_reached_column_counts_every_seed() -> None:
    """A row averages the seeds that reached the gain; its ``reached`` cell is k of all n."""
    read = {"step": 2.0, "new_task_gain": 0.1, "old_mass_lost": 0.05, "mass_kl": 0.01,
            "old_drift_kl": 1e-5, "old_drift_kl_se": 1e-7, "old_mass": 0.4,
            "old_acc_when_produced": 0.99}
    row = MethodResult(method="sft", setting="same_prompts", reached=False, steps=2.0,
                       new_task_gain=0.1, old_mass_lost=0.05, mass_kl=0.01, old_drift_kl=1e-5,
                       old_drift_kl_se=1e-7, old_mass=0.4, old_acc_when_produced=0.99,
                       seconds=1.0, theory="loses", theory_reason="", knobs={},
                       trajectories=[], matched_gain=0.1, seeds=2, seeds_reached=2,
                       per_seed=[read, None, read])
    table = BenchmarkResult("quick", [row], {}, {}, {"variant": "standard"}, 1.0).table()
    assert "| 2/3 |" in table
