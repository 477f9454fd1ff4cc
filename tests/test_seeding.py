"""The vectorised seed-sequence hash against numpy's own ``SeedSequence``."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from forgetlab.methods.base import Streams
from forgetlab.seeding import collector_paused, pcg64_words, spawned_generators

# entropy of one to six 32-bit words (and the edges between; past four words there is no
# padding and the extra words are mixed in), spawn prefixes of zero to two keys, one of them two
# words long
ENTROPY = [0, 1, 12345, 2**32 - 1, 2**32, 2**64 + 5, 2**127 + 99, 20260312, 7, 7, 2**160 + 7]
PREFIXES = [(0,), (0,), (3,), (7,), (1,), (2,), (2**33,), (0,), (), (1, 2), (4,)]


def test_state_words_equal_numpy_seed_sequence():
    got = pcg64_words(ENTROPY, PREFIXES, 37)
    ref = np.array([[np.random.SeedSequence(e, spawn_key=(*p, s)).generate_state(4, np.uint64)
                     for s in range(37)] for e, p in zip(ENTROPY, PREFIXES, strict=True)])
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, ref)


def test_generators_draw_the_same_streams():
    ours = spawned_generators(ENTROPY[:4], PREFIXES[:4], 3)
    for e, p, row in zip(ENTROPY[:4], PREFIXES[:4], ours, strict=True):
        for s, gen in enumerate(row):
            ref = np.random.default_rng(np.random.SeedSequence(e, spawn_key=(*p, s)))
            np.testing.assert_array_equal(gen.standard_normal(5), ref.standard_normal(5))
            np.testing.assert_array_equal(gen.random(3), ref.random(3))


def test_streams_follow_their_documented_definition():
    """Run (c, s) of ``Streams(entropy, config_ids, S)`` is SeedSequence(entropy[c],
    spawn_key=(config_id[c], s)), drawn in order."""
    streams = Streams([11, 2**40 + 3], [0, 5], 4)
    normals, uniforms = streams.normal(2), streams.uniform(3)
    for c, (e, cid) in enumerate([(11, 0), (2**40 + 3, 5)]):
        for s in range(4):
            ref = np.random.default_rng(np.random.SeedSequence(e, spawn_key=(cid, s)))
            np.testing.assert_array_equal(normals[c, s], ref.standard_normal(2))
            np.testing.assert_array_equal(uniforms[c, s], ref.random(3))


def test_bad_keys_and_the_collector_state():
    with pytest.raises(ValueError, match=">= 0"):
        pcg64_words([-1], [(0,)], 2)
    with pytest.raises(ValueError, match="count must lie in"):
        pcg64_words([1], [(0,)], 0)
    with pytest.raises(TypeError):  # as SeedSequence: no float entropy
        pcg64_words([2.5], [(0,)], 1)
    with pytest.raises(ValueError, match="PCG64 state"):
        spawned_generators([1], [()], 1)[0][0].bit_generator.seed_seq.generate_state(8)
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a paused collector stays paused
    finally:
        gc.enable()
