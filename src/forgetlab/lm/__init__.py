"""Mass forgetting and old-component drift on causal language models (needs the ``lm`` extra).

Modules: :mod:`~forgetlab.lm.model` (a small character-level transformer),
:mod:`~forgetlab.lm.corpus` (the synthetic two-mode language), :mod:`~forgetlab.lm.split`
(the exact split of KL(pi_0 || pi)), :mod:`~forgetlab.lm.losses` (pure losses and advantages),
:mod:`~forgetlab.lm.methods` (post-training methods), :mod:`~forgetlab.lm.target` (reward kinds
and the explicit two-mode target p*), :mod:`~forgetlab.lm.train` (pre-training
cache and loop), :mod:`~forgetlab.lm.benchmark` (:func:`run_benchmark`), :mod:`~forgetlab.lm.hf`
(local Hugging Face models for ``forgetlab lm measure``), :mod:`~forgetlab.lm.callback`
(:class:`ForgettingCallback`: forgetting logged during Trainer and TRL runs). Importing this
package does not import torch; the submodules do.
"""

from __future__ import annotations


def require_torch() -> None:
    """ValueError with one line of advice if torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise ValueError(
            "the lm commands need PyTorch: pip install 'forgetlab[lm]'") from err


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """``forgetlab.lm.ForgettingCallback`` on first use (imports torch and transformers)."""
    if name == "ForgettingCallback":
        from forgetlab.lm.callback import ForgettingCallback

        return ForgettingCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
