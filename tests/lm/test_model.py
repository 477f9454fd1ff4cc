"""The small causal transformer: shapes, causality, determinism, parameter count, initialisation,
the forward pass against a direct re-implementation in float64 (explicit mask and softmax), and
the backward pass against central finite differences."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from forgetlab.lm.model import GPT, GPTConfig  # noqa: E402

pytestmark = pytest.mark.lm

MICRO = GPTConfig(vocab_size=18, block_size=10, n_layer=2, n_head=2, n_embd=16)


def _ids(shape: tuple[int, int], seed: int = 1, vocab: int = 18) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _model(seed: int = 0, cfg: GPTConfig = MICRO) -> GPT:
    return GPT(cfg, torch.Generator().manual_seed(seed)).double().eval()


def test_shapes_and_the_longest_sequence() -> None:
    model = _model()
    assert model(_ids((3, 7))).shape == (3, 7, 18)
    assert model(_ids((2, 10))).shape == (2, 10, 18)
    with pytest.raises(ValueError, match="sequence length 11 exceeds block_size 10"):
        model(_ids((1, 11)))


def test_model_is_causal() -> None:
    model = _model()
    ids = _ids((2, 8))
    changed = ids.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 18
    a, b = model(ids), model(changed)
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_initialisation_is_determined_by_the_generator() -> None:
    a, b, c = _model(3), _model(3), _model(4)
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        if p.dim() == 2:
            assert not torch.equal(p, r), name
    default, seeded = GPT(MICRO), GPT(MICRO, torch.Generator().manual_seed(0))
    assert torch.equal(default.wte.weight, seeded.wte.weight)


def test_parameter_count_and_weight_tying() -> None:
    """V E + T E (embeddings, head tied) + per block 2 * 2E (norms) + (3E^2 + 3E) + (E^2 + E)
    (attention) + (4E^2 + 4E) + (4E^2 + E) (MLP), + 2E (final norm)."""
    v, t, n, e = 18, 10, 2, 16
    per_block = 4 * e + 3 * e * e + 3 * e + e * e + e + 4 * e * e + 4 * e + 4 * e * e + e
    model = _model()
    assert model.num_params() == v * e + t * e + n * per_block + 2 * e
    assert model.head.weight is model.wte.weight


def test_initial_weights_follow_the_stated_scales() -> None:
    """N(0, 0.02^2); residual projections N(0, (0.02 / sqrt(2 n_layer))^2); biases 0; gains 1."""
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=4, n_head=4, n_embd=64)
    model = GPT(cfg).requires_grad_(False)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0), name
        elif p.dim() == 1:
            assert torch.all(p == 1), name
        else:
            want = 0.02 / math.sqrt(8) if name.endswith("proj.weight") else 0.02
            assert abs(float(p.std()) / want - 1) < 0.08, name  # >= 1024 draws: se < 2.3 %
            assert abs(float(p.mean())) < 4 * want / math.sqrt(p.numel()), name


def _reference_forward(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The stated network written out: explicit causal mask, softmax(q k^T / sqrt(d_h)) v per
    head, layer norm (x - mean) / sqrt(var + 1e-5) g + b, the exact (erf) GELU, tied head."""
    def ln(x, mod):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * mod.weight + mod.bias

    def gelu(x):
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))

    b, t = idx.shape
    e, h = model.config.n_embd, model.config.n_head
    x = model.wte.weight[idx] + model.wpe.weight[:t]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for blk in model.blocks:
        z = ln(x, blk.ln_1) @ blk.attn.qkv.weight.T + blk.attn.qkv.bias
        heads = []
        for k in range(h):
            sl = slice(k * e // h, (k + 1) * e // h)
            q, kk, v = z[..., :e][..., sl], z[..., e:2 * e][..., sl], z[..., 2 * e:][..., sl]
            att = q @ kk.transpose(-1, -2) / math.sqrt(e // h)
            att = torch.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
            heads.append(att @ v)
        x = x + torch.cat(heads, -1) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        y = gelu(ln(x, blk.ln_2) @ blk.mlp.fc.weight.T + blk.mlp.fc.bias)
        x = x + y @ blk.mlp.proj.weight.T + blk.mlp.proj.bias
    return ln(x, model.ln_f) @ model.wte.weight.T


def test_forward_matches_a_direct_implementation() -> None:
    model = _model(5).requires_grad_(False)
    gen = torch.Generator().manual_seed(6)
    for p in model.parameters():  # leave the initialisation: every norm and bias distinct
        p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    idx = _ids((3, 9), seed=7)
    got, ref = model(idx), _reference_forward(model, idx)
    assert float(ref.std()) > 0.5
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_gradient_matches_central_differences() -> None:
    """d/dw of the next-token cross-entropy for a few entries of every weight matrix."""
    cfg = GPTConfig(vocab_size=7, block_size=6, n_layer=1, n_head=2, n_embd=8)
    model = _model(8, cfg)
    idx = _ids((2, 6), seed=9, vocab=7)

    def loss() -> torch.Tensor:
        logits = model(idx[:, :-1])
        return F.cross_entropy(logits.reshape(-1, 7), idx[:, 1:].reshape(-1))

    model.zero_grad()
    loss().backward()
    gen, h = torch.Generator().manual_seed(10), 1e-6
    for name, p in model.named_parameters():
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in torch.randint(0, p.numel(), (3,), generator=gen).tolist():
            with torch.no_grad():
                old = float(flat[i])
                flat[i] = old + h
                up = float(loss())
                flat[i] = old - h
                down = float(loss())
                flat[i] = old
            assert abs(float(grad[i]) - (up - down) / (2 * h)) < 1e-7, (name, i)


@pytest.mark.parametrize("kwargs,match", [
    ({"vocab_size": 0}, r"GPTConfig.vocab_size must be >= 1, got 0"),
    ({"vocab_size": 5, "n_layer": 0}, r"GPTConfig.n_layer must be >= 1"),
    ({"vocab_size": 5, "n_embd": 10, "n_head": 4},
     r"GPTConfig.n_embd \(10\) must be divisible by n_head \(4\)"),
])
def test_bad_configurations_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_digest_is_a_stable_key_of_the_configuration() -> None:
    same = GPTConfig(vocab_size=18, block_size=10, n_layer=2, n_head=2, n_embd=16)
    assert MICRO.digest() == same.digest()
    assert len(MICRO.digest()) == 16 and int(MICRO.digest(), 16) >= 0
    others = [GPTConfig(vocab_size=19, block_size=10, n_layer=2, n_head=2, n_embd=16),
              GPTConfig(vocab_size=18, block_size=10, n_layer=2, n_head=4, n_embd=16)]
    assert len({MICRO.digest(), *(c.digest() for c in others)}) == 3
