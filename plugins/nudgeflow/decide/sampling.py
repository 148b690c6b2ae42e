"""Thompson sampling draws one theta per (u, s, a), from the posterior reshaped to explore
less (``sampling_sharpness``: same mean, variance divided by about k). Draws are keyed by
(seed, date, user, action set, action): a rerun repeats them, and adding a user or an action
does not change anybody else's draws.

Draws are counter-based random numbers: a draw is a pure function of its key.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from numba import njit

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def stable_hash(values) -> np.ndarray:
    """64-bit key of each string (first 8 bytes of its MD5), stable across runs and platforms."""
    return np.array(
        [int.from_bytes(hashlib.md5(str(v).encode()).digest()[:8], "little") for v in values], dtype=np.uint64
    )


def _splitmix64(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """splitmix64's finaliser of x + golden gamma (mod 2^64), in one new array (or in x); of a
    scalar, the compiled _mix."""
    if np.ndim(x) == 0:
        return np.uint64(_mix(np.uint64(x)))
    with np.errstate(over="ignore"):
        z = np.add(x, np.uint64(0x9E3779B97F4A7C15), out=x if inplace else None)
        t = np.right_shift(z, np.uint64(30))  # one scratch array for the three shifts
        z ^= t
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= np.right_shift(z, np.uint64(27), out=t)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= np.right_shift(z, np.uint64(31), out=t)
        return z


@njit(cache=True, nogil=True)
def _mix(z):
    """splitmix64's finaliser of z + golden gamma (mod 2^64), of one uint64: _splitmix64's formula."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


@njit(cache=True, nogil=True)
def _unit(key, stream_mix):
    """U(0, 1) of a key and the mixed stream (``_mix(stream)``), never exactly 0 or 1: the top
    53 bits of _mix(key ^ stream_mix), plus 1/2, times 2^-53."""
    return (float(_mix(key ^ stream_mix) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


def _stream_mix(stream: int) -> np.uint64:
    return _splitmix64(np.uint64(stream))


@njit(cache=True, nogil=True)
def _uniforms(key, at, stream_mix, out):
    """The uniforms of one stream for the keys at positions ``at``."""
    for j in range(at.size):
        out[j] = _unit(key[at[j]], stream_mix)


@njit(cache=True, nogil=True)
def _three_uniforms(key, at, s0, s1, s2, u1, u2, u3):
    """The three uniforms of a Marsaglia-Tsang try (streams s, s + 1, s + 2, mixed)."""
    for j in range(at.size):
        k = key[at[j]]
        u1[j], u2[j], u3[j] = _unit(k, s0), _unit(k, s1), _unit(k, s2)


@njit(cache=True, nogil=True)
def _shape_constants(shape, d, c, mode):
    """Marsaglia-Tsang's d = a - 1/3 and c = 1 / sqrt(9 d), a = shape boosted by one below 1,
    and the mode d (kept in the never seen case that every try is rejected); returns the
    number of boosted shapes."""
    n_boost = 0
    for i in range(shape.size):
        a = shape[i]
        if a < 1:
            a = a + 1.0
            n_boost += 1
        d[i] = a - 1.0 / 3.0
        c[i] = 1.0 / math.sqrt(9.0 * d[i])
        mode[i] = d[i]
    return n_boost


@njit(cache=True, nogil=True)
def _normal_and_cube_root(log_u1, u2, c, at, x, v):
    """x = sqrt(-2 log u1) cos(2 pi u2), a standard normal (Box-Muller), and 1 + c x, whose
    cube is the try's v; in the formulas' order."""
    for j in range(at.size):
        x[j] = math.sqrt(log_u1[j] * -2.0) * math.cos(u2[j] * (2.0 * np.pi))
        v[j] = c[at[j]] * x[j] + 1.0


@njit(cache=True, nogil=True)
def _positive_or_one(v, out):
    for j in range(v.size):
        out[j] = v[j] if v[j] > 0 else 1.0


@njit(cache=True, nogil=True)
def _accept(x, v, log_v, log_u3, d, at, out):
    """Marsaglia-Tsang's test log u3 < x^2 / 2 + d - d v + d log v (left to right); the
    accepted elements get d v in ``out``; returns the positions still pending."""
    pending = np.empty(at.size, dtype=np.int64)
    n = 0
    for j in range(at.size):
        i = at[j]
        rhs = 0.5 * x[j] * x[j] + d[i] - d[i] * v[j] + d[i] * log_v[j]
        if v[j] > 0 and log_u3[j] < rhs:
            out[i] = d[i] * v[j]
        else:
            pending[n] = i
            n += 1
    return pending[:n]


def _gamma(shape: np.ndarray, key: np.ndarray, stream: int, max_tries: int = 64) -> np.ndarray:
    """Gamma(shape, 1) by Marsaglia-Tsang, shape boosted by one and scaled by U^(1/shape) below 1.

    The uniforms, Box-Muller's sqrt and cos and the test are compiled loops; the logs and
    the cube are numpy's own ufuncs (numpy's SIMD log and pow are not libm's: this keeps
    every draw bitwise what numpy computes). Each element goes through the same
    floating-point operations as if it were drawn alone. A try runs on the pending elements
    only (a few in a thousand after the first)."""
    n = shape.size
    d, c, out, u1, u2, u3, x, v, w = np.empty((9, n))
    n_boost = _shape_constants(shape, d, c, out)
    at = np.arange(n)
    for attempt in range(max_tries):
        m = at.size
        s = stream + 4 * attempt
        b1, b2, b3, bx, bv, bw = u1[:m], u2[:m], u3[:m], x[:m], v[:m], w[:m]
        _three_uniforms(key, at, _stream_mix(s), _stream_mix(s + 1), _stream_mix(s + 2), b1, b2, b3)
        np.log(b1, out=b1)
        _normal_and_cube_root(b1, b2, c, at, bx, bv)
        np.power(bv, 3, out=bv)
        _positive_or_one(bv, bw)
        np.log(bw, out=bw)
        np.log(b3, out=b3)
        at = _accept(bx, bv, bw, b3, d, at, out)
        if at.size == 0:
            break
    if n_boost:
        at = np.nonzero(shape < 1)[0]
        u = np.empty(at.size)
        _uniforms(key, at, _stream_mix(stream + 4 * max_tries), u)
        out[at] = out[at] * u ** (1.0 / shape[at])
    return out


@njit(cache=True, nogil=True)
def _beta_of_gammas(x, y, a, b, out):
    """x / (x + y), or the mean a / (a + b) where both gammas underflow to 0."""
    for i in range(x.size):
        total = x[i] + y[i]
        out[i] = x[i] / total if total > 0 else a[i] / (a[i] + b[i])


def beta_sample(alpha: np.ndarray, beta: np.ndarray, key: np.ndarray, block: int = 1 << 15) -> np.ndarray:
    """One Beta(alpha, beta) draw per element, a pure function of its uint64 key (computed
    ``block`` elements at a time, so that the temporaries stay in the CPU cache; the blocks
    on ``in_threads``' threads)."""
    alpha = np.ascontiguousarray(alpha, dtype=np.float64).ravel()
    beta = np.ascontiguousarray(beta, dtype=np.float64).ravel()
    key = np.ascontiguousarray(key, dtype=np.uint64).ravel()
    out = np.empty(alpha.size)

    def draw(lo: int) -> None:
        a, b, k = alpha[lo : lo + block], beta[lo : lo + block], key[lo : lo + block]
        _beta_of_gammas(_gamma(a, k, stream=0), _gamma(b, k, stream=1_000), a, b, out[lo : lo + block])

    in_threads(draw, range(0, alpha.size, block))
    return out


def decide_threads() -> int:
    """Threads for the compiled loops: ``NUDGEFLOW_DECIDE_THREADS``, else the CPUs this process
    may run on. The loops release the GIL (numba ``nogil``, numpy's ufuncs), so threads run
    them in parallel; every thread computes whole elements, so the results do not depend on
    the number of threads."""
    value = os.environ.get("NUDGEFLOW_DECIDE_THREADS")
    if value:
        return max(1, int(value))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_POOL: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child makes its own


def in_threads(fn, items) -> None:
    """fn(item) for every item, on decide_threads() threads (in this thread if one, or one item)."""
    items = list(items)
    n = min(decide_threads(), len(items))
    if n <= 1:
        for item in items:
            fn(item)
        return
    pool = _POOL.get(os.getpid())
    if pool is None or pool._max_workers < n:
        pool = _POOL[os.getpid()] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="nudgeflow-decide")
    for f in [pool.submit(fn, item) for item in items]:
        f.result()


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

    def base(self, draw: int = 0) -> np.uint64:
        """The key of (seed, date, draw index) that every user's key of that draw mixes in."""
        # the resamples (draw >= 1) are offset by a prime far beyond any date: with "+ draw" alone,
        # resample 7 of day D had the keys of the logged draw of day D + 1
        offset = draw * 2_147_483_647 if draw else 0
        return _splitmix64(np.array([self.seed * 1_000_003 + self.day_ordinal * 7 + offset], dtype=np.uint64))[0]

    def __call__(self, draw: int = 0, actions=slice(None)) -> np.ndarray:
        """The keys of a draw index for all users and these actions (default all)."""
        action_hash = np.ascontiguousarray(self.action_hash[actions])
        out = np.empty((self.user_hash.size, action_hash.size), dtype=np.uint64)
        _matrix_keys(np.ascontiguousarray(self.user_hash), self.base(draw), action_hash, out)
        return out

    def at(self, draw: int, users: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The keys of a draw index at these (user position, action index) pairs: the elements
        ``self(draw)[users, actions]``, without the users x actions matrix."""
        out = np.empty(users.size, dtype=np.uint64)
        _pair_keys(np.ascontiguousarray(self.user_hash), self.base(draw), np.ascontiguousarray(self.action_hash),
                   users, actions, out)  # fmt: skip
        return out

    def take(self, users: np.ndarray) -> DrawKeys:
        """The keys of the users at these positions."""
        return replace(self, user_hash=self.user_hash[users])


@njit(cache=True, nogil=True)
def _matrix_keys(user_hash, base, action_hash, out):
    """out[u, a] = _mix(_mix(user_hash[u] ^ base) ^ action_hash[a])."""
    for u in range(user_hash.size):
        mixed = _mix(user_hash[u] ^ base)
        for a in range(action_hash.size):
            out[u, a] = _mix(mixed ^ action_hash[a])


@njit(cache=True, nogil=True)
def _pair_keys(user_hash, base, action_hash, users, actions, out):
    """out[j] = the key of (users[j], actions[j]), as _matrix_keys."""
    for j in range(users.size):
        out[j] = _mix(_mix(user_hash[users[j]] ^ base) ^ action_hash[actions[j]])


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
