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
from nudgeflow.decide.sampling import DrawKeys, thompson_sample


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
    membership, averaging, present = _set_matrices(message_actions, theta.shape[-1])
    _, first, inverse = np.unique(message_actions, axis=0, return_index=True, return_inverse=True)
    weights = (membership - averaging @ present)[:, first]  # (A, profiles)
    return (theta @ weights)[..., inverse.ravel()]  # one product over the actions


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
        for i in range(1, draws + 1):
            theta = np.zeros(alpha.shape)
            theta[:, timing] = thompson_sample(alpha[:, timing], beta[:, timing], sub_keys(i, timing), sharpness)
            hour, has_option, theta_freq, bucket, current = _timing(theta, sub)
            send = has_option & _longer_is_no_better(theta_freq, bucket, current)
            live = np.nonzero(send & chosen_ok[np.arange(users.size), hour])[0]
            theta = theta[live]
            a, b = alpha[live][:, rest], beta[live][:, rest]
            theta[:, rest] = thompson_sample(a, b, sub_keys.take(live)(i, rest), sharpness)
            hits[live] += _best_message(theta, sub.take(live), hour[live]) == chosen[live]
    out[users] = (hits + 1.0) / (draws + 1.0)
    return out
