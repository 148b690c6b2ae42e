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

Everything is vectorised over users, and a user's decision and propensity depend only on that
user's values, so users can be decided in any chunks or shards (decide/shard.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nudgeflow.decide.action_space import frequency_labels, gap_bucket
from nudgeflow.decide.eligibility import Eligibility
from nudgeflow.decide.priors import NULL_ACTION
from nudgeflow.decide.sampling import DrawKeys, beta_sample, thompson_sample


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


def message_scores(theta: np.ndarray, message_actions: np.ndarray) -> np.ndarray:
    """score[..., m] = sum over m's action sets s of (theta[..., its action in s] - the set's
    average theta, see set_averages); a missing label adds 0, as an average message would.

    Centring on the set's average, not on a fixed 1/2, keeps the number of labels out of the
    score: with reward rates near 0.4 every label would otherwise subtract about 0.1, and
    messages with fewer labels would win whatever their labels.

    Messages with the same channel and labels get bitwise the same score (each distinct
    profile is scored once), so a tie between them goes to the first, not to float noise.
    """
    weights, profile = _profile_weights(message_actions, theta.shape[-1])
    return (theta @ weights)[..., profile]  # one product over the actions


def _profile_weights(message_actions: np.ndarray, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """The score weights (A, P) of each distinct profile (channel and labels, P of them) and
    the profile (M,) of each message: message_scores = (theta @ weights)[..., profile]."""
    membership, averaging, present = _set_matrices(message_actions, n_actions)
    _, first, inverse = np.unique(message_actions, axis=0, return_index=True, return_inverse=True)
    return (membership - averaging @ present)[:, first], inverse.ravel()


def decide(theta: np.ndarray, opts: Options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply one set of sampled values (..., U, A) to the options.

    Returns (send, hour, message): send (..., U) bool, hour and message (..., U) indices
    (-1 where nothing is sent).
    """
    if opts.message_actions.shape[0] == 0:  # an empty catalogue: nothing to send
        nothing = np.zeros(theta.shape[:-1], dtype=bool)
        return nothing, np.full(nothing.shape, -1), np.full(nothing.shape, -1)
    hour, has_option, theta_freq, bucket, current = _timing(theta, opts)
    message = _best_message(theta, opts, hour)
    if opts.null_action >= 0:
        # send iff the day's best combination beats a draw of the measured null
        send = has_option & (combination_value(theta, opts, hour, current, message) > theta[..., opts.null_action])
    else:
        send = has_option & _longer_is_no_better(theta_freq, bucket, current)
    return send, np.where(send, hour, -1), np.where(send, message, -1)


def _timing(theta: np.ndarray, opts: Options) -> tuple[np.ndarray, ...]:
    """The best feasible hour (..., U), whether there is one, the frequency thetas (..., U, B),
    the bucket of the gap at that hour and its theta (``current``)."""
    feasible = opts.eligibility.feasible  # (U, H)
    hour = np.where(feasible, theta[..., opts.hour_actions], -np.inf).argmax(axis=-1)
    has_option = feasible.any(axis=1) & np.ones(hour.shape, dtype=bool)
    theta_freq = theta[..., opts.frequency_actions]
    bucket = opts.gap_bucket[np.arange(opts.gap_bucket.shape[0]), hour]
    current = np.take_along_axis(theta_freq, bucket[..., None], -1)[..., 0]
    return hour, has_option, theta_freq, bucket, current


def _longer_is_no_better(theta_freq: np.ndarray, bucket: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Send rule 'longer': the bucket of this gap is at least as good as every longer one."""
    best_longer = np.flip(np.maximum.accumulate(np.flip(theta_freq, -1), axis=-1), -1)
    return current >= np.take_along_axis(best_longer, bucket[..., None], -1)[..., 0]


def _best_message(theta: np.ndarray, opts: Options, hour: np.ndarray) -> np.ndarray:
    """The best-scoring message among those eligible at each user's hour (..., U)."""
    score = message_scores(theta, opts.message_actions)  # (..., U, M)
    return np.where(opts.eligibility.at(hour), score, -np.inf).argmax(axis=-1)


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
        rest = np.setdiff1d(np.arange(alpha.shape[1]), timing)
        chosen_ok = sub.eligibility.of_message(chosen)  # (U, H)
        # what does not depend on the draw, once (thompson_sample's k alpha, k beta as it computes them)
        need = _timing_needed(sub, timing)  # (U, T): the others cannot change the decision
        a_timing, b_timing = (alpha[:, timing] * sharpness)[need], (beta[:, timing] * sharpness)[need]
        a_rest, b_rest = alpha[:, rest] * sharpness, beta[:, rest] * sharpness
        contest = _Contest(sub, chosen, alpha.shape[1])
        rows = np.arange(users.size)
        for i in range(1, draws + 1):
            theta_timing = np.zeros(need.shape)
            theta_timing[need] = beta_sample(a_timing, b_timing, sub_keys(i, timing)[need])
            theta = np.zeros(alpha.shape)
            theta[:, timing] = theta_timing
            hour, has_option, theta_freq, bucket, current = _timing(theta, sub)
            send = has_option & _longer_is_no_better(theta_freq, bucket, current)
            live = np.nonzero(send & chosen_ok[rows, hour])[0]
            theta = theta[live]
            keys_rest = sub_keys.take(live)(i, rest)
            theta[:, rest] = beta_sample(a_rest[live], b_rest[live], keys_rest).reshape(live.size, rest.size)
            hits[live] += contest.chosen_wins(theta, live, hour[live])
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


class _Contest:
    """Whether the chosen message wins _best_message, without scoring users x messages:
    the same answer as ``_best_message(theta, opts.take(live), hour) == chosen[live]``.

    The winner is the first eligible message of the best-scoring profile that has one (messages
    of one profile score bitwise the same, ``message_scores``). So each round looks at each
    undecided user's best remaining profile: if it has no message eligible at the user's hour,
    it is struck out; if it scores above the chosen message's profile, the chosen one loses; if
    it is the chosen one's profile and no other profile ties it, the chosen message wins unless
    an eligible message of its profile comes before it. Ties between profiles, and users still
    undecided after ``rounds``, take the full argmax over their eligible messages."""

    def __init__(self, opts: Options, chosen: np.ndarray, n_actions: int, rounds: int = 4):
        self.opts, self.chosen, self.rounds = opts, chosen, rounds
        self.weights, self.profile = _profile_weights(opts.message_actions, n_actions)
        n_m = self.profile.size
        self.members = np.argsort(self.profile, kind="stable")  # by profile, then message
        self.size = np.bincount(self.profile, minlength=self.weights.shape[1])
        self.start = np.cumsum(self.size) - self.size
        rank = np.empty(n_m, dtype=np.int64)
        rank[self.members] = np.arange(n_m) - self.start[self.profile[self.members]]
        self.chosen_profile, self.before = self.profile[chosen], rank[chosen]  # messages of its profile before it
        e = opts.eligibility
        pair = e.pair_user * n_m + e.pair_message
        self.pair_order = np.argsort(pair, kind="stable")
        self.pair_sorted = pair[self.pair_order]

    def _eligible(self, users: np.ndarray, messages: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """eligible[users, messages, hours] cell by cell (Eligibility.at's rules)."""
        e = self.opts.eligibility
        ok = e.reachable[users, messages] & e.valid[e.zone[users], messages, hours] & e.spacing[users, hours]
        if self.pair_sorted.size:
            key = users * self.profile.size + messages
            # the last of equal pairs, as Eligibility.at's in-place assignment keeps the last
            at = np.maximum(np.searchsorted(self.pair_sorted, key, side="right") - 1, 0)
            found = self.pair_sorted[at] == key
            p = self.pair_order[at[found]]
            ok[found] &= e.repeat_ok[p, hours[found]]
        return ok

    def _any_eligible(self, users, hours, first, count) -> np.ndarray:
        """Per row: is any of messages members[first : first + count] eligible at its hour."""
        row = np.repeat(np.arange(users.size), count)
        offset = np.arange(row.size) - np.repeat(np.cumsum(count) - count, count)
        ok = self._eligible(users[row], self.members[np.repeat(first, count) + offset], hours[row])
        return np.bincount(row[ok], minlength=users.size) > 0

    def chosen_wins(self, theta: np.ndarray, users: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """theta (n, A) of the users at these positions of ``opts`` and their hours (n,), at
        which their chosen message is eligible."""
        score = theta @ self.weights  # (n, P): bitwise message_scores' product
        n = users.size
        wins = np.zeros(n, dtype=bool)
        own = self.chosen_profile[users]
        target = score[np.arange(n), own]
        todo = np.arange(n)  # undecided rows
        full = []  # rows for the full argmax
        for _ in range(self.rounds):
            if todo.size == 0:
                break
            # over all rows while most are undecided (cheaper than copying them), then over those
            top = score.argmax(axis=1)[todo] if 2 * todo.size > n else score[todo].argmax(axis=1)
            u, h = users[todo], hour[todo]
            has = self._any_eligible(u, h, self.start[top], self.size[top])
            mine = top == own[todo]
            # the chosen profile on top: decided unless another profile ties it
            alone = np.zeros(todo.size, dtype=bool)
            alone[mine] = (score[todo[mine]] == target[todo[mine], None]).sum(axis=1) == 1
            blocked = self._any_eligible(u[alone], h[alone], self.start[top[alone]], self.before[u[alone]])
            wins[todo[alone]] = ~blocked
            full.append(todo[(mine & ~alone) | (has & ~mine & (score[todo, top] == target[todo]))])
            struck = ~has  # never the chosen profile (the chosen message is eligible)
            score[todo[struck], top[struck]] = -np.inf
            todo = todo[struck]
        rest = np.concatenate([todo, *full])
        if rest.size:
            scores = np.take(score[rest], self.profile, axis=1)  # (r, M) message_scores
            np.copyto(scores, -np.inf, where=~self.opts.eligibility.take(users[rest]).at(hour[rest]))
            wins[rest] = scores.argmax(axis=-1) == self.chosen[users[rest]]
        return wins
