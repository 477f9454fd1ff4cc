"""The Chen et al. (2025, arXiv:2510.18874) toy, reproduced: a 1-D two-mode (or single-mode)
learner with unequal learnable variances trained by forward KL (SFT) or their reverse-KL (RL)
estimator, with their per-mode overlap metrics on a grid, plus descent on the exact reverse KL.

:mod:`~forgetlab.chen2025.model` holds the gradients, :mod:`~forgetlab.chen2025.overlap` the
metric, :mod:`~forgetlab.chen2025.preset` the paper's settings ("chen2025-two-mode" and
"chen2025-single-mode", the published arithmetic with its 1e-12 floors, and their "-clean"
variants; :mod:`forgetlab.presets` lists them) and :mod:`~forgetlab.chen2025.run` the runs.
:mod:`forgetlab.chen2025.reference` is the plain per-seed loop of the published arithmetic that
the engine is tested and benchmarked against. ``forgetlab simulate --preset chen2025-...``
prints their table (:mod:`forgetlab.cli.simulate`)."""

from forgetlab.chen2025.exact import reverse_kl_and_grad
from forgetlab.chen2025.overlap import grid_overlap_accuracy
from forgetlab.chen2025.preset import DEFAULT_SEEDS, PRESETS, ChenPreset
from forgetlab.chen2025.run import ChenResult, ChenSummary, run_chen2025, run_preset

__all__ = [
    "DEFAULT_SEEDS",
    "PRESETS",
    "ChenPreset",
    "ChenResult",
    "ChenSummary",
    "grid_overlap_accuracy",
    "reverse_kl_and_grad",
    "run_chen2025",
    "run_preset",
]
