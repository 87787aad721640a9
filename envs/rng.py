"""Counter-based random numbers: each user owns a stream, whatever batch it is stepped in.

Why not one ``np.random.Generator`` for the batch: then user *i*'s draws would depend on how
many users share the batch, and a VecEnv of N users could never equal N single-user envs.
Why not one Generator per user: a Python loop over 4096 generators per step costs more than the
whole step. So the world (catalog, calendar) comes from a seeded ``np.random.Generator`` and every
per-user draw is a pure function of ``(user key, counter, column)`` through the splitmix64
finaliser (Steele et al., "Fast splittable pseudorandom number generators", OOPSLA 2014),
vectorised over users. The same inputs always give the same numbers; no global state.

The compiled kernels (:mod:`driftrec.envs.kernels`) draw from the same streams, bit for bit
(``tests/envs/test_kernels.py``); where they need normals they turn pairs of uniform columns
into pairs of normals (Marsaglia's polar method, ``kernels._normal_pair``).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 2.0**-53

# Stream ids keep draws for different purposes apart even at equal counters.
STREAM_STEP = 1
STREAM_INIT = 2
STREAM_SESSION = 3
STREAM_CANDIDATES = 4


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche mix of uint64 values."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def user_keys(seeds: np.ndarray | list[int] | int) -> np.ndarray:
    """Stream keys from integer seeds in [0, 2**63): the seed a single-user env is reset with,
    or ``seed + i`` for user i of a vector env (the SB3 convention)."""
    s = np.atleast_1d(np.asarray(seeds))
    if s.dtype.kind not in "iu" or (s.size and (s.min() < 0 or s.max() >= 2**63)):
        raise ValueError(f"seeds must be integers in [0, 2**63), got {seeds!r}")
    return mix64(mix64(s.astype(np.uint64) * _GOLDEN + np.uint64(0x632BE59BD9B4E019)))


def episode_key(key: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Key of the ``episode``-th life drawn from a user stream (autoreset draws a new user)."""
    return mix64(key ^ mix64(episode.astype(np.uint64) * _GOLDEN + _GOLDEN))


def uniforms(key: np.ndarray, stream: int, counter: np.ndarray, n: int) -> np.ndarray:
    """(len(key), n) float64 uniforms in [0, 1), a pure function of (key, stream, counter, column)."""
    base = mix64(key ^ mix64(counter.astype(np.uint64) * np.uint64(64) + np.uint64(stream)))
    cols = np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN
    bits = mix64(base[:, None] + cols[None, :])
    return (bits >> _S11).astype(np.float64) * _TO_UNIT
