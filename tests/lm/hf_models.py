"""Tiny local GPT-2 models with a byte-level BPE tokenizer built offline, for the HF tests.

The base is trained briefly on answers ``' A <digits>'`` (old mode, 90 %) and ``' B <digits>'``
(new mode, 10 %); the tuned model is the base after a few SFT steps on new-mode answers only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from tokenizers import ByteLevelBPETokenizer

EOS = "<|endoftext|>"
PROMPTS = ["Q: 12 =", "Q: 907 =", "Q: 55 =", "Q: 3 ="]
CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


def _lines(gen: torch.Generator, k: int, p_old: float) -> list[str]:
    out = []
    for _ in range(k):
        d = "".join(str(int(x)) for x in torch.randint(0, 10, (int(torch.randint(1, 4, (1,),
                                                                          generator=gen)),),
                                                        generator=gen))
        mode = "A" if float(torch.rand(1, generator=gen)) < p_old else "B"
        out.append(f"Q: {d} = {mode} {d[::-1] if mode == 'A' else d}")
    return out


def tokenizer(root: Path) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style) trained on the toy corpus; ' A' and ' B' are tokens."""
    bpe = ByteLevelBPETokenizer()
    corpus = _lines(torch.Generator().manual_seed(0), 400, 0.5)
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=2, special_tokens=[EOS],
                            show_progress=False)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS,
                                               pad_token=EOS)
    tok.chat_template = CHAT
    tok.save_pretrained(root)
    return tok


def _train(model, tok, lines: list[str], steps: int, lr: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = [lines[int(i)] for i in torch.randint(0, len(lines), (32,), generator=gen)]
        enc = tok([b + EOS for b in batch], return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def build(root: Path) -> dict[str, Path]:
    """Save ``base`` and ``tuned`` model directories under ``root``; return their paths."""
    tok = tokenizer(root / "base")
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2,
                                  n_head=2, bos_token_id=tok.eos_token_id,
                                  eos_token_id=tok.eos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # transformers initialises from the global generator
        model = transformers.GPT2LMHeadModel(cfg)
    _train(model, tok, _lines(torch.Generator().manual_seed(1), 2000, 0.9), 150, 3e-3, 2)
    model.save_pretrained(root / "base")
    new = [line for line in _lines(torch.Generator().manual_seed(3), 600, 0.0)]
    _train(model, tok, new, 6, 1e-3, 4)
    model.save_pretrained(root / "tuned")
    tok.save_pretrained(root / "tuned")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    return {"base": root / "base", "tuned": root / "tuned", "prompts": root / "prompts.txt",
            "root": root}
