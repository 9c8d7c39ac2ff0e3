"""Gymnasium's episode generator, `gymnasium.utils.seeding.np_random(seed)`, built faster.

Every env reset with a seed gets `Generator(PCG64(SeedSequence(seed)))`, as gymnasium
builds it. Numpy spends about 8 us on it (twice that between two `generate` calls, with
cold caches), most of it in `SeedSequence`'s hashing, one seed at a time: a third of a Kuhn
Poker episode's env time. A rollout resets seeds `seed, seed + 1, ...`, so `np_random` hashes
them 256 at a time (`seed_words`, the same arithmetic on numpy arrays) and hands `PCG64` the
words of one seed through a `SeedSequence` stand-in (`_Seeded`): about 1 us a reset.

The generator is the same, state for state (`tests/test_seeding.py` compares them over
random seeds), and every block checks one of its seeds against numpy's own `SeedSequence`
(an upgrade that changed the hashing would switch the fast path off with a warning, not
change an episode). Seeds of 2**32 and above, and None, take gymnasium's path.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
from gymnasium.utils import seeding as gym_seeding
from numpy.random.bit_generator import ISpawnableSeedSequence

BLOCK = 256
"""Consecutive seeds hashed together (a block starts at a multiple of `BLOCK`): 0.15 ms
for the block, 0.6 us a seed."""

_M32 = 0xFFFFFFFF
# numpy's SeedSequence constants (numpy/random/bit_generator.pyx)
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_XSHIFT = np.uint32(16)
_POOL = 4


def _hash_constants(n: int, init: int, mult: int) -> list[tuple[np.uint32, np.uint32]]:
    """The (xor, multiplier) pairs of n successive hashes: the hash constant h goes
    h -> h * mult (mod 2**32) at each hash, whatever the data."""
    out, h = [], init
    for _ in range(n):
        nxt = (h * mult) & _M32
        out.append((np.uint32(h), np.uint32(nxt)))
        h = nxt
    return out


_HASH_A = _hash_constants(_POOL + _POOL * (_POOL - 1), _INIT_A, _MULT_A)
_HASH_B = _hash_constants(2 * _POOL, _INIT_B, _MULT_B)


def seed_words(seeds: np.ndarray) -> np.ndarray:
    """`SeedSequence(s).generate_state(4, np.uint64)` for each seed s in [0, 2**32), as a
    (len(seeds), 4) uint64 array: the words `PCG64` is seeded with.

    numpy's hashing, on arrays: the pool is `hashmix(s), hashmix(0), hashmix(0), hashmix(0)`
    (`hashmix(v) = x ^ (x >> 16)` with `x = (v ^ h) * h'`, h the running hash constant);
    then each pool word is mixed into every other, `mix(x, y) = z ^ (z >> 16)` with
    `z = 0xca01f9dd x - 0x4973f715 y`; the state is 8 words `hashmix_B(pool[i % 4])`, read
    as 4 little-endian uint64. All arithmetic is mod 2**32.
    """
    s = np.asarray(seeds, dtype=np.uint32)
    hashes = iter(_HASH_A)

    def hashmix(v: np.ndarray) -> np.ndarray:
        h, nxt = next(hashes)
        x = (v ^ h) * nxt
        return x ^ (x >> _XSHIFT)

    zero = np.zeros_like(s)
    pool = [hashmix(s)] + [hashmix(zero) for _ in range(_POOL - 1)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                z = np.uint32(_MIX_MULT_L) * pool[dst] - np.uint32(_MIX_MULT_R) * hashmix(pool[src])
                pool[dst] = z ^ (z >> _XSHIFT)
    words = np.empty((len(s), 2 * _POOL), dtype=np.uint32)
    for i, (h, nxt) in enumerate(_HASH_B):
        x = (pool[i % _POOL] ^ h) * nxt
        words[:, i] = x ^ (x >> _XSHIFT)
    return words.astype("<u4").view("<u8").astype(np.uint64)  # as numpy reads them, on any byte order


_fast = True


@functools.lru_cache(maxsize=4)
def _block(start: int) -> np.ndarray:
    """`seed_words` of seeds start .. start + BLOCK - 1, checked at one seed against numpy."""
    global _fast
    words = seed_words(np.arange(start, start + BLOCK, dtype=np.uint32))
    probe = BLOCK // 2
    if not np.array_equal(words[probe], np.random.SeedSequence(start + probe).generate_state(4, np.uint64)):
        _fast = False
        warnings.warn("arena.seeding: numpy's SeedSequence hashes differently from this numpy on; "
                      "episode generators are built the slow way (the episodes are unchanged)", stacklevel=3)
    return words


class _Seeded(ISpawnableSeedSequence):
    """What `PCG64` reads from a `SeedSequence(seed)`: its state words, already computed.

    Anything else (`entropy`, `spawn`, ...) is answered by a real `SeedSequence(seed)`, built
    on first use, so `generator.spawn(n)` gives the children gymnasium's generator would."""

    __slots__ = ("_real", "_seed", "_words")

    def __init__(self, seed: int, words: np.ndarray):
        self._seed = seed
        self._words = words
        self._real: np.random.SeedSequence | None = None

    def _sequence(self) -> np.random.SeedSequence:
        if self._real is None:
            self._real = np.random.SeedSequence(self._seed)
        return self._real

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words == 4 and np.dtype(dtype) == np.uint64:
            return self._words
        return self._sequence().generate_state(n_words, dtype)

    def spawn(self, n_children: int) -> list[np.random.SeedSequence]:
        return self._sequence().spawn(n_children)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # e.g. while unpickling, before __init__: no real sequence yet
            raise AttributeError(name)
        return getattr(self._sequence(), name)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (a generator in a pickled env, Ray, deepcopy) as the real SeedSequence it stands for
        return _itself, (self._sequence(),)

    def __repr__(self) -> str:
        return repr(self._sequence())


def _itself(sequence: np.random.SeedSequence) -> np.random.SeedSequence:
    return sequence


def np_random(seed: int | None = None) -> np.random.Generator:
    """`gymnasium.utils.seeding.np_random(seed)[0]`: the same generator, in about 1 us when
    seeds come in runs (module docstring). Bad seeds get gymnasium's error."""
    if type(seed) is int and 0 <= seed <= _M32 and _fast:
        words = _block(seed - seed % BLOCK)[seed % BLOCK]
        if _fast:
            return np.random.Generator(np.random.PCG64(_Seeded(seed, words)))
    return gym_seeding.np_random(seed)[0]
