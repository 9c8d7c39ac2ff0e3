"""`arena.seeding.np_random` is gymnasium's generator, state for state, whatever the seed."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils import seeding as gym_seeding

from arena import seeding


def _same(seed: int) -> None:
    ours, theirs = seeding.np_random(seed), gym_seeding.np_random(seed)[0]
    assert type(ours) is type(theirs)
    assert ours.bit_generator.state == theirs.bit_generator.state, seed
    assert ours.integers(1 << 62, size=3).tolist() == theirs.integers(1 << 62, size=3).tolist()


def test_seed_words_equal_numpys_over_random_and_edge_seeds() -> None:
    rng = np.random.default_rng(2026)
    seeds = np.concatenate([np.arange(0, 2 * seeding.BLOCK + 3), rng.integers(0, 2**32, 4000),
                            [2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]]).astype(np.uint32)
    words = seeding.seed_words(seeds)
    assert words.shape == (len(seeds), 4) and words.dtype == np.uint64
    for seed, row in zip(seeds.tolist(), words):
        assert row.tolist() == np.random.SeedSequence(seed).generate_state(4, np.uint64).tolist(), seed


@pytest.mark.parametrize("seed", [0, 1, 255, 256, 257, 1_000_003, 2**32 - 1, 2**32, 2**40 + 7, 2**70])
def test_generator_equals_gymnasiums(seed: int) -> None:
    _same(seed)


def test_seeds_out_of_order_and_across_blocks() -> None:
    for seed in [9_999, 3, 512 + 17, 3, 9_999, 2**20, 255, 256]:
        _same(seed)


def test_spawn_and_seed_seq_answer_as_gymnasiums() -> None:
    ours, theirs = seeding.np_random(7), gym_seeding.np_random(7)[0]
    assert ours.bit_generator.seed_seq.entropy == 7
    assert [g.bit_generator.state for g in ours.spawn(2)] == [g.bit_generator.state for g in theirs.spawn(2)]
    assert [g.bit_generator.state for g in ours.spawn(1)] == [g.bit_generator.state for g in theirs.spawn(1)]


def test_none_and_bad_seeds_take_gymnasiums_path() -> None:
    assert isinstance(seeding.np_random(None), np.random.Generator)
    with pytest.raises(Exception, match="greater or equal to zero"):
        seeding.np_random(-1)
    with pytest.raises(Exception, match="python integer"):
        seeding.np_random(1.5)  # type: ignore[arg-type]
    _same(True)  # a bool is an int to gymnasium: its generator is SeedSequence(1)'s


def test_a_hashing_that_disagrees_with_numpy_switches_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    seeding._block.cache_clear()
    monkeypatch.setattr(seeding, "_fast", True)  # so that the test's end sets it back to True
    monkeypatch.setattr(seeding, "seed_words", lambda seeds: np.zeros((len(seeds), 4), dtype=np.uint64))
    try:
        with pytest.warns(UserWarning, match="slow way"):
            _same(5)
        assert seeding._fast is False
        _same(6)
    finally:
        seeding._block.cache_clear()


def test_pickled_and_copied_generators_go_on_as_gymnasiums() -> None:
    import copy
    import pickle

    ours, theirs = seeding.np_random(11), gym_seeding.np_random(11)[0]
    ours.random(), theirs.random()
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert type(clone.bit_generator.seed_seq) is np.random.SeedSequence
        assert clone.bit_generator.state == theirs.bit_generator.state
        assert clone.bit_generator.seed_seq.entropy == 11
