"""The reproduction suite: every claim of the theory checked, theory beside simulation.

One module per claim (``c1_definitions`` ... ``c9_phase``, ``chen2025``, ``lm``); each exposes
``STATEMENT`` and ``run(ctx) -> ClaimResult``. :data:`REGISTRY` lists them in report order.
"""

from forgetlab.claims.base import (
    REGISTRY,
    Check,
    ClaimContext,
    ClaimResult,
    ClaimSpec,
    Profile,
    claim_ids,
    get_profile,
    run_claim,
    select,
)

__all__ = [
    "REGISTRY",
    "Check",
    "ClaimContext",
    "ClaimResult",
    "ClaimSpec",
    "Profile",
    "claim_ids",
    "get_profile",
    "run_claim",
    "select",
]
