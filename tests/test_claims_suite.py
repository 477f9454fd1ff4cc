"""Every claim of the quick reproduction run: its status and the shape of its evidence.

The run itself happens once per session (``reproduce_run.quick_run``); each claim's numbers,
tolerances and their sources are in ``claims.json``, and a failing claim fails here with them.
"""

from __future__ import annotations

import importlib.util

import pytest

from forgetlab.claims import claim_ids
from forgetlab.claims.base import TOLERANCE_SOURCES
from reproduce_run import quick_run

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _failing(claim: dict) -> str:
    bad = [c for c in claim["checks"] if not c["passed"]]
    lines = [f"{c['name']}: predicted {c['predicted']}, measured {c['measured']}, "
             f"tolerance {c['tolerance']} ({c['tolerance_source']})" for c in bad]
    return "\n".join([claim["status"], str(claim.get("error")), *lines, *claim["notes"][-3:]])


@pytest.mark.parametrize("claim_id", claim_ids())
def test_claim_passes(claim_id: str) -> None:
    claim = quick_run().claim(claim_id)
    if claim_id == "LM":  # pre-training takes minutes: the LM section runs in the full profile
        notes = " ".join(claim["notes"])
        assert claim["status"] == "skipped"
        assert ("quick profile" in notes) if HAS_TORCH else ("PyTorch" in notes)
        return
    assert claim["status"] == "passed", _failing(claim)
    assert claim["checks"], "a claim must show at least one check"
    for check in claim["checks"]:
        assert check["tolerance_source"] in TOLERANCE_SOURCES
        assert check["tolerance"] >= 0.0


def test_every_claim_has_a_figure_and_a_statement() -> None:
    for claim in quick_run().claims():
        assert claim["statement"], claim["claim_id"]
        if claim["status"] != "skipped":
            assert any(f.endswith(".png") for f in claim["figures"]), claim["claim_id"]
