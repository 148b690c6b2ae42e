"""Decisions per second of the bandit libraries the policy harness compares with (MABWiser,
Vowpal Wabbit), on the benchmark's users and catalogue size.

A micro-benchmark, the same for every library: 2,000 logged (user features, arm, reward)
observations with synthetic Bernoulli rewards (arm-dependent rates, 5 user features), 500
arms; fit on all of them, then predict one arm per user for as many of the users as fit in
the time budget (predicting in batches where the library can). Decisions per second =
predicted users / predict seconds; the projection to 1M users divides.

* ``mabwiser_ts``: MABWiser ThompsonSampling, context-free (one bandit for everyone),
  batch predict.
* ``mabwiser_lints``: MABWiser LinTS on the 5 user features, batch predict.
* ``vw_cb_explore_adf``: Vowpal Wabbit ``--cb_explore_adf --epsilon 0.1 -q UA``, one
  multi-line example per decision with the 500 messages' features (channel and four labels),
  as the policy harness runs it.
* ``vw_cb_explore``: Vowpal Wabbit ``--cb_explore 500 --epsilon 0.1``, the user features only.
"""

from __future__ import annotations

import time

import numpy as np

N_FIT = 2_000
N_FEATURES = 5
BATCH = 2_000


def _data(n_users: int, n_arms: int, seed: int):
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, N_FEATURES))
    x = rng.normal(size=(N_FIT, N_FEATURES))
    arms = rng.integers(0, n_arms, N_FIT)
    w = rng.normal(scale=0.3, size=(n_arms, N_FEATURES))
    base = rng.normal(-2.0, 0.5, n_arms)
    p = 1.0 / (1.0 + np.exp(-(base[arms] + (x * w[arms]).sum(axis=1))))
    rewards = (rng.random(N_FIT) < p).astype(int)
    arm_features = [
        f"|A ch_{m % 4} tone_{m % 5} offer_{(m // 5) % 5} length_{m % 3} emoji_{m % 2}" for m in range(n_arms)
    ]
    return users, x, arms, rewards, arm_features


def _timed_predict(predict_batch, n_users: int, budget: float, batch: int = BATCH) -> tuple[int, float]:
    """Predict batches of users until all are done or the budget is spent: (users, seconds)."""
    done, started = 0, time.perf_counter()
    while done < n_users and time.perf_counter() - started < budget:
        n = min(batch, n_users - done)
        predict_batch(done, n)
        done += n
    return done, time.perf_counter() - started


def _features(x) -> str:
    return " ".join(f"f{j}:{v:.4f}" for j, v in enumerate(x))


def run(n_users: int, n_arms: int, budget: float, seed: int, progress=None) -> dict:
    from mabwiser.mab import MAB, LearningPolicy
    from vowpalwabbit import Workspace

    users, x, arms, rewards, arm_features = _data(n_users, n_arms, seed)
    out = {}

    def record(name: str, fit_seconds: float, done: int, seconds: float, detail: str) -> None:
        rate = done / seconds if seconds > 0 else float("nan")
        out[name] = {
            "fit_seconds": fit_seconds,
            "users_predicted": done,
            "predict_seconds": seconds,
            "decisions_per_second": rate,
            "seconds_for_1m_users": 1e6 / rate,
            "detail": detail,
        }
        if progress:
            progress(f"{name}: fit {fit_seconds:.2f}s, {done} users in {seconds:.2f}s ({rate:,.0f}/s)")

    # MABWiser, context-free Thompson sampling
    mab = MAB(list(range(n_arms)), LearningPolicy.ThompsonSampling(), seed=seed)
    t = time.perf_counter()
    mab.fit(arms.tolist(), rewards.tolist())
    fit = time.perf_counter() - t
    record(
        "mabwiser_ts",
        fit,
        *_timed_predict(lambda lo, n: mab.predict(np.zeros((n, 1))), n_users, budget),
        "ThompsonSampling, context-free",
    )

    # MABWiser, linear Thompson sampling on the user features
    lin = MAB(list(range(n_arms)), LearningPolicy.LinTS(alpha=1.0), seed=seed)
    t = time.perf_counter()
    lin.fit(arms.tolist(), rewards.tolist(), x)
    fit = time.perf_counter() - t
    record(
        "mabwiser_lints",
        fit,
        *_timed_predict(lambda lo, n: lin.predict(users[lo : lo + n]), n_users, budget),
        f"LinTS(alpha=1) on {N_FEATURES} user features",
    )

    # Vowpal Wabbit with action-dependent features, as the policy harness runs it
    vw = Workspace(f"--cb_explore_adf --epsilon 0.1 -q UA --quiet --random_seed {seed}")
    t = time.perf_counter()
    for i in range(N_FIT):
        shared = f"shared |U {_features(x[i])} bias"
        label = f"0:{-float(rewards[i])}:{1.0 / n_arms} "
        vw.learn([shared] + [(label if m == arms[i] else "") + f for m, f in enumerate(arm_features)])
    fit = time.perf_counter() - t

    def vw_adf(lo: int, n: int) -> None:
        for i in range(lo, lo + n):
            np.argmax(vw.predict([f"shared |U {_features(users[i])} bias", *arm_features]))

    record("vw_cb_explore_adf", fit, *_timed_predict(vw_adf, n_users, budget, 100), "--cb_explore_adf -q UA, 500 lines")
    vw.finish()

    # Vowpal Wabbit, one action per arm, user features only
    vw2 = Workspace(f"--cb_explore {n_arms} --epsilon 0.1 --quiet --random_seed {seed}")
    t = time.perf_counter()
    for i in range(N_FIT):
        vw2.learn(f"{arms[i] + 1}:{-float(rewards[i])}:{1.0 / n_arms} | {_features(x[i])}")
    fit = time.perf_counter() - t

    def vw_cb(lo: int, n: int) -> None:
        for i in range(lo, lo + n):
            np.argmax(vw2.predict(f"| {_features(users[i])}"))

    record("vw_cb_explore", fit, *_timed_predict(vw_cb, n_users, budget, 500), f"--cb_explore {n_arms}, user features")
    vw2.finish()
    return {"fit_observations": N_FIT, "arms": n_arms, "users": n_users, "libraries": out}
