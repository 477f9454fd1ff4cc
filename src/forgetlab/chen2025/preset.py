"""The Chen et al. presets: the paper's settings, with the published arithmetic (1e-12 floors)
or without the floors (``-clean``). :mod:`forgetlab.presets` lists them beside the mixture
presets; ``forgetlab simulate --preset chen2025-...`` runs them."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SEEDS = 32


@dataclass(frozen=True)
class ChenPreset:
    """The paper's settings for one preset: the variant, its iteration count, the (method,
    learning rate) runs, and whether the published floors (1e-12, model docstring) are used."""

    variant: str
    steps: int
    runs: tuple[tuple[str, float], ...]
    floors: bool
    description: str


_TWO_RUNS = (("forward_kl", 0.15), ("forward_kl", 0.01), ("reverse_kl", 0.01))
_SINGLE_RUNS = (("forward_kl", 0.05), ("reverse_kl", 0.005))
#: ``chen2025-*`` reproduce the published arithmetic, floors included; ``-clean`` drop the floors.
PRESETS: dict[str, ChenPreset] = {
    "chen2025-two-mode": ChenPreset(
        "two-mode", 200, _TWO_RUNS, True,
        "Chen et al. 2025 two-mode toy, published arithmetic (1e-12 floors): SFT (lr 0.15, "
        "0.01) vs RL (lr 0.01), drop and gain at gain >= 0.9"),
    "chen2025-single-mode": ChenPreset(
        "single-mode", 1000, _SINGLE_RUNS, True,
        "Chen et al. 2025 single-mode toy, published arithmetic (1e-12 floors): SFT (lr 0.05) "
        "vs RL (lr 0.005), drop and gain at gain >= 0.9"),
    "chen2025-two-mode-clean": ChenPreset(
        "two-mode", 200, _TWO_RUNS, False, "chen2025-two-mode without the 1e-12 floors"),
    "chen2025-single-mode-clean": ChenPreset(
        "single-mode", 1000, _SINGLE_RUNS, False,
        "chen2025-single-mode without the 1e-12 floors"),
}


def paper_settings(variant: str, method: str) -> tuple[float, int]:
    """(learning rate, steps) of the paper for ``method`` on ``variant``: the first run of that
    method in the variant's published preset; the exact reverse KL takes their RL rate."""
    preset = next(p for p in PRESETS.values() if p.variant == variant and p.floors)
    wanted = "reverse_kl" if method == "exact_reverse_kl" else method
    return next(lr for m, lr in preset.runs if m == wanted), preset.steps
