"""Step 4, sample and match: from sampled action values to one eligible message per user.

Thompson sampling gives every user a sampled value theta for each action of each action set
(channel, send hour, frequency, and one set per catalogue label dimension). A decision is:

1. send hour: the allowed local hour with the highest theta among the hours at which at
   least one message is eligible for the user (consent, activity, validity, country, repeat
   and spacing rules all checked at that hour's UTC instant in [D, D+1));
2. send or wait: the gap since the user's last send falls in bucket b if sent at that hour;
   send iff theta(b) is at least theta of every longer bucket (the gaps that waiting could
   still reach); otherwise wait. With send_rule 'null' (measured worse in the harness, see
   docs/policies.md): send iff the combination's sampled value (the mean theta of its hour,
   of b and of the message's channel and labels) beats a draw of the measured null (the
   reward rate of a placebo, a send that did nothing: marts.null_rewards);
3. message (Wolpertinger-style): the proto-action is the best sampled action of each
   message action set; each eligible message is scored by sum over its sets of
   (theta(set, its action) - the set's average theta), i.e. how close its actions come to
   the proto-action weighted by the sampled values (a missing label counts as average),
   and the best wins.

The decision and the propensity's resamples are compiled loops over users (numba): a user's
scores, decision and propensity are a function of that user's values alone (the scores are
summed in a fixed order, not by a matrix product whose last bits depend on the rows beside
it), so users can be decided in any chunks or shards (decide/shard.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numba import njit
from numba.core import types
from numba.extending import intrinsic

from nudgeflow.decide.action_space import frequency_labels, gap_bucket
from nudgeflow.decide.eligibility import Eligibility
from nudgeflow.decide.priors import NULL_ACTION
from nudgeflow.decide.sampling import DrawKeys, beta_sample, decide_threads, in_threads, thompson_sample


@dataclass
class Options:
    """The action space and the eligibility of one run (U users, A actions, M messages, H hours)."""

    action_set: np.ndarray  # (A,) name of the set of each action
    action: np.ndarray  # (A,) name of each action
    hour_actions: np.ndarray  # (H,) index into A of send_hour = each allowed hour
    frequency_actions: np.ndarray  # (B,) index into A of each frequency bucket, shortest first
    message_actions: np.ndarray  # (M, S) index into A of each message's channel and labels, -1 if none
    send_at: np.ndarray  # (U, H) datetime64[s] UTC instant of each local hour, NaT if none
    eligibility: Eligibility  # which message may be sent to which user at which hour
    gap_bucket: np.ndarray  # (U, H) frequency bucket (0..B-1) of a send at that hour
    null_action: int = -1  # index into A of the measured null (priors.NULL_ACTION), -1 if none

    @classmethod
    def build(
        cls,
        actions: list[tuple[str, str]],
        hours,
        frequency_edges,
        message_actions: np.ndarray,
        send_at: np.ndarray,
        eligibility: Eligibility,
        gap_hours: np.ndarray,
        send_rule: str = "longer",
    ) -> Options:
        """The options of a run from its actions ((action_set, action) pairs), allowed hours,
        frequency edges, message actions (action_space.message_actions) and eligibility.
        ``send_rule`` 'null' compares with the measured null (when the actions have it)."""
        a_index = {a: i for i, a in enumerate(actions)}
        return cls(
            action_set=np.array([s for s, _ in actions]),
            action=np.array([a for _, a in actions]),
            hour_actions=np.array([a_index[("send_hour", str(h))] for h in hours]),
            frequency_actions=np.array([a_index[("frequency", f)] for f in frequency_labels(frequency_edges)]),
            message_actions=message_actions,
            send_at=send_at,
            eligibility=eligibility,
            gap_bucket=gap_bucket(gap_hours, frequency_edges),
            null_action=a_index.get(NULL_ACTION, -1) if send_rule == "null" else -1,
        )

    @property
    def eligible(self) -> np.ndarray:
        """(U, M, H) bool: message m may be sent to user u at hour h (dense: for a few users)."""
        return self.eligibility.dense()

    def take(self, users: np.ndarray) -> Options:
        """The options of the users at these positions."""
        return replace(
            self,
            send_at=self.send_at[users],
            eligibility=self.eligibility.take(users),
            gap_bucket=self.gap_bucket[users],
        )


def _set_matrices(message_actions: np.ndarray, n_actions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For M messages with S action sets: membership (A, M), 1 where a is one of m's actions;
    averaging (A, S), 1/|s| for every action of set s the catalogue uses; present (S, M),
    1 where m has an action in s."""
    n_m, n_s = message_actions.shape
    membership = np.zeros((n_actions, n_m))
    averaging = np.zeros((n_actions, n_s))
    present = (message_actions >= 0).T.astype(float)
    for s in range(n_s):
        has = message_actions[:, s] >= 0
        np.add.at(membership, (message_actions[has, s], np.nonzero(has)[0]), 1.0)
        acts = np.unique(message_actions[has, s])
        if len(acts):
            averaging[acts, s] = 1.0 / len(acts)
    return membership, averaging, present


def set_averages(theta: np.ndarray, message_actions: np.ndarray) -> np.ndarray:
    """avg[..., s] = mean of theta over the actions of message action set s (column s of
    message_actions) that the catalogue uses: the value of an average message on that set."""
    return theta @ _set_matrices(message_actions, theta.shape[-1])[1]


@intrinsic
def _fma(typingctx, x, y, z):
    """x * y + z rounded once (IEEE fusedMultiplyAdd, llvm.fma): the same bits on every machine."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _profile_scores(theta, rows, weights, out):
    """out[p] = sum over the actions a in ``rows`` (increasing) of theta[a] * weights[a, p], each
    term added by one fused multiply-add, from 0: the score of profile p for one user."""
    out[:] = 0.0
    for a in rows:
        t = theta[a]
        w = weights[a]
        for p in range(out.size):
            out[p] = _fma(t, w[p], out[p])


@njit(cache=True, nogil=True)
def _scores_of_users(theta, rows, weights, out):
    for u in range(theta.shape[0]):
        _profile_scores(theta[u], rows, weights, out[u])


def message_scores(theta: np.ndarray, message_actions: np.ndarray) -> np.ndarray:
    """score[..., m] = sum over m's action sets s of (theta[..., its action in s] - the set's
    average theta, see set_averages); a missing label adds 0, as an average message would.

    Centring on the set's average, not on a fixed 1/2, keeps the number of labels out of the
    score: with reward rates near 0.4 every label would otherwise subtract about 0.1, and
    messages with fewer labels would win whatever their labels.

    Messages with the same channel and labels get bitwise the same score (each distinct
    profile is scored once), so a tie between them goes to the first, not to float noise.
    A user's scores are a function of its theta alone (summed in a fixed order, _profile_scores).
    """
    weights, profile = _profile_weights(message_actions, theta.shape[-1])
    flat = np.ascontiguousarray(theta, dtype=np.float64).reshape(-1, theta.shape[-1])
    out = np.empty((flat.shape[0], weights.shape[1]))
    _scores_of_users(flat, _weight_rows(weights), np.ascontiguousarray(weights), out)
    return out[:, profile].reshape(*theta.shape[:-1], profile.size)


def _profile_weights(message_actions: np.ndarray, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """The score weights (A, P) of each distinct profile (channel and labels, P of them) and
    the profile (M,) of each message: message_scores[..., m] = sum_a theta[..., a] weights[a, profile[m]]."""
    membership, averaging, present = _set_matrices(message_actions, n_actions)
    _, first, inverse = np.unique(message_actions, axis=0, return_index=True, return_inverse=True)
    return np.ascontiguousarray((membership - averaging @ present)[:, first]), inverse.ravel()


def _weight_rows(weights: np.ndarray) -> np.ndarray:
    """The actions with a weight in some profile's score (the message actions), increasing."""
    return np.nonzero((weights != 0).any(axis=1))[0]


@dataclass(frozen=True)
class _Cells:
    """An Eligibility as the compiled loops read it, cell by cell: eligible[u, m, h] =
    reachable[u, m] & valid[zone[u], m, h] & spacing[u, h], and at the user's repeat pairs
    (pair_message[pair_start[u]:pair_start[u + 1]], by message) repeat_ok[pair, h]."""

    reachable: np.ndarray
    zone: np.ndarray
    valid: np.ndarray
    spacing: np.ndarray
    pair_start: np.ndarray
    pair_message: np.ndarray
    repeat_ok: np.ndarray

    @classmethod
    def of(cls, e: Eligibility) -> _Cells:
        n_u, n_m = e.reachable.shape
        order = np.argsort(e.pair_user * n_m + e.pair_message, kind="stable")
        return cls(
            np.ascontiguousarray(e.reachable, dtype=np.bool_),
            np.ascontiguousarray(e.zone, dtype=np.int64),
            np.ascontiguousarray(e.valid, dtype=np.bool_),
            np.ascontiguousarray(e.spacing, dtype=np.bool_),
            np.searchsorted(e.pair_user[order], np.arange(n_u + 1)).astype(np.int64),
            np.ascontiguousarray(e.pair_message[order], dtype=np.int64),
            np.ascontiguousarray(e.repeat_ok[order], dtype=np.bool_).reshape(order.size, e.spacing.shape[1]),
        )

    def args(self) -> tuple:
        return (self.reachable, self.zone, self.valid, self.spacing, self.pair_start, self.pair_message, self.repeat_ok)


@njit(cache=True, nogil=True, inline="always")
def _eligible(u, m, h, reachable, zone, valid, spacing, pair_start, pair_message, repeat_ok):
    """eligible[u, m, h] (Eligibility.at's rules; of equal pairs the last counts, as there)."""
    if not (reachable[u, m] and valid[zone[u], m, h] and spacing[u, h]):
        return False
    ok = True
    for q in range(pair_start[u], pair_start[u + 1]):
        if pair_message[q] == m:
            ok = repeat_ok[q, h]
    return ok


@njit(cache=True, nogil=True, inline="always")
def _timing(theta, hour_cols, freq_cols, feasible, gap_bucket):
    """One user's timing: the best feasible hour (numpy argmax over theta of the hours, -inf
    where infeasible: the first best, 0 if none), whether any hour is feasible, the theta of
    the gap's bucket at that hour (``current``) and send rule 'longer' (current >= the theta
    of every longer bucket)."""
    hour, best, has_option = 0, -np.inf, False
    for h in range(hour_cols.size):
        if feasible[h]:
            has_option = True
            t = theta[hour_cols[h]]
            if math.isnan(best):
                break
            if t > best or math.isnan(t):
                hour, best = h, t
    bucket = gap_bucket[hour]
    current = theta[freq_cols[bucket]]
    best_longer = theta[freq_cols[freq_cols.size - 1]]
    for b in range(freq_cols.size - 2, bucket - 1, -1):
        t = theta[freq_cols[b]]
        best_longer = t if (t > best_longer or math.isnan(t)) else best_longer
    return hour, has_option, current, current >= best_longer


@njit(cache=True, nogil=True)
def _decide_users(
    lo,
    hi,
    theta,
    hour_cols,
    freq_cols,
    feasible,
    gap_bucket,
    rows,
    weights,
    profile,
    set_rows,
    set_start,
    own,
    cells,
    out,
):
    """decide's loop over users lo..hi-1: hour, has_option, current, send rule 'longer' and the best
    eligible message at the hour (numpy argmax over the scores, -inf where not eligible: the
    first best message, 0 if none).

    For theta in [0, 1] the messages are first ranked by the quick score (_centre): only those
    within twice _quick_tolerance of the best eligible one can be the best by the exact score
    (_profile_scores'), which is computed for them alone. Other thetas score every profile."""
    hour, has_option, current, longer, message = out
    reachable, zone, valid, spacing, pair_start, pair_message, repeat_ok = cells
    n_p, n_s = own.shape
    tol = 2.0 * _quick_tolerance(rows.size, n_s)
    score = np.empty(n_p)
    centred = np.zeros(theta.shape[1] + 1)
    quick = np.empty(n_p)
    for u in range(lo, hi):
        th = theta[u]
        h, has, cur, send = _timing(th, hour_cols, freq_cols, feasible[u], gap_bucket[u])
        hour[u], has_option[u], current[u], longer[u] = h, has, cur, send
        in_unit = True
        for a in rows:
            in_unit &= th[a] >= 0.0 and th[a] <= 1.0  # false for NaN
        best_m, best = 0, -np.inf
        if in_unit:
            _centre(th, set_rows, set_start, centred)
            for p in range(n_p):
                quick[p] = _quick(centred, own, p)
            for m in range(profile.size):  # the best quick score among the eligible messages
                q = quick[profile[m]]
                if q > best and _eligible(
                    u, m, h, reachable, zone, valid, spacing, pair_start, pair_message, repeat_ok
                ):
                    best = q
            low, best = best - tol, -np.inf
            for m in range(profile.size):  # the exact best among those close to it, the first of equal ones
                if quick[profile[m]] >= low and _eligible(
                    u, m, h, reachable, zone, valid, spacing, pair_start, pair_message, repeat_ok
                ):
                    exact = _exact_score(th, rows, weights, profile[m])
                    if exact > best:
                        best_m, best = m, exact
        else:
            _profile_scores(th, rows, weights, score)
            for m in range(profile.size):
                s = score[profile[m]]
                if (s > best or math.isnan(s)) and _eligible(
                    u, m, h, reachable, zone, valid, spacing, pair_start, pair_message, repeat_ok
                ):
                    best_m, best = m, s
                    if math.isnan(s):
                        break
        message[u] = best_m


def decide(theta: np.ndarray, opts: Options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply one set of sampled values (U, A) to the options.

    Returns (send, hour, message): send (U,) bool, hour and message (U,) indices (-1 where
    nothing is sent).
    """
    if np.ndim(theta) != 2:
        raise ValueError(f"decide takes one draw, theta of shape (users, actions), not {np.shape(theta)}")
    n_u = theta.shape[0]
    if opts.message_actions.shape[0] == 0:  # an empty catalogue: nothing to send
        return np.zeros(n_u, dtype=bool), np.full(n_u, -1), np.full(n_u, -1)
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    weights, profile = _profile_weights(opts.message_actions, theta.shape[1])
    out = (np.empty(n_u, np.int64), np.empty(n_u, np.bool_), np.empty(n_u), np.empty(n_u, np.bool_),
           np.empty(n_u, np.int64))  # fmt: skip
    cells = _Cells.of(opts.eligibility).args()
    rows = _weight_rows(weights)
    quick = _quick_args(opts.message_actions, rows, rows, theta.shape[1], profile)
    args = (theta, *_timing_args(opts), rows, weights, profile, *quick, cells, out)
    in_threads(lambda r: _decide_users(r[0], r[1], *args), _ranges(n_u))
    hour, has_option, current, longer, message = out
    if opts.null_action >= 0:
        # send iff the day's best combination beats a draw of the measured null
        send = has_option & (combination_value(theta, opts, hour, current, message) > theta[:, opts.null_action])
    else:
        send = has_option & longer
    return send, np.where(send, hour, -1), np.where(send, message, -1)


def _ranges(n: int, at_least: int = 2_000) -> list[tuple[int, int]]:
    """[0, n) in decide_threads() ranges of at least ``at_least`` (one if n is small)."""
    k = max(1, min(decide_threads(), n // at_least))
    edges = np.linspace(0, n, k + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def _timing_args(opts: Options, columns: np.ndarray | None = None) -> tuple:
    """The hour and frequency columns of theta (or of theta[:, columns]), feasible, gap_bucket."""
    hours, freqs = opts.hour_actions, opts.frequency_actions
    if columns is not None:
        hours, freqs = np.searchsorted(columns, hours), np.searchsorted(columns, freqs)
    return (
        np.ascontiguousarray(hours, dtype=np.int64),
        np.ascontiguousarray(freqs, dtype=np.int64),
        np.ascontiguousarray(opts.eligibility.feasible, dtype=np.bool_),
        np.ascontiguousarray(opts.gap_bucket, dtype=np.int64),
    )


def combination_value(
    theta: np.ndarray, opts: Options, hour: np.ndarray, current: np.ndarray, message: np.ndarray
) -> np.ndarray:
    """The sampled value of a combination, in the units of the null (a success probability):
    the mean of the sampled theta of its actions, one per action set: the chosen send hour,
    the frequency bucket of today's gap (``current``) and the message's channel and labels
    (a set the message has no label in is left out)."""
    theta_hour = np.take_along_axis(theta[..., opts.hour_actions], hour[..., None], -1)[..., 0]
    acts = opts.message_actions[message]  # (..., U, S)
    has = acts >= 0
    theta_msg = np.take_along_axis(theta, np.where(has, acts, 0), -1)
    total = theta_hour + current + np.where(has, theta_msg, 0.0).sum(axis=-1)
    return total / (2.0 + has.sum(axis=-1))


def propensity(
    alpha: np.ndarray,
    beta: np.ndarray,
    opts: Options,
    chosen: np.ndarray,
    keys: DrawKeys,
    draws: int,
    sharpness: float = 1.0,
) -> np.ndarray:
    """P(the policy sends message `chosen` to the user today), by resampling the posteriors.

    Resample i (1..draws) of a user is keyed by (seed, date, user, action, i) (``keys``, whose
    draw 0 is the logged one), so a user's propensity does not depend on the users decided
    with it. The logged draw counts as one of draws + 1 samples, so the estimate is in (0, 1].
    ``sharpness`` must be the one the logged draw used (``sampling.thompson_sample``).
    Computed for the users with a chosen message (chosen >= 0); NaN for the others.
    """
    out = np.full(alpha.shape[0], np.nan)
    users = np.nonzero(chosen >= 0)[0]
    sub, sub_keys, chosen, alpha, beta = opts.take(users), keys.take(users), chosen[users], alpha[users], beta[users]
    hits = np.zeros(users.size)
    if opts.null_action >= 0:  # the send rule weighs the message: resample every action
        for i in range(1, draws + 1):
            send, _, message = decide(thompson_sample(alpha, beta, sub_keys(i), sharpness), sub)
            hits += send & (message == chosen)
    elif users.size:
        # resample the hour and frequency actions, then the message actions only where the
        # draw sends at an hour at which the chosen message is eligible: the same counts
        timing = np.union1d(opts.hour_actions, opts.frequency_actions)
        weights, profile = _profile_weights(opts.message_actions, alpha.shape[1])
        rest = _weight_rows(weights)  # the message actions: the others weigh 0 in every score
        chosen_ok = np.ascontiguousarray(sub.eligibility.of_message(chosen))  # (U, H)
        # what does not depend on the draw, once (thompson_sample's k alpha, k beta as it computes them)
        need_u, need_t = np.nonzero(_timing_needed(sub, timing))  # the others cannot change the decision
        a_timing, b_timing = alpha[:, timing] * sharpness, beta[:, timing] * sharpness
        a_timing, b_timing = a_timing[need_u, need_t], b_timing[need_u, need_t]
        a_rest, b_rest = alpha[:, rest] * sharpness, beta[:, rest] * sharpness
        contest = _contest_args(opts.message_actions, rest, weights[rest], profile, chosen)
        timing_args = _timing_args(sub, timing)
        cells = _Cells.of(sub.eligibility).args()
        theta_timing = np.zeros((users.size, timing.size))
        hour, live = np.empty(users.size, np.int64), np.empty(users.size, np.bool_)
        rest_cols = np.tile(rest, users.size)
        for i in range(1, draws + 1):
            theta_timing[need_u, need_t] = beta_sample(a_timing, b_timing, sub_keys.at(i, need_u, timing[need_t]))
            _live_users(theta_timing, *timing_args, chosen_ok, hour, live)
            at = np.nonzero(live)[0]
            keys_rest = sub_keys.at(i, np.repeat(at, rest.size), rest_cols[: at.size * rest.size])
            theta_rest = beta_sample(a_rest[at], b_rest[at], keys_rest).reshape(at.size, rest.size)
            wins, hour_at = np.empty(at.size, np.int64), hour[at]

            def contest_of(r, theta_rest=theta_rest, at=at, hour_at=hour_at, wins=wins):
                wins[r[0] : r[1]] = _chosen_wins(
                    theta_rest[r[0] : r[1]], at[r[0] : r[1]], hour_at[r[0] : r[1]], *contest, cells
                )

            in_threads(contest_of, _ranges(at.size, 1_000))
            hits[at] += wins
    out[users] = (hits + 1.0) / (draws + 1.0)
    return out


def _timing_needed(opts: Options, timing: np.ndarray) -> np.ndarray:
    """(U, T) which of the timing actions (hours and frequency buckets, ``timing``) can change a
    user's hour or send-or-wait: the hours at which a message is eligible (the others are
    never chosen), and the buckets from the shortest gap of those hours on, unless that is the
    longest bucket (then the rule always sends). A draw left at 0 elsewhere gives the same
    decision, and as an action without a message its weight in the message scores is 0."""
    feasible = opts.eligibility.feasible
    n_b = opts.frequency_actions.size
    shortest = np.where(feasible, opts.gap_bucket, n_b - 1).min(axis=1, initial=n_b - 1)
    need = np.zeros((feasible.shape[0], timing.size), dtype=bool)
    for j, a in enumerate(timing):
        if a in opts.hour_actions:
            need[:, j] = feasible[:, np.nonzero(opts.hour_actions == a)[0][0]]
        else:
            need[:, j] = (np.nonzero(opts.frequency_actions == a)[0][0] >= shortest) & (shortest < n_b - 1)
    return need


@njit(cache=True, nogil=True)
def _live_users(theta, hour_cols, freq_cols, feasible, gap_bucket, chosen_ok, hour, live):
    """Per user of a resample (theta of the timing actions): its hour, and whether the draw
    sends (rule 'longer') at an hour at which the chosen message is eligible."""
    for u in range(theta.shape[0]):
        h, has, _, send = _timing(theta[u], hour_cols, freq_cols, feasible[u], gap_bucket[u])
        hour[u], live[u] = h, has and send and chosen_ok[u, h]


def _contest_args(
    message_actions: np.ndarray, rest: np.ndarray, weights: np.ndarray, profile: np.ndarray, chosen: np.ndarray
) -> tuple:
    """What _chosen_wins reads besides the draws (theta of the actions ``rest``, the actions
    with a score weight): the weights (R, P); the messages of each profile
    (members[start[p]:start[p + 1]], in catalogue order); the chosen message and its profile
    per user; and for the quick form of the scores, each set's actions (set_rows[set_start[s]:
    set_start[s + 1]], as columns of theta) and each profile's action in each set (own (P, S),
    R where it has none or the action has no weight)."""
    weights = np.ascontiguousarray(weights)
    n_r, n_p = weights.shape
    members = np.argsort(profile, kind="stable")
    start = np.searchsorted(profile[members], np.arange(n_p + 1))
    chosen = np.ascontiguousarray(chosen, dtype=np.int64)
    quick = _quick_args(message_actions, rest, np.arange(n_r), n_r, profile)
    return (np.arange(n_r), weights, members, start, chosen, profile[chosen], *quick)


def _quick_args(
    message_actions: np.ndarray, actions: np.ndarray, columns: np.ndarray, n_cols: int, profile: np.ndarray
) -> tuple:
    """For the quick score of theta (n_cols columns; ``columns`` those of ``actions``, the
    actions with a score weight): each set's actions (set_rows[set_start[s]:set_start[s + 1]],
    as columns of theta, n_cols where the action has no weight) and each profile's action in
    each set (own (P, S), n_cols where it has none or the action has no weight)."""
    first = np.unique(profile, return_index=True)[1]  # a message of each profile
    sets = [np.unique(message_actions[message_actions[:, s] >= 0, s]) for s in range(message_actions.shape[1])]
    column = np.full(max(message_actions.max(initial=0), actions.max(initial=0)) + 2, n_cols)
    column[actions] = columns
    set_rows = np.concatenate([column[acts] for acts in sets] + [np.zeros(0, np.int64)]).astype(np.int64)
    set_start = np.concatenate([[0], np.cumsum([acts.size for acts in sets])]).astype(np.int64)
    own = np.ascontiguousarray(column[message_actions[first]], dtype=np.int64)  # -1 indexes the last entry
    return set_rows, set_start, own


@njit(cache=True, nogil=True, inline="always")
def _quick_tolerance(n_rows, n_sets):
    """A bound, with a margin of 10, on |quick - exact score| for theta in [0, 1]: both sum
    n_rows + n_sets rounded terms below 2 n_sets in size."""
    return 64.0 * (n_rows + n_sets) * n_sets * 2.0**-52


@njit(cache=True, nogil=True, inline="always")
def _centre(theta, set_rows, set_start, centred):
    """centred[a] = theta[a] - the mean theta of a's set, for the actions with a weight."""
    n = centred.size - 1
    for s in range(set_start.size - 1):
        lo, hi = set_start[s], set_start[s + 1]
        total = 0.0
        for k in range(lo, hi):
            total += theta[set_rows[k]] if set_rows[k] < n else 0.0
        mean = total / max(hi - lo, 1)
        for k in range(lo, hi):
            if set_rows[k] < n:
                centred[set_rows[k]] = theta[set_rows[k]] - mean


@njit(cache=True, nogil=True, inline="always")
def _quick(centred, own, p):
    """Profile p's quick score: sum over its sets of (theta of its action - the set's mean)."""
    q = 0.0
    for s in range(own.shape[1]):
        q += centred[own[p, s]]
    return q


@njit(cache=True, nogil=True, inline="always")
def _exact_score(theta, rows, weights, p):
    """profile p's score as _profile_scores sums it (the same fused multiply-adds, in order)."""
    acc = 0.0
    for a in rows:
        acc = _fma(theta[a], weights[a, p], acc)
    return acc


@njit(cache=True, nogil=True)
def _chosen_wins(
    theta, users, hour, rows, weights, members, start, chosen, chosen_profile, set_rows, set_start, own, cells
):
    """Per row (user ``users[j]`` at ``hour[j]``, at which its chosen message is eligible):
    whether the chosen message is decide's best message, numpy's argmax over the eligible
    messages' scores. It is, unless an eligible message of another profile scores above it,
    or an eligible message before it (in catalogue order) scores the same.

    Profiles are first compared by a quick form of the score, sum over sets of (theta of the
    profile's action - the set's mean theta); only where that is within twice _quick_tolerance
    of the chosen profile's is the exact score (_profile_scores') computed and compared."""
    reachable, zone, valid, spacing, pair_start, pair_message, repeat_ok = cells
    n_p, n_s, n_r = own.shape[0], own.shape[1], rows.size
    tol = 2.0 * _quick_tolerance(n_r, n_s)  # two quick scores this far apart compare the same way exactly
    wins = np.zeros(users.size, dtype=np.int64)
    centred = np.zeros(n_r + 1)  # theta - its set's mean; the last entry 0 (no action)
    for j in range(users.size):
        u, h = users[j], hour[j]
        c, cp = chosen[u], chosen_profile[u]
        th = theta[j]
        _centre(th, set_rows, set_start, centred)
        q_chosen = _quick(centred, own, cp)
        low, high = q_chosen - tol, q_chosen + tol
        target = np.nan  # the chosen profile's exact score, when needed
        win = True
        for p in range(n_p):
            q = _quick(centred, own, p)
            if q < low:
                continue
            above = q > high
            if not above:
                if math.isnan(target):
                    target = _exact_score(th, rows, weights, cp)
                score = _exact_score(th, rows, weights, p)
                if score < target:
                    continue
                above = score > target
            for k in range(start[p], start[p + 1]):
                m = members[k]
                if not above and m >= c:
                    break  # a tie goes to the first eligible message
                if _eligible(u, m, h, reachable, zone, valid, spacing, pair_start, pair_message, repeat_ok):
                    win = False
                    break
            if not win:
                break
        wins[j] = win
    return wins
