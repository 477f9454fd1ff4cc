"""The Chen et al. (2025, arXiv:2510.18874) toy, reproduced: a 1-D two-mode (or single-mode)
learner with unequal learnable variances trained by forward KL (SFT) or their reverse-KL (RL)
estimator, with their per-mode overlap metrics, plus descent on the exact reverse KL.

Importing the package registers the presets "chen2025-two-mode" and "chen2025-single-mode" (the
published arithmetic, its 1e-12 floors included) and their "-clean" variants (no floors) with
:mod:`forgetlab.presets`, so ``forgetlab simulate --preset chen2025-two-mode`` runs them.
:mod:`forgetlab.chen2025.reference` is the plain per-seed loop of the published arithmetic that
the engine is tested and benchmarked against."""

from forgetlab.chen2025.exact import reverse_kl_and_grad
from forgetlab.chen2025.overlap import overlap_accuracy
from forgetlab.chen2025.preset import register_presets
from forgetlab.chen2025.run import (
    PRESETS,
    ChenResult,
    ChenSummary,
    chen2025_cli_summary,
    plot_trajectories,
    report,
    run_chen2025,
    run_preset,
    summary_table,
)

register_presets()

__all__ = [
    "PRESETS",
    "ChenResult",
    "ChenSummary",
    "chen2025_cli_summary",
    "overlap_accuracy",
    "plot_trajectories",
    "report",
    "reverse_kl_and_grad",
    "run_chen2025",
    "run_preset",
    "summary_table",
]
