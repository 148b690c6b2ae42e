"""Sampling to a decision: send hours, the frequency gate, Wolpertinger matching, propensities."""

import datetime as dt

import numpy as np
import pytest

from nudgeflow.decide.action_space import frequency_labels, gap_bucket
from nudgeflow.decide.eligibility import Eligibility, local_send_times
from nudgeflow.decide.matching import Options, decide, message_scores, propensity, set_averages
from nudgeflow.decide.sampling import DrawKeys


def test_local_send_times_are_the_utc_instants_of_local_hours():
    times = local_send_times(dt.date(2026, 1, 10), ["Asia/Kolkata", "America/New_York", "Not/AZone"], [8, 21])
    assert times["Asia/Kolkata"][0] == np.datetime64("2026-01-10T02:30:00")  # 08:00 IST = 02:30 UTC
    assert times["America/New_York"][0] == np.datetime64("2026-01-10T13:00:00")
    assert times["America/New_York"][1] == np.datetime64("2026-01-10T02:00:00")  # 21:00 local of Jan 9
    assert times["Not/AZone"][1] == np.datetime64("2026-01-10T21:00:00")  # unknown zone: UTC


def test_frequency_buckets():
    assert frequency_labels([36, 84, 180]) == ["<36h", "36-84h", "84-180h", ">=180h"]
    assert gap_bucket(np.array([20.0, 36.0, 100.0, 180.0, np.nan]), [36, 84, 180]).tolist() == [0, 1, 2, 3, 3]


def _options(eligible, gap=None):
    # actions: 0 channel=push, 1 channel=email, 2 tone=a, 3 tone=b, 4 hour=8, 5 hour=9, 6-7 freq short/long
    n_u = eligible.shape[0]
    return Options(
        action_set=np.array(
            ["channel", "channel", "label_tone", "label_tone", "send_hour", "send_hour", "frequency", "frequency"]
        ),
        action=np.array(["push", "email", "a", "b", "8", "9", "<36h", ">=36h"]),
        hour_actions=np.array([4, 5]),
        frequency_actions=np.array([6, 7]),
        message_actions=np.array([[0, 2], [0, 3], [1, -1]]),  # m0 push/a, m1 push/b, m2 email/(none)
        send_at=np.tile(np.array(["2026-01-10T08:00", "2026-01-10T09:00"], dtype="datetime64[s]"), (n_u, 1)),
        eligibility=Eligibility.from_dense(eligible),
        gap_bucket=np.zeros((n_u, 2), dtype=np.int64) if gap is None else gap,
    )


def test_decide_picks_best_hour_and_closest_message_among_eligible():
    eligible = np.ones((2, 3, 2), dtype=bool)
    eligible[1, 1, :] = False  # user 1 may not get m1
    theta = np.array([[0.9, 0.1, 0.2, 0.8, 0.3, 0.6, 0.7, 0.1], [0.9, 0.1, 0.2, 0.8, 0.7, 0.6, 0.7, 0.1]])
    send, hour, message = decide(theta, _options(eligible))
    assert send.tolist() == [True, True]
    assert hour.tolist() == [1, 0]
    assert message.tolist() == [1, 0]  # push+b best; user 1 falls back to push+a (0.4 - 0.3 > -0.4)


def test_decide_takes_one_draw_and_says_so_otherwise():
    theta = np.full((3, 1, 8), 0.5)  # (draws, users, actions): decide one draw at a time
    with pytest.raises(ValueError, match=r"theta of shape \(users, actions\), not \(3, 1, 8\)"):
        decide(theta, _options(np.ones((1, 3, 2), dtype=bool)))


def test_a_missing_label_counts_as_average_so_more_labels_are_no_handicap():
    # reward rates near 0.4: push = email = 0.4, tone a 0.35 (below average), b 0.45 (above)
    theta = np.array([[0.4, 0.4, 0.35, 0.45, 0.5, 0.5, 0.5, 0.5]])
    opts = _options(np.ones((1, 3, 2), dtype=bool))
    assert set_averages(theta, opts.message_actions)[0].tolist() == pytest.approx([0.4, 0.4])
    # by hand: m0 push/a = 0 - 0.05, m1 push/b = 0 + 0.05, m2 email/(no tone) = 0
    assert message_scores(theta, opts.message_actions)[0] == pytest.approx([-0.05, 0.05, 0.0])
    assert decide(theta, opts)[2].tolist() == [1]  # with theta - 1/2 the label-less m2 won (-0.1)


def test_decide_never_picks_an_ineligible_hour_or_message():
    eligible = np.zeros((1, 3, 2), dtype=bool)
    eligible[0, 2, 0] = True  # only email at hour 8
    theta = np.array([[0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 0.9, 0.1]])
    send, hour, message = decide(theta, _options(eligible))
    assert (send[0], hour[0], message[0]) == (True, 0, 2)
    send, hour, message = decide(theta, _options(np.zeros((1, 3, 2), dtype=bool)))
    assert (send[0], hour[0], message[0]) == (False, -1, -1)


def test_frequency_gate_waits_when_a_longer_gap_samples_better():
    eligible = np.ones((1, 3, 2), dtype=bool)
    theta = np.array([[0.9, 0.1, 0.2, 0.8, 0.3, 0.6, 0.2, 0.7]])  # short gap 0.2 < long gap 0.7
    assert not decide(theta, _options(eligible))[0][0]
    long_gap = np.ones((1, 2), dtype=np.int64)  # already in the longest bucket
    assert decide(theta, _options(eligible, long_gap))[0][0]


def test_propensity_matches_the_frequency_of_the_choice_under_resampling():
    eligible = np.ones((1, 3, 2), dtype=bool)
    alpha = np.array([[8.0, 2.0, 5.0, 5.0, 5.0, 5.0, 50.0, 1.0]])
    beta = np.array([[2.0, 8.0, 5.0, 5.0, 5.0, 5.0, 1.0, 50.0]])
    opts = _options(eligible)
    keys = DrawKeys.of(0, 739000, ["u1"], [f"{s}={a}" for s, a in zip(opts.action_set, opts.action)])
    p0, p1, p2 = (propensity(alpha, beta, opts, np.array([m]), keys, draws=4000)[0] for m in range(3))
    assert p0 + p1 + p2 == pytest.approx(1.0, abs=0.01)  # frequency always says send
    assert p0 == pytest.approx(p1, abs=0.05)  # tone a and b exchangeable
    assert p2 < 0.1  # email sampled far below push


def test_messages_with_the_same_profile_tie_exactly():
    """Messages with the same channel and labels score bitwise alike, so the first of them
    wins a tie: with one matrix product over all messages, float noise broke 1.9 % of such
    ties here (seen between two runs of the 100k-user benchmark: 235 of 40,989 rows)."""
    from nudgeflow.decide.matching import message_scores

    rng = np.random.default_rng(0)
    n_actions, n_messages = 40, 500
    profiles = np.stack([rng.integers(lo, lo + 4, n_messages) for lo in (0, 4, 8)], axis=1)
    theta = rng.random((20_000, n_actions))
    score = message_scores(theta, profiles)
    _, first, inverse = np.unique(profiles, axis=0, return_index=True, return_inverse=True)
    assert (score == score[:, first][:, inverse.ravel()]).all()
    best = score.argmax(axis=1)
    assert (best == first[inverse.ravel()][best]).all()  # the first message of the winning profile
