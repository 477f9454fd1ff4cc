"""The synthetic two-mode language of the built-in benchmark.

A question is a prompt-family letter followed by ``n_digits`` digits and ``=``; its answer is a
mode marker and ``n_digits`` digits. Two behaviours answer it:

* old mode: ``A`` then the digits reversed (``o123=`` -> ``A321``);
* new mode: ``B`` then every digit shifted by ``s`` mod 10 (``n123=`` -> ``B456`` for s = 3).

Prompt families carry different mode mixtures in pre-training: ``o`` (old-task prompts, mostly
old mode), ``n`` (new-task prompts, mostly new mode) and ``m`` (mixed prompts, an even mixture).
In single-example pre-training sequences the new mode is noisy: each digit is correct with
probability ``new_digit_acc`` and uniform otherwise, so post-training has something to improve.
A quarter of the sequences (``pair_frac``) are two examples separated by ``;``: a clean
new-mode demonstration on a new-task prompt, then a question whose mode follows its family's
mixture and whose new-mode answer is clean. A model pre-trained on this corpus therefore learns
the new task from a demonstration in its context without changing its mode mixture; SDFT and
on-policy distillation use it as their teacher.

The ``several_answers`` task of the benchmark adds a second correct new answer and a
drift channel:

* the *close* new answer ``B`` then the digits reversed (``n123=`` -> ``B321``) shares every
  digit with the old answer; the target accepts it beside the shifted one (the *far* answer),
  and a share ``pretrain_close_frac`` of the new-mode pre-training answers are close answers,
  so the base already puts some of its new mass on it;
* a share ``old_shared_frac`` of the old-mode pre-training answers continue ``A`` with the
  shifted digits (the new mode's continuation after the old marker), so the old conditional
  pi(. | x, old) shares tokens with the new mode and updates on new answers can move it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

VOCAB = "0123456789=ABonm;_"
"""Characters of the language: digits, ``=``, markers ``A``/``B``, families, ``;``, padding."""
STOI = {c: i for i, c in enumerate(VOCAB)}
PAD = STOI["_"]
EQ = STOI["="]
SEP = STOI[";"]
MARK_OLD = STOI["A"]
MARK_NEW = STOI["B"]
FAMILIES = ("o", "n", "m")


def encode(text: str) -> list[int]:
    """Token ids of ``text``; ValueError for a character outside :data:`VOCAB`."""
    bad = sorted(set(text) - set(VOCAB))
    if bad:
        raise ValueError(f"text contains characters outside the vocabulary: {''.join(bad)!r}")
    return [STOI[c] for c in text]


def decode(ids: torch.Tensor | list[int]) -> str:
    """The string of token ids ``ids``."""
    return "".join(VOCAB[int(i)] for i in ids)


@dataclass(frozen=True)
class TaskConfig:
    """The language: question length, pre-training mixtures and noise, new-task shifts.

    ``old_mass[f]`` is P(old mode | family f) in pre-training. ``pretrain_shift`` is the shift the
    corpus uses; ``new_shifts`` are the shifts the post-training target accepts (one shift, or
    two for the two-answer-mode variant) and ``new_close`` adds the close answer ``B`` + reversed
    digits; the target weighs its K accepted new answers 1/K each. ``pretrain_close_frac`` is
    the share of new-mode pre-training answers that are close answers, ``old_shared_frac`` the
    share of old-mode ones continued with the shifted digits (the drift channel).
    """

    n_digits: int = 3
    old_mass: dict[str, float] = field(default_factory=lambda: {"o": 0.9, "n": 0.2, "m": 0.5})
    new_digit_acc: float = 0.7
    pretrain_shift: int = 3
    new_shifts: tuple[int, ...] = (3,)
    pair_frac: float = 0.25
    new_close: bool = False
    pretrain_close_frac: float = 0.0
    old_shared_frac: float = 0.0

    def __post_init__(self) -> None:
        if self.n_digits < 1:
            raise ValueError(f"TaskConfig.n_digits must be >= 1, got {self.n_digits}")
        if set(self.old_mass) != set(FAMILIES):
            raise ValueError(f"TaskConfig.old_mass must have the keys {FAMILIES}")
        if not all(0.0 <= v <= 1.0 for v in self.old_mass.values()):
            raise ValueError("TaskConfig.old_mass values must lie in [0, 1]")
        if not 0.0 <= self.new_digit_acc <= 1.0:
            raise ValueError("TaskConfig.new_digit_acc must lie in [0, 1]")
        for name in ("pair_frac", "pretrain_close_frac", "old_shared_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TaskConfig.{name} must lie in [0, 1]")
        if not self.new_shifts:
            raise ValueError("TaskConfig.new_shifts must name at least one shift")

    def as_dict(self) -> dict[str, object]:
        """Plain-data form (for hashing and for storing next to results)."""
        return asdict(self)


class Task:
    """Sampling, encoding and checking for one :class:`TaskConfig`.

    Shapes: ``digits [N, n]`` (int64 in 0..9), prompts ``[N, n + 2]``, answers ``[N, n + 1]``.
    """

    def __init__(self, config: TaskConfig | None = None) -> None:
        self.config = config or TaskConfig()
        n = self.config.n_digits
        self.prompt_len = n + 2
        self.answer_len = n + 1
        self.example_len = self.prompt_len + self.answer_len
        self.block_size = 2 * self.example_len + 1

    # -- questions and answers ----------------------------------------------------------------
    def questions(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` uniformly random digit strings ``[n, n_digits]``."""
        return torch.randint(0, 10, (n, self.config.n_digits), generator=gen)

    def prompts(self, family: str, digits: torch.Tensor) -> torch.Tensor:
        """Prompt tokens ``family digits =`` for each row of ``digits``."""
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        n = digits.shape[0]
        fam = torch.full((n, 1), STOI[family], dtype=torch.long)
        return torch.cat([fam, digits, torch.full((n, 1), EQ, dtype=torch.long)], dim=1)

    def old_answers(self, digits: torch.Tensor) -> torch.Tensor:
        """``A`` followed by the digits reversed."""
        return torch.cat([torch.full((digits.shape[0], 1), MARK_OLD), digits.flip(1)], dim=1)

    def new_answers(self, digits: torch.Tensor, shift: int) -> torch.Tensor:
        """``B`` followed by each digit plus ``shift`` mod 10."""
        return torch.cat([torch.full((digits.shape[0], 1), MARK_NEW), (digits + shift) % 10], 1)

    def close_answers(self, digits: torch.Tensor) -> torch.Tensor:
        """``B`` followed by the digits reversed: a new answer with the old answer's digits."""
        return torch.cat([torch.full((digits.shape[0], 1), MARK_NEW), digits.flip(1)], dim=1)

    def accepted_new_answers(self, digits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The correct new answers ``[N, n + 1]`` by name: ``+s`` per accepted shift, and
        ``close`` when ``new_close``."""
        answers = {f"+{s}": self.new_answers(digits, s) for s in self.config.new_shifts}
        if self.config.new_close:
            answers["close"] = self.close_answers(digits)
        return answers

    def is_old_correct(self, digits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Bool ``[N]``: the answer is the correct old-mode answer."""
        return (answers == self.old_answers(digits)).all(dim=1)

    def is_new_correct(self, digits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Bool ``[N]``: the answer is one of :meth:`accepted_new_answers`."""
        ok = torch.zeros(digits.shape[0], dtype=torch.bool)
        for correct in self.accepted_new_answers(digits).values():
            ok |= (answers == correct).all(dim=1)
        return ok

    def new_demonstrations(
        self, digits: torch.Tensor, gen: torch.Generator, shifts: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """Correct new-mode answers, drawn uniformly per row from those shifted by ``shifts``, or
        by default from the target's :meth:`accepted_new_answers`."""
        if shifts is None:
            options = torch.stack(list(self.accepted_new_answers(digits).values()))
        else:
            options = torch.stack([self.new_answers(digits, s) for s in shifts])
        pick = torch.randint(0, options.shape[0], (digits.shape[0],), generator=gen)
        return options[pick, torch.arange(digits.shape[0])]

    def demo_prefix(
        self, n: int, gen: torch.Generator, shifts: tuple[int, ...] | None = None,
        digits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` in-context demonstrations ``n<digits>=B<shifted>;`` ``[n, example_len + 1]``,
        for fresh random questions or, given ``digits [n, n_digits]``, for those questions (a
        demonstration of the same question, as SDFT's teacher sees it)."""
        d = self.questions(n, gen) if digits is None else digits
        sep = torch.full((n, 1), SEP, dtype=torch.long)
        demo = self.new_demonstrations(d, gen, shifts)
        return torch.cat([self.prompts("n", d), demo, sep], dim=1)

    # -- pre-training corpus ------------------------------------------------------------------
    def _pretrain_answers(
        self, family: str, digits: torch.Tensor, clean: bool, gen: torch.Generator
    ) -> torch.Tensor:
        """Answers in the family's mode mixture; new-mode shifted digits noisy unless ``clean``;
        close answers and shared old continuations with their configured shares."""
        n = digits.shape[0]
        cfg = self.config
        old = torch.rand(n, generator=gen) < cfg.old_mass[family]
        new = self.new_answers(digits, cfg.pretrain_shift)
        if not clean:
            noisy = torch.rand(new[:, 1:].shape, generator=gen) >= cfg.new_digit_acc
            random_digits = torch.randint(0, 10, new[:, 1:].shape, generator=gen)
            new[:, 1:] = torch.where(noisy, random_digits, new[:, 1:])
        old_answers = self.old_answers(digits)
        if cfg.pretrain_close_frac > 0:  # draws only when enabled: the standard corpus is unchanged
            close = torch.rand(n, generator=gen) < cfg.pretrain_close_frac
            new = torch.where(close[:, None], self.close_answers(digits), new)
        if cfg.old_shared_frac > 0:
            shared = torch.rand(n, generator=gen) < cfg.old_shared_frac
            old_answers[shared, 1:] = (digits[shared] + cfg.pretrain_shift) % 10
        return torch.where(old[:, None], old_answers, new)

    def pretrain_batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pre-training sequences ``[n, block_size]`` and their loss masks (answer tokens).

        Position ``t`` of the mask says whether token ``t`` is scored by the loss: the answer
        tokens of the question (a demonstration's answer is context only, so that it does not
        change the new-task family's own mixture); sequences are right-padded with ``_``.
        """
        fams = torch.randint(0, len(FAMILIES), (n,), generator=gen)
        pair = torch.rand(n, generator=gen) < self.config.pair_frac
        seqs = torch.full((n, self.block_size), PAD, dtype=torch.long)
        mask = torch.zeros((n, self.block_size), dtype=torch.bool)
        p, e = self.prompt_len, self.example_len
        for i, fam in enumerate(FAMILIES):
            for is_pair in (False, True):
                rows = ((fams == i) & (pair == is_pair)).nonzero().flatten()
                if rows.numel() == 0:
                    continue
                d = self.questions(rows.numel(), gen)
                example = torch.cat(
                    [self.prompts(fam, d), self._pretrain_answers(fam, d, is_pair, gen)], 1)
                start = e + 1 if is_pair else 0
                if is_pair:
                    seqs[rows, : e + 1] = self.demo_prefix(
                        rows.numel(), gen, (self.config.pretrain_shift,))
                seqs[rows, start : start + e] = example
                mask[rows, start + p : start + e] = True
        return seqs, mask

