"""The reproduction suite: every claim of the theory checked, theory beside simulation.

One module per claim (``c1_definitions`` ... ``c9_phase``, ``chen2025``, ``lm``); each exposes
``STATEMENT`` and ``run(ctx) -> ClaimResult``. :data:`REGISTRY` lists them in report order.
A claim computes (checks with their provenance, figure data from
:mod:`forgetlab.claims.figures`); :mod:`forgetlab.report` draws. Brute-force references that
share no code with the engine are in :mod:`forgetlab.claims.reference`.
"""

from forgetlab.claims.base import (
    PROVENANCE,
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
from forgetlab.claims.figures import FigureData, Panel

__all__ = [
    "PROVENANCE",
    "REGISTRY",
    "FigureData",
    "Panel",
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
