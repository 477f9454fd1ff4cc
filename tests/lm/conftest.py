"""Shared fixtures for the LM tests: tiny random models in float64."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from forgetlab.lm.model import GPT, GPTConfig  # noqa: E402


def tiny_gpt(vocab: int, seed: int, scale: float = 3.0) -> GPT:
    """A random 1-layer GPT in float64 whose weights are scaled up (peaked distributions)."""
    cfg = GPTConfig(vocab_size=vocab, block_size=12, n_layer=1, n_head=2, n_embd=16)
    model = GPT(cfg, torch.Generator().manual_seed(seed)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    model.eval()
    return model


@pytest.fixture
def model_pair() -> tuple[GPT, GPT]:
    return tiny_gpt(7, 1), tiny_gpt(7, 2)
