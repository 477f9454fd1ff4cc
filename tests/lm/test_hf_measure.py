"""``forgetlab lm measure`` on tiny randomly initialised Llama models saved locally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from click.testing import CliRunner  # noqa: E402

from forgetlab.cli import main  # noqa: E402
from forgetlab.lm.hf import load_causal_lm, logits_fn  # noqa: E402
from forgetlab.lm.split import marker_split  # noqa: E402

pytestmark = pytest.mark.lm

CHARS = list("0123456789=AB")


def _save_model(path: Path, seed: int, base: Path | None = None) -> None:
    """A char-level tokenizer and a 1-layer Llama; ``base`` given: its weights plus noise."""
    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(CHARS)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(
        tokenizers.Regex("."), behavior="isolated")
    tok.decoder = tokenizers.decoders.Fuse()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    fast.save_pretrained(path)
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
        bos_token_id=None, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # transformers initialises from the global generator
        model = transformers.LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if base is not None:
            model.load_state_dict(transformers.LlamaForCausalLM.from_pretrained(base).state_dict())
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * (0.5 if base is not None else 1.0))
    model.save_pretrained(path)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    _save_model(root / "base", 1)
    _save_model(root / "tuned", 2, base=root / "base")
    (root / "prompts.txt").write_text("12=\n907=\n\n55=\n")
    return {"base": root / "base", "tuned": root / "tuned", "prompts": root / "prompts.txt"}


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["lm", "measure", *args])
    return res.exit_code, res.stdout if res.exit_code == 0 else res.output


def test_measure_marker_matches_exact_split(dirs: dict[str, Path]) -> None:
    code, out = _run("--base", str(dirs["base"]), "--tuned", str(dirs["tuned"]), "--prompts",
                     str(dirs["prompts"]), "--marker", "A", "--max-new-tokens", "2",
                     "--samples", "300", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert [p["prompt"] for p in report["per_prompt"]] == ["12=", "907=", "55="]
    base, tok = load_causal_lm(dirs["base"])
    tuned, _ = load_causal_lm(dirs["tuned"])
    marker = tok.encode("A", add_special_tokens=False)[0]
    for row in report["per_prompt"]:
        ids = torch.tensor([tok.encode(row["prompt"])])
        exact = marker_split(logits_fn(base), logits_fn(tuned), ids, marker, 2, exact=True,
                             vocab_size=len(tok), eos_id=tok.eos_token_id)
        assert abs(row["old_mass_base"] - float(exact.old_mass_base[0])) < 1e-6
        assert abs(row["old_mass"] - float(exact.old_mass[0])) < 1e-6
        assert abs(row["full_kl"] - float(exact.full_kl[0])) < 0.15 * float(exact.full_kl[0])
    s = report["summary"]
    total = s["mass_kl"] + sum(
        r["old_mass_base"] * r["old_drift_kl"] + (1 - r["old_mass_base"]) * r["new_change_kl"]
        for r in report["per_prompt"]) / 3
    assert abs(total - s["full_kl"]) < 1e-9 and s["old_drift_kl_se"] > 0


def test_measure_classifier_and_table(dirs: dict[str, Path]) -> None:
    code, out = _run("--base", str(dirs["base"]), "--tuned", str(dirs["tuned"]), "--prompts",
                     str(dirs["prompts"]), "--classifier", "^A", "--max-new-tokens", "3",
                     "--samples", "40")
    assert code == 0, out
    assert "old-component drift KL" in out and "±" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--base", "missing-dir"], "base: missing-dir is not a directory"),
    (["--marker", "AB"], "marker: 'AB' is 2 tokens"),
    (["--prompts", "missing.txt"], "prompts: missing.txt is not a file"),
    (["--classifier", "("], "classifier"),
])
def test_measure_bad_input_is_one_line_exit_2(
    dirs: dict[str, Path], args: list[str], message: str, tmp_path: Path
) -> None:
    opts = {"--base": str(dirs["base"]), "--tuned": str(dirs["tuned"]),
            "--prompts": str(dirs["prompts"]), "--marker": "A"}
    if args[0] == "--classifier":
        opts.pop("--marker")
    opts[args[0]] = args[1]
    code, out = _run(*[x for kv in opts.items() for x in kv])
    assert code == 2
    assert message in out and out.count("\n") == 1


def test_not_a_model_dir(tmp_path: Path, dirs: dict[str, Path]) -> None:
    code, out = _run("--base", str(tmp_path), "--tuned", str(dirs["tuned"]), "--prompts",
                     str(dirs["prompts"]), "--marker", "A")
    assert code == 2 and "not a Hugging Face model directory" in out
