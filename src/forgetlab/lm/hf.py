"""Hugging Face causal LMs for ``forgetlab lm measure`` and the training callback.

:func:`measure_split` loads a base and a post-trained model directory with ``transformers``
(``local_files_only``, hub offline) and calls :func:`split_models`, which splits
KL(base || tuned) per prompt (:mod:`forgetlab.lm.split`) with

* a **marker** (old iff the answer starts with the marker's tokens; exact old mass). The marker
  is tokenised in context (the tokens that ``prompt + marker`` adds to ``prompt``), so a
  tokenizer that merges a leading space or a word-start symbol is handled; when the base old
  mass is below 1e-3 the report warns and names the spelling with the largest base old mass
  (for byte-level BPE usually ``' A'`` rather than ``'A'``);
* a **classifier**: a regular expression (``re.search`` on the decoded answer) or any Python
  callable ``str -> bool``, with the two-sided estimator (samples of both models).

Prompts are strings or chat messages (JSONL); with ``chat_template`` or for messages they are
rendered with the tokenizer's chat template. Prompts of equal token length run as one batch
(no padding, so batching does not change any number); forward passes are split into chunks of
``batch_size`` rows; sampling uses the model's KV cache. An answer is at most
``max_new_tokens`` tokens and ends at the tokenizer's EOS token; prompt plus answer must fit in
the model's context.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forgetlab.lm.split import ESS_MIN, Split, classifier_split, marker_split

Prompt = str | list[dict[str, str]]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}
LOW_MASS = 1e-3


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; otherwise the named device (ValueError if
    it is not available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: {device!r} is not a torch device (auto, cpu, cuda)") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere; or one of :data:`DTYPES`."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype: {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_causal_lm(path: Path, field: str = "model", *, device: str = "cpu",
                   dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory; ValueError naming ``field`` if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{field}: {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ValueError(f"{field}: {path} is not a Hugging Face model directory (no config.json)")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as err:
        raise ValueError("lm measure needs transformers: pip install 'forgetlab[lm]'") from err
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                     dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{field}: cannot load a causal LM from {path}: {first}") from err
    model = model.to(dev)  # type: ignore[arg-type]
    model.eval()
    return model, tokenizer


def read_prompts(path: Path) -> list[Prompt]:
    """Prompts from a text file (one per non-empty line), a JSON list (of strings or of
    message lists), or JSONL (``.jsonl``: per line a string, a message list, or an object with
    ``"prompt"`` or ``"messages"``). A message is ``{"role": ..., "content": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompts: {path} is not a file")
    text = path.read_text(encoding="utf-8")
    items: list[Any]
    if path.suffix == ".jsonl":
        items = []
        for k, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"prompts: {path} line {k} is not JSON: {err.msg}") from err
    elif text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"prompts: {path} is not a valid JSON list: {err}") from err
        if not isinstance(items, list):
            raise ValueError(f"prompts: {path} must be a JSON list")
    else:
        items = [line for line in text.splitlines() if line.strip()]
    prompts = [_as_prompt(item, path, k) for k, item in enumerate(items, 1)]
    if not prompts:
        raise ValueError(f"prompts: {path} holds no prompt")
    return prompts


def _as_prompt(item: Any, path: Path, k: int) -> Prompt:
    if isinstance(item, dict):
        item = item.get("messages", item.get("prompt"))
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item and all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in item):
        return item
    raise ValueError(f"prompts: {path} item {k} is neither a string nor a list of "
                     "{'role', 'content'} messages")


def render_prompt(tokenizer: Any, prompt: Prompt, chat_template: bool) -> tuple[str, bool]:
    """(text, template used): messages and, with ``chat_template``, plain strings (as one user
    message) go through the tokenizer's chat template with the generation prompt."""
    if isinstance(prompt, str) and not chat_template:
        return prompt, False
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat-template: the tokenizer has no chat template "
                         "(give plain-text prompts without --chat-template)")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(text), True


def context_length(model: Any) -> int | None:
    """The model's maximum sequence length from its config (None if it names none)."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def marker_ids(tokenizer: Any, marker: str, context: list[int] | None = None,
               context_text: str | None = None, special: bool = True) -> list[int]:
    """The tokens of ``marker`` as the model would produce them after the prompt: the tokens
    that ``context_text + marker`` adds to ``context`` when the prompt's own tokens are kept,
    else ``marker`` tokenised alone. ValueError if it is no token at all."""
    if context is not None and context_text is not None:
        full = tokenizer.encode(context_text + marker, add_special_tokens=special)
        if full[: len(context)] == context and len(full) > len(context):
            return [int(t) for t in full[len(context):]]
    ids = [int(t) for t in tokenizer.encode(marker, add_special_tokens=False)]
    if not ids:
        raise ValueError(f"marker: {marker!r} encodes to no token")
    return ids


class HFLogits:
    """ids ``[B, T]`` -> logits ``[B, T, V]`` of a transformers causal LM, in chunks of
    ``batch_size`` rows, on the model's device; :meth:`sample_answers` samples with the KV
    cache (the random draws of :func:`forgetlab.lm.sampling.sample_answers`)."""

    def __init__(self, model: Any, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.batch_size = model, batch_size
        self.device = next(model.parameters()).device
        # transformers >= 5.2x names the KV cache ``cache``; older releases ``past_key_values``
        params = inspect.signature(type(model).forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(self.device)
        # no padding anywhere: an all-ones attention mask (says so to transformers)
        return torch.cat([self.model(input_ids=c, attention_mask=torch.ones_like(c)).logits
                          for c in ids.split(self.batch_size)])

    @torch.no_grad()
    def sample_answers(
        self, prompts: torch.Tensor, length: int, gen: torch.Generator, *,
        first: torch.Tensor | None = None, first_allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, length]`` answer tokens, the cache reused across steps within each chunk."""
        prompts = prompts.to(self.device)
        firsts = None if first is None else first.reshape(-1).split(self.batch_size)
        out = []
        for c, chunk in enumerate(prompts.split(self.batch_size)):
            past, pending, seen = None, chunk, 0
            toks = []
            for t in range(length):
                if t == 0 and firsts is not None:
                    nxt = firsts[c].reshape(-1, 1).to(self.device)
                else:
                    seen += pending.shape[1]
                    mask = torch.ones((pending.shape[0], seen), dtype=torch.long,
                                      device=self.device)
                    res = self.model(input_ids=pending, attention_mask=mask, use_cache=True,
                                     **{self._cache_kw: past})
                    past = getattr(res, "cache", None)
                    if past is None:
                        past = getattr(res, "past_key_values", None)
                    logits = res.logits[:, -1].float()
                    if t == 0 and first_allowed is not None:
                        logits = logits.masked_fill(~first_allowed.to(logits.device),
                                                    float("-inf"))
                    probs = torch.softmax(logits, dim=-1)
                    nxt = torch.multinomial(probs.cpu(), 1, generator=gen).to(self.device)
                    pending = nxt
                if t == 0 and firsts is not None:
                    pending = torch.cat([chunk, nxt], dim=1)
                toks.append(nxt)
            out.append(torch.cat(toks, dim=1))
        return torch.cat(out)


def logits_fn(model: Any, batch_size: int = 64) -> HFLogits:
    """The :class:`HFLogits` wrapper of ``model`` (the interface of :mod:`forgetlab.lm.split`)."""
    return HFLogits(model, batch_size)


@dataclass
class PreparedPrompts:
    """Rendered prompts, their token ids and (marker split) each prompt's marker tokens."""

    texts: list[str]
    ids: list[list[int]]
    markers: list[list[int]] | None


def prepare_prompts(
    tokenizer: Any, prompts: Sequence[Prompt], *, marker: str | None, max_new_tokens: int,
    context: int | None, chat_template: bool = False,
) -> PreparedPrompts:
    """Render, tokenise and check the prompts (one-line ValueErrors naming the field)."""
    if max_new_tokens < 1:
        raise ValueError(f"max-new-tokens: must be >= 1, got {max_new_tokens}")
    texts, ids, markers = [], [], []
    for k, prompt in enumerate(prompts, 1):
        text, templated = render_prompt(tokenizer, prompt, chat_template)
        special = not templated  # a template writes its own special tokens
        tok = [int(t) for t in tokenizer.encode(text, add_special_tokens=special)]
        if not tok:
            raise ValueError(f"prompts: prompt {k} ({text[:40]!r}) encodes to no token")
        if context is not None and len(tok) + max_new_tokens > context:
            raise ValueError(
                f"max-new-tokens: prompt {k} has {len(tok)} tokens, and {len(tok)} + "
                f"{max_new_tokens} exceeds the model's context of {context} tokens")
        if marker is not None:
            mk = marker_ids(tokenizer, marker, tok, text, special)
            if len(mk) > max_new_tokens:
                raise ValueError(f"marker: {marker!r} is {len(mk)} tokens, more than "
                                 f"max-new-tokens ({max_new_tokens})")
            markers.append(mk)
        texts.append(text)
        ids.append(tok)
    return PreparedPrompts(texts, ids, markers if marker is not None else None)


def text_classifier(
    tokenizer: Any, classifier: str | Callable[[str], bool],
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``classify(answers, mask) -> bool [K]`` from a regular expression (``re.search`` on the
    decoded answer) or a callable on the decoded answer text."""
    fn: Callable[[str], bool]
    if isinstance(classifier, str):
        try:
            pattern = re.compile(classifier)
        except re.error as err:
            raise ValueError(
                f"classifier: {classifier!r} is not a regular expression: {err}") from err

        def fn(text: str) -> bool:
            return bool(pattern.search(text))
    elif callable(classifier):
        fn = classifier
    else:
        raise ValueError("classifier: must be a regular expression or a callable str -> bool")

    def classify(answers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        texts = [tokenizer.decode(a[m].tolist(), skip_special_tokens=True)
                 for a, m in zip(answers.cpu(), mask.cpu(), strict=True)]
        return torch.tensor([bool(fn(t)) for t in texts], dtype=torch.bool)

    return classify


@torch.no_grad()
def split_models(
    base_fn: Any, tuned_fn: Any, tokenizer: Any, prep: PreparedPrompts, *,
    classify: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    max_new_tokens: int = 16, n_samples: int = 32, gen: torch.Generator,
    target_se: float | None = None, max_samples: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Split:
    """The split of every prepared prompt, in order; prompts of equal length (and marker
    tokens) as one batch. Marker split if ``prep.markers``, else classifier split."""
    keys = [(len(ids), tuple(prep.markers[i]) if prep.markers else ()) for i, ids in
            enumerate(prep.ids)]
    groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    eos = tokenizer.eos_token_id
    device = getattr(base_fn, "device", torch.device("cpu"))
    parts: list[tuple[list[int], Split]] = []
    done = 0
    for (_, mk), rows in groups.items():
        ids = torch.tensor([prep.ids[i] for i in rows], dtype=torch.long, device=device)
        if prep.markers is not None:
            split = marker_split(base_fn, tuned_fn, ids, list(mk), max_new_tokens,
                                 n_samples=n_samples, gen=gen, eos_id=eos,
                                 target_se=target_se, max_samples=max_samples)
        else:
            if classify is None:
                raise ValueError("give a marker or a classifier")
            split = classifier_split(base_fn, tuned_fn, ids, classify, max_new_tokens,
                                     n_samples=n_samples, gen=gen, eos_id=eos,
                                     target_se=target_se, max_samples=max_samples)
        parts.append((rows, _to_cpu(split)))
        done += len(rows)
        if progress is not None:
            progress("prompts", done, len(prep.ids))
    order = [i for rows, _ in parts for i in rows]
    merged = Split.cat([s for _, s in parts])
    inverse = torch.argsort(torch.tensor(order))
    return merged.map(lambda v: v[inverse])


def _to_cpu(split: Split) -> Split:
    return split.map(lambda v: v.detach().double().cpu())


@torch.no_grad()
def low_mass_warning(
    base_fn: Any, tokenizer: Any, prep: PreparedPrompts, marker: str, old_mass_base: float,
) -> str | None:
    """A warning when the base old mass is below 1e-3, naming the marker spelling (leading
    space or not) with the largest base old mass, computed exactly along each spelling."""
    if old_mass_base >= LOW_MASS:
        return None
    best: tuple[float, str, list[int]] | None = None
    for alt in dict.fromkeys([" " + marker.lstrip(), marker.strip(), marker.lstrip()]):
        if alt == marker or not alt:
            continue
        masses = []
        for ids, text in zip(prep.ids, prep.texts, strict=True):
            mk = marker_ids(tokenizer, alt, ids, text)
            seq = torch.tensor([ids + mk[:-1]], dtype=torch.long)
            logp = torch.log_softmax(base_fn(seq)[0, len(ids) - 1 :].double(), dim=-1)
            masses.append(float(logp.gather(-1, torch.tensor(mk, device=logp.device)[:, None])
                                .sum().exp()))
        mass = sum(masses) / len(masses)
        if best is None or mass > best[0]:
            best = (mass, alt, marker_ids(tokenizer, alt))
    mk0 = prep.markers[0] if prep.markers else []
    msg = (f"base old mass {old_mass_base:.2e} is below {LOW_MASS:g} with marker {marker!r} "
           f"(tokens {mk0}): the base almost never produces it, so the split says little")
    if best is not None and best[0] > max(10 * old_mass_base, LOW_MASS):
        msg += (f"; the tokenised spelling {best[1]!r} (tokens {best[2]}) has base old mass "
                f"{best[0]:.3f}: did you mean --marker {best[1]!r}?")
    return msg


def ess_warning(split: Split) -> str | None:
    """A warning when a conditional with weight >= 1 % rests on fewer than 10 effective
    samples (classifier split): its drift/new-change estimate and s.e. are unreliable."""
    if split.ess_old is None or split.ess_new is None:
        return None
    m0 = split.old_mass_base
    bad = ((split.ess_old < ESS_MIN) & (m0 >= 0.01)) | ((split.ess_new < ESS_MIN)
                                                        & (1 - m0 >= 0.01))
    if not bool(bad.any()):
        return None
    worst = float(torch.minimum(torch.where(m0 >= 0.01, split.ess_old, math.inf),
                                torch.where(1 - m0 >= 0.01, split.ess_new, math.inf)).min())
    return (f"{int(bad.sum())} of {bad.numel()} prompts have fewer than {ESS_MIN:g} effective "
            f"samples behind a mode-conditional term (lowest {worst:.1f}): its drift estimate "
            "and standard error are unreliable; raise --samples or set --target-se")


def check_split_options(marker: str | None, classifier: object, n_samples: int,
                        target_se: float | None) -> None:
    """The settings every split takes: exactly one of ``marker`` and ``classifier``,
    ``n_samples >= 2`` and ``target_se`` None or > 0; ValueError naming the setting."""
    if (marker is None) == (classifier is None):
        raise ValueError("give exactly one of marker and classifier")
    if n_samples < 2:
        raise ValueError(f"samples: must be >= 2, got {n_samples}")
    if target_se is not None and not target_se > 0:
        raise ValueError(f"target-se: must be > 0, got {target_se}")


def split_in_eval_mode(models: Sequence[Any], base_fn: Any, tuned_fn: Any, tokenizer: Any,
                       prep: PreparedPrompts, *, seed: int, **options: Any) -> Split:
    """:func:`split_models` (sampling from ``torch.Generator().manual_seed(seed)``) with every
    model of ``models`` in eval mode, so no dropout while measuring; each model's training
    flag is restored afterwards."""
    modes = [(m, m.training) for m in models]
    for m, _ in modes:
        m.eval()
    try:
        return split_models(base_fn, tuned_fn, tokenizer, prep,
                            gen=torch.Generator().manual_seed(seed), **options)
    finally:
        for m, training in modes:
            m.train(training)


def measure_models(
    base: Any, tuned: Any, tokenizer: Any, prompts: Sequence[Prompt], *,
    marker: str | None = None, classifier: str | Callable[[str], bool] | None = None,
    max_new_tokens: int = 16, n_samples: int = 32, seed: int = 0, chat_template: bool = False,
    batch_size: int = 64, target_se: float | None = None, max_samples: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """The split of KL(base || tuned) on in-memory models: ``{"mode", "summary",
    "per_prompt", "warnings", ...}``. Exactly one of ``marker`` and ``classifier``."""
    check_split_options(marker, classifier, n_samples, target_se)
    classify = None if classifier is None else text_classifier(tokenizer, classifier)
    prep = prepare_prompts(tokenizer, prompts, marker=marker, max_new_tokens=max_new_tokens,
                           context=context_length(base), chat_template=chat_template)
    base_fn, tuned_fn = logits_fn(base, batch_size), logits_fn(tuned, batch_size)
    split = split_in_eval_mode((base, tuned), base_fn, tuned_fn, tokenizer, prep,
                               classify=classify, max_new_tokens=max_new_tokens,
                               n_samples=n_samples, seed=seed, target_se=target_se,
                               max_samples=max_samples, progress=progress)
    summary = split.summary()
    warnings = []
    if marker is not None:
        w = low_mass_warning(base_fn, tokenizer, prep, marker, summary["old_mass_base"])
    else:
        w = ess_warning(split)
        if summary["old_mass_base"] < LOW_MASS and summary["old_mass"] < LOW_MASS:
            warnings.append(
                f"the classifier marks almost no answer old (base {summary['old_mass_base']:.2e}"
                f", tuned {summary['old_mass']:.2e}): check it")
    if w:
        warnings.insert(0, w)
    per_prompt = [{"prompt": text, "prompt_tokens": len(ids), **row}
                  for text, ids, row in zip(prep.texts, prep.ids, split.rows(), strict=True)]
    return {"mode": "marker" if marker is not None else "classifier", "marker": marker,
            "marker_tokens": prep.markers[0] if prep.markers else None,
            "classifier": classifier if isinstance(classifier, str) or classifier is None
            else getattr(classifier, "__name__", "callable"),
            "max_new_tokens": max_new_tokens, "samples": n_samples, "target_se": target_se,
            "seed": seed, "summary": summary, "per_prompt": per_prompt, "warnings": warnings}


def measure_split(
    base_dir: Path, tuned_dir: Path, prompts_file: Path, *, marker: str | None = None,
    classifier: str | Callable[[str], bool] | None = None, max_new_tokens: int = 16,
    n_samples: int = 32, seed: int = 0, chat_template: bool = False, device: str = "cpu",
    dtype: str = "float32", batch_size: int = 64, target_se: float | None = None,
    max_samples: int | None = None, progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """:func:`measure_models` on two local model directories and a prompt file."""
    if (marker is None) == (classifier is None):
        raise ValueError("give exactly one of marker and classifier")
    if classifier is not None:
        text_classifier(None, classifier)  # a bad regular expression fails before loading
    prompts = read_prompts(prompts_file)
    base, tok = load_causal_lm(base_dir, "base", device=device, dtype=dtype)
    tuned, tok_tuned = load_causal_lm(tuned_dir, "tuned", device=device, dtype=dtype)
    if tok.get_vocab() != tok_tuned.get_vocab():
        raise ValueError("tuned: its tokenizer differs from the base model's")
    report = measure_models(base, tuned, tok, prompts, marker=marker, classifier=classifier,
                            max_new_tokens=max_new_tokens, n_samples=n_samples, seed=seed,
                            chat_template=chat_template, batch_size=batch_size,
                            target_se=target_se, max_samples=max_samples, progress=progress)
    report["device"] = str(next(base.parameters()).device)
    report["dtype"] = str(next(base.parameters()).dtype).removeprefix("torch.")
    return report


def plot_per_prompt(report: dict[str, Any], path: Path) -> Path:
    """A figure of old mass (base vs tuned) and old-component drift KL per prompt (with 2 s.e.
    bars) from a :func:`measure_models` report, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["per_prompt"]
    x = list(range(len(rows)))
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(max(6.0, 0.5 * len(rows) + 3), 6),
                                   sharex=True)
    ax0.bar([i - 0.2 for i in x], [r["old_mass_base"] for r in rows], 0.4, label="base",
            yerr=[2 * r["old_mass_base_se"] for r in rows])
    ax0.bar([i + 0.2 for i in x], [r["old_mass"] for r in rows], 0.4, label="tuned",
            yerr=[2 * r["old_mass_se"] for r in rows])
    ax0.set_ylabel("old mass")
    ax0.set_ylim(0, 1.05)
    ax0.legend()
    ax1.errorbar(x, [r["old_drift_kl"] for r in rows], yerr=[2 * r["old_drift_se"] for r in rows],
                 fmt="o", label="old-component drift KL")
    ax1.errorbar(x, [r["mass_kl"] for r in rows], yerr=[2 * r["mass_kl_se"] for r in rows],
                 fmt="s", label="mass KL")
    ax1.set_ylabel("nats")
    ax1.set_xlabel("prompt")
    ax1.legend()
    ax1.set_xticks(x)
    ax0.set_title(f"forgetting per prompt ({report['mode']} split; bars: 2 s.e.)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
