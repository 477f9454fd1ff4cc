"""Many ``numpy`` generators at once, each equal to ``default_rng(SeedSequence(e, spawn_key))``.

A ``SeedSequence`` costs about 8 us to build and a PCG64 as much again to seed from it, nearly
all of it per-object overhead: a finite-batch run of 470 seeds over 800 configurations spent
most of its time there. The seed sequence's arithmetic is a fixed hash of 32-bit words, so
here it runs once for a whole range of spawn keys, vectorised over them, and each PCG64 is
seeded from its precomputed words through numpy's ``ISeedSequence`` interface.

The hash (numpy's documented ``SeedSequence`` algorithm, pool of four 32-bit words):

- the entropy words: the entropy as little-endian 32-bit words (at least one), zero-padded to
  the pool size when there is a spawn key, then the spawn key's words, each element in turn;
- ``hashmix(v)``: v ^= h; h *= A; v *= h; v ^= v >> 16, with h a running constant (from
  0x43b0d7e5, A = 0x931e8875); ``mix(x, y)`` = (L x - R y) ^ ((L x - R y) >> 16),
  L = 0xca01f9dd, R = 0x4973f715; all arithmetic modulo 2^32;
- the pool: pool[i] = hashmix(word i) for i < 4; then for each ordered pair i != j,
  pool[j] = mix(pool[j], hashmix(pool[i])); then each further word w, for each j,
  pool[j] = mix(pool[j], hashmix(w));
- the state: word k of the output (8 words for PCG64's four uint64) is
  v = pool[k mod 4] ^ h; h *= B; v *= h; v ^= v >> 16 (h from 0x8b51f9dd, B = 0x58f38ded),
  read as little-endian pairs for uint64.

tests/test_seeding.py checks the result against ``numpy.random.SeedSequence`` itself.
"""

from __future__ import annotations

import contextlib
import gc
import operator
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.random.bit_generator import ISeedSequence
from numpy.typing import DTypeLike, NDArray

_POOL = 4
_MASK = 0xFFFFFFFF
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_SHIFT = np.uint32(16)
_PCG64_WORDS = 8  # four uint64

Words = NDArray[np.uint32]


def _words(value: int) -> list[int]:
    """A non-negative int as little-endian 32-bit words, at least one."""
    if value < 0:
        raise ValueError(f"seed entropy and spawn keys must be >= 0, got {value}")
    out = [value & _MASK]
    value >>= 32
    while value:
        out.append(value & _MASK)
        value >>= 32
    return out


class _Hash:
    """The running constant h of ``hashmix``: a fixed sequence, the same for every key."""

    def __init__(self, start: int, mult: int) -> None:
        self.value, self.mult = start, mult

    def mix_in(self, v: Words) -> Words:
        """v ^= h; h *= mult; v *= h; v ^= v >> 16 (modulo 2^32, v a column of keys)."""
        v = v ^ np.uint32(self.value)
        self.value = (self.value * self.mult) & _MASK
        v = v * np.uint32(self.value)
        return v ^ (v >> _SHIFT)


def _mix(x: Words, y: Words) -> Words:
    result = _MIX_L * x - _MIX_R * y
    return result ^ (result >> _SHIFT)


def _hash(columns: list[Words]) -> NDArray[np.uint64]:
    """``[R, 4]``: the PCG64 state words of R keys, given their entropy words as columns."""
    h = _Hash(_INIT_A, _MULT_A)
    pool = [h.mix_in(columns[i]) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = _mix(pool[dst], h.mix_in(pool[src]))
    for word in columns[_POOL:]:
        for dst in range(_POOL):
            pool[dst] = _mix(pool[dst], h.mix_in(word))
    h = _Hash(_INIT_B, _MULT_B)
    state = np.stack([h.mix_in(pool[k % _POOL]) for k in range(_PCG64_WORDS)], axis=1)
    return state.astype("<u4").view("<u8").astype(np.uint64)


def pcg64_words(entropy: Sequence[int], prefixes: Sequence[tuple[int, ...]],
                count: int) -> NDArray[np.uint64]:
    """``[C, count, 4]``: entry (c, s) is ``SeedSequence(entropy[c], spawn_key=(*prefixes[c],
    s)).generate_state(4, np.uint64)``; one hash for every key with as many words."""
    if not 0 < count <= _MASK + 1:  # a spawn index past 2^32 would take two words
        raise ValueError(f"count must lie in [1, {_MASK + 1}], got {count}")
    fixed = []
    for e, prefix in zip(entropy, prefixes, strict=True):
        run = _words(operator.index(e))
        run += [0] * (_POOL - len(run))  # padded: a spawn key follows
        fixed.append(run + [w for key in prefix for w in _words(operator.index(key))])
    out = np.empty((len(fixed), count, _PCG64_WORDS // 2), dtype=np.uint64)
    for length in sorted({len(f) for f in fixed}):
        rows = [i for i, f in enumerate(fixed) if len(f) == length]
        words = np.array([fixed[i] for i in rows], dtype=np.uint32)  # [r, length]
        columns = [np.repeat(words[:, j], count) for j in range(length)]
        columns.append(np.tile(np.arange(count, dtype=np.uint32), len(rows)))  # s, one word
        out[rows] = _hash(columns).reshape(len(rows), count, -1)
    return out


class _Precomputed(ISeedSequence):
    """A seed sequence whose PCG64 state words are already computed."""

    def __init__(self, words: NDArray[np.uint64]) -> None:
        self.words = words

    def generate_state(self, n_words: int, dtype: DTypeLike = np.uint32) -> NDArray[np.uint64]:
        if n_words != len(self.words) or np.dtype(dtype) != np.uint64:
            raise ValueError("only the PCG64 state (4 uint64 words) was precomputed")
        return self.words


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (restored on exit, nesting allowed).

    For building many acyclic objects at once: each new object counts towards the next
    collection, and every few hundred thousand of them a full collection walks every live
    object; building 160,000 generators and their draw methods took 1.4 s with the collector
    running and 0.5 s without."""
    was_enabled = gc.isenabled()
    try:
        gc.disable()
        yield
    finally:
        if was_enabled:
            gc.enable()


def spawned_generators(entropy: Sequence[int], prefixes: Sequence[tuple[int, ...]],
                       count: int) -> list[list[np.random.Generator]]:
    """Row c, entry s: ``default_rng(SeedSequence(entropy[c], spawn_key=(*prefixes[c], s)))``,
    the same streams, built from one vectorised hash."""
    words = pcg64_words(entropy, prefixes, count)
    with collector_paused():
        # numpy takes any ISeedSequence (its type stubs name only SeedSequence)
        return [[np.random.Generator(np.random.PCG64(_Precomputed(w)))  # type: ignore[arg-type]
                 for w in row]
                for row in words]
