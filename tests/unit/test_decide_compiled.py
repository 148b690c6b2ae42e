"""The compiled decide loops (decide/sampling.py, decide/matching.py) against straightforward
references: the dense users x messages x hours argmax, numpy's formulas, the Beta moments."""

import numpy as np
import pytest

from nudgeflow.decide.eligibility import Eligibility
from nudgeflow.decide.matching import (
    Options,
    _Cells,
    _chosen_wins,
    _contest_args,
    _profile_weights,
    decide,
    message_scores,
    propensity,
)
from nudgeflow.decide.sampling import DrawKeys, beta_sample, thompson_sample

# actions: 0-1 channels, 2-4 tone, 5-6 offer, 7-9 hours, 10-12 frequency buckets
N_A, N_H, HOURS, FREQS = 13, 3, np.array([7, 8, 9]), np.array([10, 11, 12])


def _world(n_u=400, n_m=60, seed=3):
    """Random factored eligibility with repeat pairs, 60 messages on 12 profiles (several
    messages share one), random gaps: the options, the dense eligibility."""
    rng = np.random.default_rng(seed)
    profile = rng.integers(0, 12, n_m)
    message_actions = np.stack([profile % 2, 2 + (profile // 2) % 3, np.where(profile < 6, 5 + profile % 2, -1)], 1)
    pair_user = np.repeat(np.arange(0, n_u, 3), 2)
    pair_message = np.stack([rng.choice(n_m, 2, replace=False) for _ in range(0, n_u, 3)]).ravel()
    elig = Eligibility(
        reachable=rng.random((n_u, n_m)) < 0.5,
        zone=rng.integers(0, 4, n_u),
        valid=rng.random((4, n_m, N_H)) < 0.3,
        spacing=rng.random((n_u, N_H)) < 0.8,
        pair_user=pair_user,
        pair_message=pair_message,
        repeat_ok=rng.random((pair_user.size, N_H)) < 0.3,
        feasible=np.zeros((n_u, N_H), dtype=bool),
    )
    dense = elig.dense()
    elig = Eligibility(**{**elig.__dict__, "feasible": dense.any(axis=1)})
    opts = Options(
        action_set=np.array(
            ["channel"] * 2 + ["label_tone"] * 3 + ["label_offer"] * 2 + ["send_hour"] * 3 + ["frequency"] * 3
        ),
        action=np.array(["push", "email", "a", "b", "c", "x", "y", "8", "9", "10", "<36h", "36-84h", ">=84h"]),
        hour_actions=HOURS,
        frequency_actions=FREQS,
        message_actions=message_actions,
        send_at=np.zeros((n_u, N_H), dtype="datetime64[s]"),
        eligibility=elig,
        gap_bucket=rng.integers(0, 3, (n_u, N_H)),
    )
    return opts, dense


def _thetas(rng, n_u):
    """Off a grid; on a grid of eighths (hours and profiles tie); message actions all 0 (every
    profile scores exactly 0: the first eligible message wins)."""
    theta = rng.random((3, n_u, N_A))
    theta[1] = np.floor(theta[1] * 8) / 8
    theta[2, :, :7] = 0.0
    return theta


def _reference_decide(theta, opts, dense):
    """The decision as the method states it, over the dense (U, M, H) eligibility: the best
    feasible hour (the first of equal ones), send iff the gap's bucket is at least as good
    as every longer one, the best-scoring message eligible at that hour (the first of equal ones)."""
    n_u = theta.shape[0]
    feasible = dense.any(axis=1)
    hour = np.where(feasible, theta[:, opts.hour_actions], -np.inf).argmax(axis=1)
    theta_f = theta[:, opts.frequency_actions]
    bucket = opts.gap_bucket[np.arange(n_u), hour]
    current = theta_f[np.arange(n_u), bucket]
    longer = np.array([current[u] >= theta_f[u, bucket[u] :].max() for u in range(n_u)])
    score = message_scores(theta, opts.message_actions)
    message = np.where(dense[np.arange(n_u), :, hour], score, -np.inf).argmax(axis=1)
    send = feasible.any(axis=1) & longer
    return send, np.where(send, hour, -1), np.where(send, message, -1)


def test_the_compiled_decision_is_the_dense_argmax_over_messages_and_hours():
    opts, dense = _world()
    rng = np.random.default_rng(8)
    ties = 0
    outside = rng.random((400, N_A)) * 3 - 1  # thetas outside [0, 1]: decide scores every profile exactly
    for theta in (*_thetas(rng, 400), outside):
        got, expected = decide(theta, opts), _reference_decide(theta, opts, dense)
        for g, e in zip(got, expected):
            assert np.array_equal(g, e)
        score = message_scores(theta, opts.message_actions)
        best = score[np.arange(400), np.maximum(got[2], 0)]
        at_hour = dense[np.arange(400), :, np.maximum(got[1], 0)]
        n_best = ((score == best[:, None]) & at_hour).sum(axis=1)
        ties += int((n_best[got[0]] > 1).sum())
    assert ties > 100  # the first-message rule was exercised, across profiles too
    assert 0.2 < got[0].mean() < 0.9  # both send and wait


def test_the_compiled_contest_is_the_full_argmax_for_any_chosen_message():
    """The propensity's _chosen_wins says the chosen message wins exactly when the dense
    argmax picks it: profiles shared by several messages, ties, the repeat rule."""
    opts, dense = _world(n_u=2000)
    rng = np.random.default_rng(4)
    hour = rng.integers(0, N_H, 2000)
    at_hour = dense[np.arange(2000), :, hour]
    users = np.nonzero(at_hour.any(axis=1))[0]
    chosen = np.full(2000, -1)
    for u in users:
        chosen[u] = rng.choice(np.nonzero(at_hour[u])[0])
    weights, profile = _profile_weights(opts.message_actions, N_A)
    rest = np.arange(7)  # the message actions
    args = _contest_args(opts.message_actions, rest, weights[rest], profile, chosen)
    cells = _Cells.of(opts.eligibility).args()
    wins = []
    for theta in _thetas(rng, users.size):
        score = message_scores(theta, opts.message_actions)
        expected = np.where(at_hour[users], score, -np.inf).argmax(axis=1) == chosen[users]
        got = _chosen_wins(np.ascontiguousarray(theta[:, rest]), users, hour[users], *args, cells)
        assert np.array_equal(got.astype(bool), expected)
        wins.append(expected.mean())
    assert 0.05 < min(wins) and max(wins) < 0.95  # both outcomes are common


def test_scores_are_the_formula_and_a_function_of_the_user_alone():
    opts, _ = _world()
    theta = np.random.default_rng(2).random((500, N_A))
    score = message_scores(theta, opts.message_actions)
    # sum over the message's sets of (its action's theta - the set's average theta)
    avg = [theta[:, 0:2].mean(1), theta[:, 2:5].mean(1), theta[:, 5:7].mean(1)]
    by_hand = sum(
        np.where(
            opts.message_actions[:, s] >= 0, theta[:, np.maximum(opts.message_actions[:, s], 0)] - avg[s][:, None], 0.0
        )
        for s in range(3)
    )
    assert np.allclose(score, by_hand, rtol=0, atol=1e-14)
    weights, profile = _profile_weights(opts.message_actions, N_A)
    assert np.allclose(score, (theta @ weights)[:, profile], rtol=0, atol=1e-15)
    alone = np.concatenate([message_scores(theta[i : i + 1], opts.message_actions) for i in range(0, 500, 7)])
    assert np.array_equal(alone, score[::7])  # no matrix product: no dependence on the rows beside it


@pytest.mark.parametrize("a,b", [(0.3, 0.7), (1.5, 4.0), (30.0, 12.0)])
def test_compiled_beta_draws_have_the_beta_moments(a, b):
    n = 200_000
    x = beta_sample(np.full(n, a), np.full(n, b), np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert x.mean() == pytest.approx(mean, abs=4 * np.sqrt(var / n))
    assert x.var() == pytest.approx(var, rel=0.03)


def test_a_users_draws_do_not_depend_on_the_chunk_it_is_in():
    ids = [f"u{i:05d}" for i in range(3000)]
    actions = [f"set={j}" for j in range(11)]
    keys = DrawKeys.of(5, 740100, ids, actions)
    rng = np.random.default_rng(0)
    alpha, beta = rng.uniform(0.2, 30, (3000, 11)), rng.uniform(0.2, 30, (3000, 11))
    for draw in (0, 3):
        whole = thompson_sample(alpha, beta, keys(draw), 2.0)
        for lo, hi in ((0, 1), (17, 1200), (2999, 3000)):
            part = DrawKeys.of(5, 740100, ids[lo:hi], actions)
            assert np.array_equal(thompson_sample(alpha[lo:hi], beta[lo:hi], part(draw), 2.0), whole[lo:hi])
        rows, cols = np.nonzero(rng.random((3000, 11)) < 0.2)
        assert np.array_equal(keys.at(draw, rows, cols), keys(draw)[rows, cols])


def test_the_results_do_not_depend_on_the_number_of_threads(monkeypatch):
    opts, _ = _world(n_u=5000)
    rng = np.random.default_rng(6)
    alpha, beta = rng.uniform(0.5, 30, (5000, N_A)), rng.uniform(0.5, 30, (5000, N_A))
    keys = DrawKeys.of(2, 740200, [f"u{i}" for i in range(5000)], [f"a{j}" for j in range(N_A)])
    out = []
    for threads in ("1", "3"):
        monkeypatch.setenv("NUDGEFLOW_DECIDE_THREADS", threads)
        theta = thompson_sample(alpha, beta, keys(0))
        send, hour, message = decide(theta, opts)
        out.append((theta, send, hour, message, propensity(alpha, beta, opts, message, keys, 5)))
    for one, three in zip(*out):
        assert np.array_equal(one, three, equal_nan=True)
