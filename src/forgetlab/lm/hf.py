"""Local Hugging Face causal LMs for ``forgetlab lm measure`` (no hub access at run time).

:func:`measure_split` loads a base and a post-trained model directory with ``transformers``
(``local_files_only``, hub offline), reads the prompts, and returns the split of
:mod:`forgetlab.lm.split` per prompt and averaged, with a marker token (exact old mass) or a
regular-expression classifier (importance-weighted estimates). An answer is at most
``max_new_tokens`` tokens and ends at the tokenizer's EOS token.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from forgetlab.lm.split import Split, classifier_split, marker_split


def load_causal_lm(path: Path, field: str = "model") -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory; ValueError naming ``field`` if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{field}: {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ValueError(f"{field}: {path} is not a Hugging Face model directory (no config.json)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as err:
        raise ValueError("lm measure needs transformers: pip install 'forgetlab[lm]'") from err
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{field}: cannot load a causal LM from {path}: {first}") from err
    model.eval()
    return model, tokenizer


def read_prompts(path: Path) -> list[str]:
    """Prompts from a text file (one per non-empty line) or a JSON list of strings."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompts: {path} is not a file")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            prompts = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"prompts: {path} is not a valid JSON list: {err}") from err
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts: {path} must be a JSON list of strings")
    else:
        prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompts: {path} holds no prompt")
    return prompts


def marker_token_id(tokenizer: Any, marker: str) -> int:
    """The id of ``marker``; ValueError unless it is exactly one token."""
    ids = tokenizer.encode(marker, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"marker: {marker!r} is {len(ids)} tokens for this tokenizer, not one")
    return int(ids[0])


def logits_fn(model: Any) -> Any:
    """ids ``[B, T]`` -> logits ``[B, T, V]`` for a transformers causal LM."""
    return lambda ids: model(input_ids=ids).logits


def _concat(splits: list[Split]) -> Split:
    return Split(**{k: torch.cat([getattr(s, k) for s in splits])
                    for k in Split.__dataclass_fields__})


@torch.no_grad()
def measure_split(
    base_dir: Path, tuned_dir: Path, prompts_file: Path, *, marker: str | None = None,
    classifier: str | None = None, max_new_tokens: int = 16, n_samples: int = 32, seed: int = 0,
) -> dict[str, Any]:
    """The split of KL(base || tuned) on the prompts: ``{"mode", "summary", "per_prompt"}``.

    Exactly one of ``marker`` (old iff the answer's first token is the marker) and
    ``classifier`` (old iff ``re.search(classifier, answer_text)``) must be given.
    """
    if (marker is None) == (classifier is None):
        raise ValueError("give exactly one of marker and classifier")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if n_samples < 2:
        raise ValueError(f"samples must be >= 2, got {n_samples}")
    pattern = None
    if classifier is not None:
        try:
            pattern = re.compile(classifier)
        except re.error as err:
            raise ValueError(
                f"classifier: {classifier!r} is not a regular expression: {err}") from err
    prompts = read_prompts(prompts_file)
    base, tok = load_causal_lm(base_dir, "base")
    tuned, tok_tuned = load_causal_lm(tuned_dir, "tuned")
    if tok.get_vocab() != tok_tuned.get_vocab():
        raise ValueError("tuned: its tokenizer differs from the base model's")
    eos = tok.eos_token_id
    gen = torch.Generator().manual_seed(seed)
    base_fn, tuned_fn = logits_fn(base), logits_fn(tuned)
    splits = []
    if marker is not None:
        marker_id = marker_token_id(tok, marker)
    for prompt in prompts:
        ids = torch.tensor([tok.encode(prompt)], dtype=torch.long)
        if ids.shape[1] == 0:
            raise ValueError(f"prompts: {prompt!r} encodes to no token")
        if pattern is None:
            splits.append(marker_split(base_fn, tuned_fn, ids, marker_id, max_new_tokens,
                                       n_samples=n_samples, gen=gen, eos_id=eos))
        else:
            def classify(answers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                texts = [tok.decode(a[m], skip_special_tokens=True)
                         for a, m in zip(answers, mask, strict=True)]
                return torch.tensor([bool(pattern.search(t)) for t in texts])

            splits.append(classifier_split(base_fn, tuned_fn, ids, classify, max_new_tokens,
                                           n_samples=n_samples, gen=gen, eos_id=eos))
    split = _concat(splits)
    per_prompt = [
        {"prompt": p, "old_mass_base": float(split.old_mass_base[i]),
         "old_mass": float(split.old_mass[i]), "mass_kl": float(split.mass_kl[i]),
         "old_drift_kl": float(split.old_drift_kl[i]),
         "new_change_kl": float(split.new_change_kl[i]), "full_kl": float(split.full_kl[i])}
        for i, p in enumerate(prompts)]
    return {"mode": "marker" if marker is not None else "classifier",
            "marker": marker, "classifier": classifier, "summary": split.summary(),
            "per_prompt": per_prompt}
