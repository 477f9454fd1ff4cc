"""ForgettingCallback in a short transformers Trainer run and a short TRL SFTTrainer run."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

import hf_models  # noqa: E402  (tests/lm is on sys.path under pytest)

from forgetlab.lm import ForgettingCallback  # noqa: E402
from forgetlab.lm.hf import load_causal_lm, measure_models  # noqa: E402

pytestmark = pytest.mark.lm

KEYS = ["old_mass", "mass_kl", "old_drift_kl", "new_change_kl", "full_kl"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hf_models.build(tmp_path_factory.mktemp("cb"))


def _new_mode_lines() -> list[str]:
    return [line + hf_models.EOS for line in
            hf_models._lines(torch.Generator().manual_seed(9), 64, 0.0)]


def _args(out: Path, **kw):
    return dict(output_dir=str(out), max_steps=4, per_device_train_batch_size=8,
                learning_rate=3e-3, logging_steps=2, save_strategy="no", report_to=[],
                use_cpu=True, seed=0, disable_tqdm=True, **kw)


def _check_logged(history: list[dict], cb: ForgettingCallback, model, tok, base_dir) -> None:
    rows = [h for h in history if "forgetting/old_mass" in h]
    assert [h["step"] for h in rows] == [2, 4]
    for h in rows:
        for k in KEYS:
            assert f"forgetting/{k}_se" in h and h[f"forgetting/{k}"] == h[f"forgetting/{k}"]
    assert rows[-1]["forgetting/old_mass"] < rows[-1]["forgetting/old_mass_base"] - 0.05
    assert rows[-1]["forgetting/full_kl"] > rows[-1]["forgetting/full_kl_se"] > 0
    # the logged values are the split of the final model against the frozen base
    ref = measure_models(cb.base_model, model, tok, hf_models.PROMPTS, marker=" A",
                         max_new_tokens=3, n_samples=8)["summary"]
    for k in KEYS:
        assert abs(rows[-1][f"forgetting/{k}"] - ref[k]) < 1e-9, k
    # and the frozen reference is the model before training (not a copy that follows it)
    original, _ = load_causal_lm(base_dir)
    first = measure_models(original, original, tok, hf_models.PROMPTS, marker=" A",
                           max_new_tokens=3, n_samples=2)["summary"]["old_mass_base"]
    assert all(abs(h["forgetting/old_mass_base"] - first) < 1e-6 for h in rows)


def test_trainer_run_logs_forgetting(dirs, tmp_path: Path) -> None:
    model, tok = load_causal_lm(dirs["base"])
    enc = tok(_new_mode_lines())
    ds = datasets.Dataset.from_dict({"input_ids": enc["input_ids"]})
    trainer = transformers.Trainer(
        model=model, args=transformers.TrainingArguments(**_args(tmp_path)), train_dataset=ds,
        data_collator=transformers.DataCollatorForLanguageModeling(tok, mlm=False))
    cb = ForgettingCallback(tok, hf_models.PROMPTS, marker=" A", every_n_steps=2,
                            max_new_tokens=3, n_samples=8).attach(trainer)
    calls = []
    real = cb.base_model  # None until training starts
    assert real is None
    trainer.train()
    base_forward = cb.base_model.forward
    cb.base_model.forward = lambda *a, **k: calls.append(1) or base_forward(*a, **k)
    cb.measure(trainer.model)
    assert calls == []  # the base reference is cached: no base forward pass after the first
    assert cb.base_fn.hits > 0
    _check_logged(trainer.state.log_history, cb, trainer.model, tok, dirs["base"])


def test_trl_sft_run_logs_forgetting(dirs, tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    model, tok = load_causal_lm(dirs["base"])
    ds = datasets.Dataset.from_dict({"text": _new_mode_lines()})
    trainer = trl.SFTTrainer(model=model, args=trl.SFTConfig(**_args(tmp_path), max_length=32),
                             train_dataset=ds, processing_class=tok)
    cb = ForgettingCallback(tok, hf_models.PROMPTS, marker=" A", every_n_steps=2,
                            max_new_tokens=3, n_samples=8)
    cb.attach(trainer)
    trainer.train()
    _check_logged(trainer.state.log_history, cb, trainer.model, tok, dirs["base"])


def test_without_trainer_appends_to_history(dirs) -> None:
    model, tok = load_causal_lm(dirs["base"])
    cb = ForgettingCallback(tok, hf_models.PROMPTS, classifier=r"^ A", every_n_steps=1,
                            max_new_tokens=3, n_samples=4)
    state = transformers.TrainerState()
    state.global_step = 1
    cb.on_train_begin(None, state, None, model=model)
    cb.on_step_end(None, state, None, model=model)
    assert state.log_history[-1]["step"] == 1
    assert abs(state.log_history[-1]["forgetting/full_kl"]) < 1e-9  # the model is its base
    with pytest.raises(ValueError, match="exactly one"):
        ForgettingCallback(tok, hf_models.PROMPTS)


def test_trl_grpo_run_logs_forgetting(dirs, tmp_path: Path) -> None:
    """On-policy RL rewarding the new mode: the callback sees the old mass fall."""
    trl = pytest.importorskip("trl")
    model, tok = load_causal_lm(dirs["base"])
    tok.padding_side = "left"

    def reward(completions, **kw):  # type: ignore[no-untyped-def]
        return [float(c.startswith(" B")) for c in completions]

    args = trl.GRPOConfig(**_args(tmp_path), num_generations=4, max_completion_length=4)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=args, processing_class=tok,
                              train_dataset=datasets.Dataset.from_dict(
                                  {"prompt": hf_models.PROMPTS * 4}))
    cb = ForgettingCallback(tok, hf_models.PROMPTS, marker=" A", every_n_steps=2,
                            max_new_tokens=3, n_samples=8).attach(trainer)
    trainer.train()
    _check_logged(trainer.state.log_history, cb, trainer.model, tok, dirs["base"])


def test_cache_hit_is_the_draw_a_miss_makes(dirs) -> None:
    from forgetlab.lm.callback import CachedLogits
    from forgetlab.lm.hf import HFLogits

    model, tok = load_causal_lm(dirs["base"])
    cached = CachedLogits(HFLogits(model))
    ids = torch.tensor([tok.encode("Q: 12 =")]).repeat(6, 1)
    allow = torch.ones(len(tok), dtype=torch.bool)
    other = allow.clone()
    other[tok.encode(" A")] = False  # differs in one entry: must not share a cache entry
    g1, g2, g3 = (torch.Generator().manual_seed(0) for _ in range(3))
    a = cached.sample_answers(ids, 4, g1, first_allowed=allow)
    b = cached.sample_answers(ids, 4, g2, first_allowed=allow)
    assert torch.equal(a, b) and cached.hits == 1
    assert torch.equal(g1.get_state(), g2.get_state())  # the hit leaves the generator as a miss
    cached.sample_answers(ids, 4, g3, first_allowed=other)
    assert cached.misses == 2
    assert torch.equal(cached(ids), cached(ids)) and cached.hits == 2
    tiny = CachedLogits(HFLogits(model), limit_mb=0.0)  # over budget: recomputed, not stored
    assert torch.equal(tiny(ids), cached(ids)) and tiny.used == 0


def test_a_given_base_model_is_left_as_it_is(dirs) -> None:
    """The callback must not freeze or switch the mode of a base model it was handed (a
    later copy of it would not train)."""
    model, tok = load_causal_lm(dirs["tuned"])
    base, _ = load_causal_lm(dirs["base"])
    base.train()
    cb = ForgettingCallback(tok, hf_models.PROMPTS[:2], marker=" A", base_model=base,
                            max_new_tokens=2, n_samples=2)
    out = cb.measure(model)
    assert out["forgetting/full_kl"] > 0
    assert base.training and all(p.requires_grad for p in base.parameters())
