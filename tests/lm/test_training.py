"""Model, corpus, pre-training cache, methods and determinism on a micro configuration."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from forgetlab.lm.benchmark import Profile, run_benchmark  # noqa: E402
from forgetlab.lm.corpus import MARK_NEW, MARK_OLD, PAD, Task, TaskConfig  # noqa: E402
from forgetlab.lm.methods import METHODS, Setting, make_method  # noqa: E402
from forgetlab.lm.model import GPT, GPTConfig  # noqa: E402
from forgetlab.lm.train import PostTrainConfig, PretrainConfig, load_or_pretrain  # noqa: E402

pytestmark = pytest.mark.lm

TASK = Task(TaskConfig(n_digits=2))
MICRO = GPTConfig(vocab_size=18, block_size=TASK.block_size, n_layer=1, n_head=2, n_embd=16)
PRE = PretrainConfig(steps=30, batch_size=32, seed=3)


def test_corpus_answers_and_mixtures() -> None:
    task = Task()
    gen = torch.Generator().manual_seed(0)
    seqs, mask = task.pretrain_batch(4000, gen)
    single = seqs[:, task.example_len] == PAD
    fam = seqs[single, 0]
    marker = seqs[single, task.prompt_len]
    for letter, want in task.config.old_mass.items():
        rows = fam == "0123456789=ABonm;_".index(letter)
        frac = float((marker[rows] == MARK_OLD).double().mean())
        se = (want * (1 - want) / int(rows.sum())) ** 0.5
        assert abs(frac - want) < 5 * se + 1e-9
    digits = seqs[single, 1 : 1 + task.config.n_digits]
    answers = seqs[single, task.prompt_len : task.example_len]
    old = marker == MARK_OLD
    assert bool(task.is_old_correct(digits[old], answers[old]).all())
    new_ok = task.is_new_correct(digits[marker == MARK_NEW], answers[marker == MARK_NEW])
    p = task.config.new_digit_acc + (1 - task.config.new_digit_acc) / 10
    assert abs(float(new_ok.double().mean()) - p ** 3) < 0.05
    assert int(mask[single].sum(1).unique().numel()) == 1  # answer tokens only


def test_pretrain_cache_and_determinism(tmp_path: Path) -> None:
    m1, info1 = load_or_pretrain(TASK, MICRO, PRE, tmp_path)
    m2, info2 = load_or_pretrain(TASK, MICRO, PRE, tmp_path)
    assert not info1["cached"] and info2["cached"] and info1["key"] == info2["key"]
    fresh, _ = load_or_pretrain(TASK, MICRO, PRE, tmp_path / "other")
    for a, b, c in zip(m1.state_dict().values(), m2.state_dict().values(),
                       fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    other, info3 = load_or_pretrain(TASK, MICRO, PretrainConfig(steps=30, batch_size=32, seed=4),
                                    tmp_path)
    assert info3["key"] != info1["key"]


def test_cache_key_holds_the_thread_count(tmp_path: Path) -> None:
    """A base trained with another number of CPU threads is another cache entry: torch's
    reductions, hence the weights, depend on the thread count."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one = load_or_pretrain(TASK, MICRO, PRE, tmp_path)
        torch.set_num_threads(2)
        _, two = load_or_pretrain(TASK, MICRO, PRE, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert one["key"] != two["key"] and not two["cached"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_steps_and_is_deterministic(tmp_path: Path, name: str) -> None:
    base, _ = load_or_pretrain(TASK, MICRO, PRE, tmp_path)
    results = []
    for _ in range(2):
        policy = GPT(MICRO)
        policy.load_state_dict(base.state_dict())
        method = make_method(name).bind(Setting(
            TASK, policy, base, "n", "o", False, 4, torch.Generator().manual_seed(9)))
        opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
        for step in range(2):
            loss, _ = method.loss(step)
            assert torch.isfinite(loss)
            opt.zero_grad()
            loss.backward()
            opt.step()
            method.after_step(step)
        results.append(torch.cat([p.detach().flatten() for p in policy.parameters()]))
    assert torch.equal(results[0], results[1])
    if name in ("sft", "replay_sft", "distill", "sdft"):  # a signal that needs no reward
        before = torch.cat([p.flatten() for p in base.parameters()])
        assert not torch.equal(results[0], before)


@pytest.fixture(scope="module")
def micro_base(tmp_path_factory: pytest.TempPathFactory) -> GPT:
    return load_or_pretrain(TASK, MICRO, PRE, tmp_path_factory.mktemp("cache"))[0]


@pytest.mark.parametrize("spec", ["rl:reward=target", "ttt_discover:reward=target",
                                  "oapl:reward=target,lag=1",
                                  "iterative_sft:reward=verifier_new,regenerate_every=1",
                                  "ttt_discover:reward=target,reuse=3,clip_eps=0.2",
                                  "rl:reward=target,ppo_epochs=2,clip_eps=0.2",
                                  "sdft:teacher=base,divergence=reverse"])
def test_reward_kinds_step(micro_base: GPT, spec: str) -> None:
    base = micro_base
    policy = GPT(MICRO)
    policy.load_state_dict(base.state_dict())
    method = make_method(spec).bind(Setting(
        TASK, policy, base, "m", "m", True, 4, torch.Generator().manual_seed(9),
        target_old_mass=0.5))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for step in range(2):
        loss, diag = method.loss(step)
        assert torch.isfinite(loss) and all(math.isfinite(v) for v in diag.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(step)
    after = torch.cat([p.detach().flatten() for p in policy.parameters()])
    if "target" in spec:  # a continuous signal always moves the policy
        assert not torch.equal(after, torch.cat([p.flatten() for p in base.parameters()]))


def test_method_specs_are_validated() -> None:
    assert make_method("distill:divergence=jsd,beta=0.3").knobs() == {
        "divergence": "jsd", "beta": 0.3}
    with pytest.raises(ValueError, match="unknown method"):
        make_method("nope")
    with pytest.raises(ValueError, match="unknown knob"):
        make_method("rl:tau=1")
    with pytest.raises(ValueError, match="divergence"):
        make_method("sdft:divergence=sideways")


MICRO_PROFILE = Profile("micro", MICRO, PRE, PostTrainConfig(max_steps=2, lr=1e-3, eval_every=1),
                        batch_size=4, eval_prompts=6, eval_samples=2,
                        target_gain={"same_prompts": 0.5, "held_out": 0.5}, task=TASK.config,
                        seeds=2)


def test_run_benchmark_micro_is_reproducible(tmp_path: Path) -> None:
    runs = [run_benchmark(MICRO_PROFILE, ["sft", "rl:kl_coef=0.1"], cache_dir=tmp_path,
                          threads=1) for _ in range(2)]
    a, b = (r.to_dict(trajectories=False) for r in runs)
    for ra, rb in zip(a["methods"], b["methods"], strict=True):
        for key in ("new_task_gain", "old_mass_lost", "old_drift_kl", "steps",
                    "old_mass_lost_ci"):
            assert ra[key] == rb[key]
    assert {(r["method"], r["setting"]) for r in a["methods"]} == {
        (m, s) for m in ("sft", "rl:kl_coef=0.1") for s in ("same_prompts", "held_out")}
    assert "| setting | gain | method |" in runs[0].table()
    paths = runs[0].figures(tmp_path / "fig")
    assert all(p.stat().st_size > 1000 for p in paths) and len(paths) == 2
    two = run_benchmark(MICRO_PROFILE, ["rl:reward=target"], ["same_prompts"],
                        cache_dir=tmp_path, threads=1, variant="two-answer", seeds=1)
    row = two.methods[0]
    assert row.new_other_shift_share is not None and 0.0 <= row.new_other_shift_share <= 1.0
    assert (row.theory, row.claim) == ("keeps", "C3") and "+7 share" in two.table()
    assert row.agrees == "undecided" and row.intervals["old_mass_lost"] is None  # one seed
    assert two.pretrain["key"] == runs[0].pretrain["key"]  # the base is shared
    with pytest.raises(ValueError, match="variant must be one of"):
        run_benchmark(MICRO_PROFILE, ["sft"], cache_dir=tmp_path, variant="three")
