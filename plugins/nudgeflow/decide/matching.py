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

Everything is vectorised over users (and over resampling draws for the propensity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nudgeflow.decide.action_space import frequency_labels, gap_bucket
from nudgeflow.decide.priors import NULL_ACTION


@dataclass
class Options:
    """The action space and the eligibility of one run (U users, A actions, M messages, H hours)."""

    action_set: np.ndarray  # (A,) name of the set of each action
    action: np.ndarray  # (A,) name of each action
    hour_actions: np.ndarray  # (H,) index into A of send_hour = each allowed hour
    frequency_actions: np.ndarray  # (B,) index into A of each frequency bucket, shortest first
    message_actions: np.ndarray  # (M, S) index into A of each message's channel and labels, -1 if none
    send_at: np.ndarray  # (U, H) datetime64[s] UTC instant of each local hour, NaT if none
    eligible: np.ndarray  # (U, M, H) bool: message m may be sent to user u at hour h
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
        eligible: np.ndarray,
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
            eligible=eligible,
            gap_bucket=gap_bucket(gap_hours, frequency_edges),
            null_action=a_index.get(NULL_ACTION, -1) if send_rule == "null" else -1,
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
    """
    membership, averaging, present = _set_matrices(message_actions, theta.shape[-1])
    return theta @ (membership - averaging @ present)  # one product over the actions


def decide(theta: np.ndarray, opts: Options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply one set of sampled values (..., U, A) to the options.

    Returns (send, hour, message): send (..., U) bool, hour and message (..., U) indices
    (-1 where nothing is sent).
    """
    n_users = opts.eligible.shape[0]
    if opts.eligible.shape[1] == 0:  # an empty catalogue: nothing to send
        nothing = np.zeros(theta.shape[:-1], dtype=bool)
        return nothing, np.full(nothing.shape, -1), np.full(nothing.shape, -1)
    users = np.arange(n_users)
    feasible = opts.eligible.any(axis=1)  # (U, H)
    theta_hour = np.where(feasible, theta[..., opts.hour_actions], -np.inf)
    hour = theta_hour.argmax(axis=-1)  # (..., U)
    has_option = feasible.any(axis=1) & np.ones(hour.shape, dtype=bool)
    theta_freq = theta[..., opts.frequency_actions]  # (..., U, B)
    bucket = opts.gap_bucket[users, hour]  # (..., U)
    current = np.take_along_axis(theta_freq, bucket[..., None], -1)[..., 0]
    # message: best score among the messages eligible at the chosen hour
    score = message_scores(theta, opts.message_actions)  # (..., U, M)
    eligible_now = opts.eligible[users, :, hour]  # (..., U, M)
    message = np.where(eligible_now, score, -np.inf).argmax(axis=-1)
    if opts.null_action >= 0:
        # send iff the day's best combination beats a draw of the measured null
        send = has_option & (combination_value(theta, opts, hour, current, message) > theta[..., opts.null_action])
    else:
        # no null measured yet: send iff the bucket of this gap is at least as good as every longer one
        best_longer = np.flip(np.maximum.accumulate(np.flip(theta_freq, -1), axis=-1), -1)
        reach = np.take_along_axis(best_longer, bucket[..., None], -1)[..., 0]
        send = has_option & (current >= reach)
    return send, np.where(send, hour, -1), np.where(send, message, -1)


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
    rng: np.random.Generator,
    draws: int,
    chunk: int = 2_000,
    sharpness: float = 1.0,
) -> np.ndarray:
    """P(the policy sends message `chosen` to the user today), by resampling the posteriors.

    The logged draw counts as one of draws + 1 samples, so the estimate is in (0, 1].
    ``sharpness`` must be the one the logged draw used (``sampling.thompson_sample``).
    Computed for the users with a chosen message (chosen >= 0); NaN for the others.
    """
    out = np.full(alpha.shape[0], np.nan)
    users = np.nonzero(chosen >= 0)[0]
    for lo in range(0, users.size, chunk):
        idx = users[lo : lo + chunk]
        theta = rng.beta(alpha[idx] * sharpness, beta[idx] * sharpness, size=(draws, idx.size, alpha.shape[1]))
        sub = Options(
            **{
                **opts.__dict__,
                "send_at": opts.send_at[idx],
                "eligible": opts.eligible[idx],
                "gap_bucket": opts.gap_bucket[idx],
            }
        )
        send, _, message = decide(theta, sub)
        out[idx] = ((send & (message == chosen[idx])).sum(axis=0) + 1.0) / (draws + 1.0)
    return out
