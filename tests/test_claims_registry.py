"""The claim registry: every entry has a module with a statement and a runner; a broken claim
becomes an ``error`` result instead of stopping the suite."""

from __future__ import annotations

import importlib

from forgetlab.claims import REGISTRY, ClaimSpec, Profile, run_claim


def test_every_registered_claim_has_a_module_statement_and_runner() -> None:
    for spec in REGISTRY:
        module = importlib.import_module(f"forgetlab.claims.{spec.module}")
        assert isinstance(module.STATEMENT, str) and len(module.STATEMENT) > 40, spec.claim_id
        assert callable(module.run), spec.claim_id
        assert module.__doc__ and "check" in module.__doc__.lower(), spec.claim_id


def test_a_broken_claim_is_reported_as_an_error() -> None:
    spec = ClaimSpec("CX", "missing", "no_such_module")
    result = run_claim(spec, Profile("quick"), 0)
    assert result.status == "error" and not result.passed
    assert "ModuleNotFoundError" in (result.error or "")
    assert result.to_dict()["status"] == "error"
