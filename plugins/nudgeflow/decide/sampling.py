"""Thompson sampling draws one theta per (u, s, a), from the posterior reshaped to explore
less (``sampling_sharpness``: same mean, variance divided by about k). Draws are keyed by
(seed, date, user, action set, action): a rerun repeats them, and adding a user or an action
does not change anybody else's draws.

Draws are counter-based random numbers: a draw is a pure function of its key.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def stable_hash(values) -> np.ndarray:
    """64-bit key of each string (first 8 bytes of its MD5), stable across runs and platforms."""
    return np.array(
        [int.from_bytes(hashlib.md5(str(v).encode()).digest()[:8], "little") for v in values], dtype=np.uint64
    )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(key: np.ndarray, stream: int) -> np.ndarray:
    """U(0, 1) from (key, stream), never exactly 0 or 1."""
    bits = _splitmix64(key ^ _splitmix64(np.full(key.shape, stream, dtype=np.uint64)))
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0


def _gamma(shape: np.ndarray, key: np.ndarray, stream: int, max_tries: int = 64) -> np.ndarray:
    """Gamma(shape, 1) by Marsaglia-Tsang, shape boosted by one and scaled by U^(1/shape) below 1."""
    boost = shape < 1
    a = np.where(boost, shape + 1.0, shape)
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    out = d.copy()  # the mode, kept in the (never seen) case every try is rejected
    pending = np.ones(shape.shape, dtype=bool)
    for attempt in range(max_tries):
        idx = np.nonzero(pending)[0]
        if idx.size == 0:
            break
        k = key[idx]
        s = stream + 4 * attempt
        u1, u2, u3 = _uniform(k, s), _uniform(k, s + 1), _uniform(k, s + 2)
        x = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        v = (1.0 + c[idx] * x) ** 3
        ok = v > 0
        logv = np.log(np.where(ok, v, 1.0))
        accept = ok & (np.log(u3) < 0.5 * x * x + d[idx] - d[idx] * v + d[idx] * logv)
        out[idx[accept]] = d[idx[accept]] * v[accept]
        pending[idx[accept]] = False
    u = _uniform(key, stream + 4 * max_tries)
    return np.where(boost, out * u ** (1.0 / np.where(boost, shape, 1.0)), out)


def beta_sample(alpha: np.ndarray, beta: np.ndarray, key: np.ndarray) -> np.ndarray:
    """One Beta(alpha, beta) draw per element, a pure function of its uint64 key."""
    alpha, beta = np.asarray(alpha, dtype=np.float64).ravel(), np.asarray(beta, dtype=np.float64).ravel()
    key = np.asarray(key, dtype=np.uint64).ravel()
    x = _gamma(alpha, key, stream=0)
    y = _gamma(beta, key, stream=1_000)
    total = x + y
    # both gammas can underflow to 0 for tiny shapes: fall back to the mean
    return np.where(total > 0, x / np.where(total > 0, total, 1.0), alpha / (alpha + beta))


def draw_keys(seed: int, day_ordinal: int, user_ids, action_keys, draw: int = 0) -> np.ndarray:
    """Key of the draw for (seed, date, user, action, draw index): users x actions matrix."""
    base = _splitmix64(np.array([seed * 1_000_003 + day_ordinal * 7 + draw], dtype=np.uint64))
    u = _splitmix64(stable_hash(user_ids) ^ base)
    return _splitmix64(u[:, None] ^ stable_hash(action_keys)[None, :])


def thompson_sample(alpha: np.ndarray, beta: np.ndarray, keys: np.ndarray, sharpness: float = 1.0) -> np.ndarray:
    """theta ~ Beta(k alpha, k beta) for every (user, action), keyed draws (same shape as alpha).

    k = ``sharpness`` reshapes the posterior for sampling (Chapelle & Li 2011, the paper's
    reference [4]): the same mean, the variance divided by about k. k = 1 is plain Thompson
    sampling; k > 1 explores less, where near-equal actions would otherwise be drawn almost
    uniformly. Propensities must be resampled with the same k (``matching.propensity``).
    """
    return beta_sample(np.asarray(alpha) * sharpness, np.asarray(beta) * sharpness, keys).reshape(np.shape(alpha))
