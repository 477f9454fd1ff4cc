"""``forgetlab lm measure`` on tiny GPT-2 models with a byte-level BPE tokenizer built locally.

The exact side of each check is the marker split by enumeration of the answer space
(:func:`forgetlab.lm.split.marker_split` with ``exact=True``), computed separately from the
command's sampled estimates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import hf_models  # noqa: E402  (tests/lm is on sys.path under pytest)
from click.testing import CliRunner  # noqa: E402

from forgetlab.cli import main  # noqa: E402
from forgetlab.lm.hf import load_causal_lm, logits_fn, measure_split  # noqa: E402
from forgetlab.lm.sampling import sample_answers  # noqa: E402
from forgetlab.lm.split import marker_split  # noqa: E402

pytestmark = pytest.mark.lm


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hf_models.build(tmp_path_factory.mktemp("hf"))


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["lm", "measure", *args])
    return res.exit_code, res.stdout, res.stderr


def _common(dirs: dict[str, Path], base: str = "base", tuned: str = "tuned") -> list[str]:
    return ["--base", str(dirs[base]), "--tuned", str(dirs[tuned]), "--prompts",
            str(dirs["prompts"]), "--device", "cpu", "--threads", "1"]


def _exact(dirs: dict[str, Path], base: str, tuned: str, answer_len: int):
    b, tok = load_causal_lm(dirs[base])
    t, _ = load_causal_lm(dirs[tuned])
    marker = tok.encode(" A")
    return [marker_split(logits_fn(b), logits_fn(t), torch.tensor([tok.encode(p)]), marker,
                         answer_len, exact=True, vocab_size=len(tok), eos_id=tok.eos_token_id)
            for p in hf_models.PROMPTS]


def test_marker_split_matches_enumeration(dirs) -> None:
    code, out, err = _run(*_common(dirs), "--marker", " A", "--max-new-tokens", "2",
                          "--samples", "200", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["warnings"] == [] and len(report["marker_tokens"]) == 1
    assert [p["prompt"] for p in report["per_prompt"]] == hf_models.PROMPTS
    for row, ex in zip(report["per_prompt"], _exact(dirs, "base", "tuned", 2), strict=True):
        assert abs(row["old_mass_base"] - float(ex.old_mass_base[0])) < 1e-6
        assert abs(row["old_mass"] - float(ex.old_mass[0])) < 1e-6
        assert abs(row["full_kl"] - float(ex.full_kl[0])) < 4 * row["full_kl_se"] + 1e-9
    assert report["summary"]["old_mass_base"] > 0.5 > report["summary"]["old_mass"] - 0.3


def test_untokenised_marker_warns_with_the_right_spelling(dirs) -> None:
    code, _, err = _run(*_common(dirs), "--marker", "A", "--max-new-tokens", "3")
    assert code == 0
    assert "below 0.001" in err and "did you mean --marker ' A'" in err


@pytest.mark.parametrize("swap", [False, True])
def test_classifier_agrees_with_marker_both_ways(dirs, swap) -> None:
    """A classifier that reads the marker (no token of this vocabulary other than ' A' starts
    with the text ' A') agrees with the exact marker split within 3 s.e."""
    base, tuned = ("tuned", "base") if swap else ("base", "tuned")
    report = measure_split(dirs[base], dirs[tuned], dirs["prompts"], classifier=r"^ A",
                           max_new_tokens=2, n_samples=300, seed=1)
    for row, ex in zip(report["per_prompt"], _exact(dirs, base, tuned, 2), strict=True):
        for key, se in (("old_mass", "old_mass_se"), ("mass_kl", "mass_kl_se"),
                        ("full_kl", "full_kl_se")):
            assert abs(row[key] - float(getattr(ex, key)[0])) < 3 * row[se] + 1e-3, (key, row)
    assert report["mode"] == "classifier" and report["summary"]["mass_kl_se"] > 0


def test_callable_classifier_and_target_se(dirs) -> None:
    report = measure_split(dirs["base"], dirs["tuned"], dirs["prompts"],
                           classifier=lambda text: text.startswith(" A"), max_new_tokens=3,
                           n_samples=8, target_se=0.06, max_samples=512)
    rows = report["per_prompt"]
    assert max(r["samples"] for r in rows) > 8
    assert all(r["full_kl_se"] <= 0.06 or r["samples"] >= 512 for r in rows)
    assert {"ess_old", "ess_new", "overlap"} <= rows[0].keys()


def test_few_samples_warn_about_effective_sample_size(dirs) -> None:
    code, out, err = _run(*_common(dirs), "--classifier", r"^ B", "--samples", "4",
                          "--max-new-tokens", "3")
    assert code == 0 and "effective samples" in err


def test_table_json_file_and_plot(dirs, tmp_path: Path) -> None:
    code, out, err = _run(*_common(dirs), "--marker", " A", "--max-new-tokens", "3",
                          "--samples", "8", "--out", str(tmp_path / "r.json"), "--plot",
                          str(tmp_path / "p.png"))
    assert code == 0, err
    assert "old-component drift KL" in out and "±" in out and "mass KL" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["per_prompt"]) == len(hf_models.PROMPTS)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_chat_template_and_jsonl_messages(dirs, tmp_path: Path) -> None:
    prompts = tmp_path / "chat.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "Q: 12 ="}]})
                       + "\n" + json.dumps("Q: 3 =") + "\n")
    code, out, err = _run("--base", str(dirs["base"]), "--tuned", str(dirs["tuned"]),
                          "--prompts", str(prompts), "--marker", " A", "--chat-template",
                          "--samples", "4", "--max-new-tokens", "2", "--json")
    assert code == 0, err
    texts = [r["prompt"] for r in json.loads(out)["per_prompt"]]
    assert texts == ["<user>Q: 12 =<assistant>", "<user>Q: 3 =<assistant>"]


def test_kv_cache_sampler_draws_what_the_plain_sampler_draws(dirs) -> None:
    """Consistency: the KV-cached sampler against the uncached one, same seed."""
    model, tok = load_causal_lm(dirs["base"])
    fn = logits_fn(model, batch_size=64)
    ids = torch.tensor([tok.encode("Q: 12 =")]).repeat(16, 1)
    allowed = torch.ones(len(tok), dtype=torch.bool)
    allowed[tok.encode(" A")] = False
    for kw in ({}, {"first_allowed": allowed}, {"first": torch.full((16,), 5)}):
        a = fn.sample_answers(ids, 5, torch.Generator().manual_seed(0), **kw)
        b = sample_answers(lambda x: model(input_ids=x).logits, ids, 5,
                           torch.Generator().manual_seed(0), **kw)
        assert torch.equal(a, b), kw


@pytest.mark.parametrize(("args", "message"), [
    (["--base", "missing-dir"], "base: missing-dir is not a directory"),
    (["--marker", ""], "marker: '' encodes to no token"),
    (["--prompts", "missing.txt"], "prompts: missing.txt is not a file"),
    (["--classifier", "("], "classifier"),
    (["--max-new-tokens", "40"], "exceeds the model's context of 32 tokens"),
    (["--samples", "1"], "samples: must be >= 2"),
    (["--dtype", "int8"], "dtype: 'int8' is not one of"),
    (["--device", "cuda:7"], "device:"),
    (["--plot", "fig.txt"], "plot:"),
    (["--chat-template", "--tuned"], "chat-template: the tokenizer has no chat template"),
])
def test_bad_input_is_one_line_exit_2(dirs, args, message, tmp_path: Path) -> None:
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    opts = {"--base": str(dirs["base"]), "--tuned": str(dirs["tuned"]),
            "--prompts": str(dirs["prompts"]), "--marker": " A"}
    flags = []
    if args[0] == "--classifier":
        opts.pop("--marker")
    if args[0] == "--chat-template":
        flags = ["--chat-template"]
        plain = tmp_path / "plain"
        plain.mkdir()
        for f in dirs["base"].iterdir():
            (plain / f.name).write_bytes(f.read_bytes())
        cfg = json.loads((plain / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
        (plain / "chat_template.jinja").unlink(missing_ok=True)
        opts["--base"] = opts["--tuned"] = str(plain)
    else:
        opts[args[0]] = args[1]
    code, out, err = _run(*[x for kv in opts.items() for x in kv], *flags)
    assert code == 2, out
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_not_a_model_dir(tmp_path: Path, dirs) -> None:
    code, _, err = _run("--base", str(tmp_path), "--tuned", str(dirs["tuned"]), "--prompts",
                        str(dirs["prompts"]), "--marker", " A")
    assert code == 2 and "not a Hugging Face model directory" in err
