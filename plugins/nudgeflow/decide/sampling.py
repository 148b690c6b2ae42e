"""Thompson sampling draws one theta per (u, s, a), from the posterior reshaped to explore
less (``sampling_sharpness``: same mean, variance divided by about k). Draws are keyed by
(seed, date, user, action set, action): a rerun repeats them, and adding a user or an action
does not change anybody else's draws.

Draws are counter-based random numbers: a draw is a pure function of its key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def stable_hash(values) -> np.ndarray:
    """64-bit key of each string (first 8 bytes of its MD5), stable across runs and platforms."""
    return np.array(
        [int.from_bytes(hashlib.md5(str(v).encode()).digest()[:8], "little") for v in values], dtype=np.uint64
    )


def _splitmix64(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """splitmix64's finaliser of x + golden gamma (mod 2^64), in one new array (or in x)."""
    with np.errstate(over="ignore"):
        z = np.add(x, np.uint64(0x9E3779B97F4A7C15), out=x if inplace else None)
        if np.ndim(z) == 0:  # a scalar: no arrays to reuse
            z = np.uint64(z)
            z ^= z >> np.uint64(30)
            z *= np.uint64(0xBF58476D1CE4E5B9)
            z ^= z >> np.uint64(27)
            z *= np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
            return z
        t = np.right_shift(z, np.uint64(30))  # one scratch array for the three shifts
        z ^= t
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= np.right_shift(z, np.uint64(27), out=t)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= np.right_shift(z, np.uint64(31), out=t)
        return z


def _uniform(key: np.ndarray, stream: int) -> np.ndarray:
    """U(0, 1) from (key, stream), never exactly 0 or 1."""
    bits = _splitmix64(key ^ _splitmix64(np.array(stream, dtype=np.uint64)), inplace=True)
    bits >>= np.uint64(11)  # 53 bits: exact as int64 and as float64
    out = bits.view(np.int64).astype(np.float64)
    out += 0.5
    out *= 1.0 / 9007199254740992.0  # a power of two: the same as dividing by 2^53
    return out


def _gamma(shape: np.ndarray, key: np.ndarray, stream: int, max_tries: int = 64) -> np.ndarray:
    """Gamma(shape, 1) by Marsaglia-Tsang, shape boosted by one and scaled by U^(1/shape) below 1.

    The first try runs on every element; the later tries (a few in a thousand of the elements)
    on the pending ones only, and the boost's uniform only where shape < 1. The arithmetic is
    done in place where it can be, in the order of the formulas: each element goes through the
    same floating-point operations as if it were drawn alone."""
    boost = shape < 1
    a = np.where(boost, shape + 1.0, shape)
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    out = d.copy()  # the mode, kept in the (never seen) case every try is rejected
    idx = None  # None: every element is pending (the first try)
    for attempt in range(max_tries):
        k, ci, di = (key, c, d) if idx is None else (key[idx], c[idx], d[idx])
        s = stream + 4 * attempt
        u1, u2, u3 = _uniform(k, s), _uniform(k, s + 1), _uniform(k, s + 2)
        x = np.log(u1, out=u1)  # x = sqrt(-2 log u1) cos(2 pi u2)
        x *= -2.0
        np.sqrt(x, out=x)
        u2 *= 2.0 * np.pi
        x *= np.cos(u2, out=u2)
        v = np.multiply(ci, x)  # v = (1 + c x)^3
        v += 1.0
        np.power(v, 3, out=v)
        ok = v > 0
        logv = np.log(np.where(ok, v, 1.0))
        rhs = np.multiply(0.5, x)  # 0.5 x x + d - d v + d log v, left to right
        rhs *= x
        rhs += di
        rhs -= np.multiply(di, v, out=x)
        rhs += np.multiply(di, logv, out=logv)
        accept = ok & (np.log(u3, out=u3) < rhs)
        if idx is None:
            np.copyto(out, np.multiply(d, v, out=v), where=accept)
            idx = np.nonzero(~accept)[0]
        else:
            out[idx[accept]] = di[accept] * v[accept]
            idx = idx[~accept]
        if idx.size == 0:
            break
    if boost.any():
        at = np.nonzero(boost)[0]
        u = _uniform(key[at], stream + 4 * max_tries)
        out[at] = out[at] * u ** (1.0 / shape[at])
    return out


def beta_sample(alpha: np.ndarray, beta: np.ndarray, key: np.ndarray, block: int = 1 << 15) -> np.ndarray:
    """One Beta(alpha, beta) draw per element, a pure function of its uint64 key (computed
    ``block`` elements at a time, so that the temporaries stay in the CPU cache)."""
    alpha, beta = np.asarray(alpha, dtype=np.float64).ravel(), np.asarray(beta, dtype=np.float64).ravel()
    key = np.asarray(key, dtype=np.uint64).ravel()
    out = np.empty(alpha.size)
    for lo in range(0, alpha.size, block):
        a, b, k = alpha[lo : lo + block], beta[lo : lo + block], key[lo : lo + block]
        x = _gamma(a, k, stream=0)
        total = x + _gamma(b, k, stream=1_000)
        # both gammas can underflow to 0 for tiny shapes: fall back to the mean
        out[lo : lo + block] = np.where(total > 0, x / np.where(total > 0, total, 1.0), a / (a + b))
    return out


@dataclass(frozen=True)
class DrawKeys:
    """The draw keys of (seed, date) for some users and actions, their strings hashed once:
    ``keys(draw)`` is the users x actions matrix of :func:`draw_keys` for that draw index."""

    seed: int
    day_ordinal: int
    user_hash: np.ndarray  # (U,) stable_hash of the user ids
    action_hash: np.ndarray  # (A,) stable_hash of the action keys

    @classmethod
    def of(cls, seed: int, day_ordinal: int, user_ids, action_keys) -> DrawKeys:
        return cls(seed, day_ordinal, stable_hash(user_ids), stable_hash(action_keys))

    def __call__(self, draw: int = 0, actions=slice(None)) -> np.ndarray:
        """The keys of a draw index for all users and these actions (default all)."""
        # the resamples (draw >= 1) are offset by a prime far beyond any date: with "+ draw" alone,
        # resample 7 of day D had the keys of the logged draw of day D + 1
        offset = draw * 2_147_483_647 if draw else 0
        base = _splitmix64(np.array([self.seed * 1_000_003 + self.day_ordinal * 7 + offset], dtype=np.uint64))
        u = _splitmix64(self.user_hash ^ base)
        return _splitmix64(u[:, None] ^ self.action_hash[None, actions])

    def take(self, users: np.ndarray) -> DrawKeys:
        """The keys of the users at these positions."""
        return replace(self, user_hash=self.user_hash[users])


def draw_keys(seed: int, day_ordinal: int, user_ids, action_keys, draw: int = 0) -> np.ndarray:
    """Key of the draw for (seed, date, user, action, draw index): users x actions matrix."""
    return DrawKeys.of(seed, day_ordinal, user_ids, action_keys)(draw)


def thompson_sample(alpha: np.ndarray, beta: np.ndarray, keys: np.ndarray, sharpness: float = 1.0) -> np.ndarray:
    """theta ~ Beta(k alpha, k beta) for every (user, action), keyed draws (same shape as alpha).

    k = ``sharpness`` reshapes the posterior for sampling (Chapelle & Li 2011, the paper's
    reference [4]): the same mean, the variance divided by about k. k = 1 is plain Thompson
    sampling; k > 1 explores less, where near-equal actions would otherwise be drawn almost
    uniformly. Propensities must be resampled with the same k (``matching.propensity``).
    """
    return beta_sample(np.asarray(alpha) * sharpness, np.asarray(beta) * sharpness, keys).reshape(np.shape(alpha))
