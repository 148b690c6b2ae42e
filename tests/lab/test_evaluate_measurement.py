"""`nudgeflow evaluate measurement`: estimator formulas on hand-computed rows, the truth in
outcome units against the simulator's own truth, and the command end to end on a tiny world."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys

import duckdb
import numpy as np
import polars as pl
import pytest

from nudgeflow.lab import evaluate_measurement as em

T0 = dt.datetime(2026, 1, 5)


def _wh(events: list[tuple], weights: dict[str, float], sends: list[tuple] = ()):
    """An in-memory `wh` catalogue with the three tables the evaluation reads."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("attach ':memory:' as wh")
    for schema in ("staging", "marts"):
        con.execute(f"create schema wh.{schema}")
    con.execute("create table wh.staging.stg_raw__events (user_id varchar, event_name varchar, event_ts timestamp)")
    con.execute("create table wh.staging.stg_raw__sends (send_id varchar, user_id varchar, sent_ts timestamp)")
    con.execute("create table wh.marts.event_weights (event_name varchar, weight double)")
    for table, rows in (
        ("staging.stg_raw__events", events),
        ("staging.stg_raw__sends", sends),
        ("marts.event_weights", list(weights.items())),
    ):
        for row in rows:
            con.execute(f"insert into wh.{table} values ({', '.join('?' * len(row))})", list(row))
    return con


def test_hourly_panel_is_eq1():
    """Y_pre / Y_post from hourly aggregates equal eq. (1) summed event by event, window edges
    included: an event at t is post, at t - W pre, at t + W outside."""
    h, W = 24.0, 48
    t = T0 + dt.timedelta(hours=60)
    ev = [
        ("u1", "view", t - dt.timedelta(hours=12, minutes=30)),  # pre: w 2 * 2^(-12.5/24)
        ("u1", "buy", t),  # post: 5 * 1
        ("u1", "buy", t + dt.timedelta(hours=30, minutes=15)),  # post: 5 * 2^(-30.25/24)
        ("u1", "view", t - dt.timedelta(hours=48)),  # pre, at the edge: 2 * 2^-2
        ("u1", "view", t + dt.timedelta(hours=48)),  # outside
        ("u2", "other", t + dt.timedelta(hours=1)),  # unknown name: weight 0
    ]
    con = _wh(ev, {"view": 2.0, "buy": 5.0})
    users = pl.DataFrame({"user_id": ["u1", "u2"], "uidx": [0, 1]})
    y_pre, y_post = em.hourly_panel(con, users, T0, 200, h, W, np.array([60]), {"view": 2.0, "buy": np.array([5.0])})
    assert y_pre[0, 0] == pytest.approx(2 * 2 ** (-12.5 / 24) + 2 * 2**-2.0, rel=1e-12)
    assert y_post[0, 0] == pytest.approx(5 + 5 * 2 ** (-30.25 / 24), rel=1e-12)
    assert y_pre[1, 0] == 0 and y_post[1, 0] == 0


def test_messaged_mask_uses_the_control_rule():
    t = T0 + dt.timedelta(hours=60)
    sends = [
        ("s1", "u1", t - dt.timedelta(hours=48)),  # in [t - W, t + W)
        ("s2", "u2", t + dt.timedelta(hours=48)),  # outside
        ("s3", "u3", t - dt.timedelta(hours=49)),
    ]  # outside
    con = _wh([], {}, sends)
    users = pl.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "uidx": [0, 1, 2, 3]})
    mask = em.messaged_mask(con, users, T0, np.array([60]), 48.0)
    assert mask[:, 0].tolist() == [True, False, False, False]


def test_baseline_estimators_by_hand():
    """One instant, treated user 0 (pre 1, post 4); unmessaged users 1, 2, 3 with (pre, post)
    (1, 2), (2, 2), (0, 3); user 4 messaged (ignored).
    (a) 4 - 1 = 3; (b) 4 - mean(2, 2, 3) = 4 - 7/3; (c) 3 - mean(1, 0, 3) = 3 - 4/3;
    (d) with k = 3 (the whole pool): the same as (c)."""
    y_pre = np.array([[1.0], [1.0], [2.0], [0.0], [9.0]])
    y_post = np.array([[4.0], [2.0], [2.0], [3.0], [0.0]])
    messaged = np.array([[True], [False], [False], [False], [True]])
    est = em.baseline_estimates(y_pre, y_post, messaged, np.array([0]), np.array([0]), 3, np.random.default_rng(0))
    assert est["pre_post"][0] == pytest.approx(3.0)
    assert est["post_vs_all"][0] == pytest.approx(4 - 7 / 3)
    assert est["did_all"][0] == pytest.approx(3 - 4 / 3)
    assert est["did_random_k"][0] == pytest.approx(3 - 4 / 3)
    est1 = em.baseline_estimates(
        y_pre, y_post, messaged, np.array([0, 0]), np.array([0, 0]), 1, np.random.default_rng(1)
    )
    assert set(np.round(3 - est1["did_random_k"], 12)) <= {1.0, 0.0, 3.0}  # one control's change


def test_distinct_draws():
    idx = em.distinct_draws(np.random.default_rng(0), 500, 12, 10)
    assert idx.shape == (500, 10) and idx.min() >= 0 and idx.max() < 12
    assert all(len(set(r)) == 10 for r in idx.tolist())


def test_metrics_by_hand():
    """Estimates (1, -1, 2, 0) against truth (0, 1, 1, 1): errors (1, -2, 1, -1): bias -1/4,
    RMSE sqrt(7/4); signs of est > 0 vs truth > 0: (T,F), (F,T), (T,T), (F,T) -> 1/4."""
    est, truth = np.array([1.0, -1.0, 2.0, 0.0]), np.array([0.0, 1.0, 1.0, 1.0])
    user = np.array([0, 1, 2, 3])
    boot = em.bootstrap_weights(4, 50, 0)
    r = em.compare({"ours": est, "pre_post": est + 1}, truth, truth, user, boot)["ours"]
    assert r["bias"][0] == pytest.approx(-0.25)
    assert r["rmse"][0] == pytest.approx(math.sqrt(7 / 4))
    assert r["sign_accuracy"][0] == pytest.approx(0.25)
    assert r["corr"][0] == pytest.approx(np.corrcoef(est, truth)[0, 1])
    cal = em.calibration(est, truth, truth, bins=2)
    assert [c["mean_true_delta_y"] for c in cal] == [pytest.approx(1.0), pytest.approx(0.5)]


# (estimate, true ΔY, user) of seven sends; r = 1[estimate > 0]
REWARD_ROWS = [
    (1.0, 2.0, 0),  # r 1, truth +
    (-1.0, -1.0, 0),  # r 0, truth -
    (2.0, 1.0, 0),  # r 1, truth +
    (0.5, -2.0, 1),  # r 1, truth -
    (-3.0, 1.0, 1),  # r 0, truth +
    (1.0, 3.0, 2),  # r 1, truth +   (the user's only send)
    (2.0, 0.0, 3),  # r 1, truth 0   (neither good nor bad; the user's only send)
]


def test_reward_discrimination_and_within_user_corr_by_hand():
    """REWARD_ROWS by hand.

    Discrimination: the 4 sends with true ΔY > 0 have r = 1, 1, 0, 1 -> P(r=1 | +) = 3/4; the 2
    with true ΔY < 0 have r = 0, 1 -> P(r=1 | -) = 1/2; discrimination 3/4 - 1/2 = 1/4 (the
    send with true ΔY = 0 counts in neither).

    Within-user correlation (users 0 and 1; users 2 and 3 have one send and add nothing):
    user 0: r (1, 0, 1) - 2/3 = (1/3, -2/3, 1/3); ΔY (2, -1, 1) - 2/3 = (4/3, -5/3, 1/3):
            sum r'y' = (4 + 10 + 1)/9 = 5/3, sum r'^2 = 6/9 = 2/3, sum y'^2 = 42/9 = 14/3;
    user 1: r (1, 0) - 1/2 = (1/2, -1/2); ΔY (-2, 1) + 1/2 = (-3/2, 3/2):
            sum r'y' = -3/2, sum r'^2 = 1/2, sum y'^2 = 9/2;
    pooled: (5/3 - 3/2) / sqrt((2/3 + 1/2)(14/3 + 9/2)) = (1/6) / sqrt(7/6 * 55/6) = 1/sqrt(385)."""
    est, truth, user = (np.array(c) for c in zip(*REWARD_ROWS, strict=True))
    user = user.astype(np.int64)
    boot = em.bootstrap_weights(4, 50, 0)
    r = em.compare({"ours": est}, truth, truth, user, boot)["ours"]
    assert r["p_r1_pos"][0] == pytest.approx(3 / 4)
    assert r["p_r1_neg"][0] == pytest.approx(1 / 2)
    assert r["discrimination"][0] == pytest.approx(1 / 4)
    assert r["within_user_corr"][0] == pytest.approx(1 / math.sqrt(385))
    assert (r["n_truth_positive"], r["n_truth_negative"]) == (4, 2)
    assert (r["within_user_users"], r["within_user_sends"]) == (2, 5)
    for m in ("discrimination", "within_user_corr", "p_r1_pos"):
        assert r[m][1] <= r[m][0] <= r[m][2]
    # the bootstrap sees a user drawn twice as two copies of all the user's sends
    st = em._user_stats(est, truth, truth, user, 4)
    w = np.array([2.0, 1.0, 0.0, 1.0])
    dup = np.concatenate([np.nonzero(user == u)[0] for u in (0, 0, 1, 3)])
    copy_user = np.array([0, 0, 0, 4, 4, 4, 1, 1, 3])  # user 0 twice, as users 0 and 4
    want = em._metrics_from_sums(em._user_stats(est[dup], truth[dup], truth[dup], copy_user, 5).sum(axis=0))
    got = em._metrics_from_sums(w @ st)
    for m in ("discrimination", "within_user_corr", "rmse", "corr"):
        assert got[m] == pytest.approx(want[m])


def test_paired_difference_between_settings():
    """Two settings scored with the same bootstrap weights: the default against itself
    differs by exactly 0; another setting by its point difference, inside its interval."""
    est, truth, user = (np.array(c) for c in zip(*REWARD_ROWS, strict=True))
    user = user.astype(np.int64)
    boot = em.bootstrap_weights(4, 50, 0)
    base, other = {}, {}
    a = em.compare({"ours": est}, truth, truth, user, boot, replicates=base)["ours"]
    b = em.compare({"ours": -est}, truth, truth, user, boot, replicates=other)["ours"]
    assert em.paired_difference(base, base)["ours"]["discrimination"] == [0.0, 0.0, 0.0]
    d = em.paired_difference(other, base)["ours"]
    assert d["discrimination"][0] == pytest.approx(b["discrimination"][0] - a["discrimination"][0])
    assert d["discrimination"][1] <= d["discrimination"][0] <= d["discrimination"][2]
    assert set(d) == set(em.UNIT_FREE)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    home = tmp_path_factory.mktemp("evalworld")
    em.build_evaluation_world(home, users=400, history_days=4, loop_days=5, seed=3)
    return home


def test_truth_in_outcome_units_matches_simulator(tiny_world):
    """With weight 1 on the goal only and no decay, the expected ΔY of a send is its expected
    incremental purchases: the simulator's own true_effect."""
    from nudgeflow.lab.simulate import load_world

    world = load_world(tiny_world)
    truth = em.send_truth(tiny_world).join(
        pl.DataFrame({"user_id": world.user_ids, "widx": np.arange(world.n)}), on="user_id"
    )
    got = em.true_delta_y(
        world,
        truth["widx"].to_numpy(),
        truth["sent_ts"].dt.epoch("us").to_numpy() / 1e6,
        em._offsets(truth),
        truth["tau"].to_numpy(),
        {"purchase": 1.0},
        1e9,
        48,
    )
    want = truth["true_effect"].to_numpy()
    assert np.allclose(got, want, rtol=2e-3, atol=1e-9)
    # proxies add their own expected increments with the sign of tau
    both = em.true_delta_y(
        world,
        truth["widx"].to_numpy(),
        truth["sent_ts"].dt.epoch("us").to_numpy() / 1e6,
        em._offsets(truth),
        truth["tau"].to_numpy(),
        {"app_open": 1.0},
        24,
        48,
    )
    assert np.all(np.sign(both) == np.sign(truth["tau"].to_numpy()))


def test_command_runs(tiny_world):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nudgeflow.cli",
            "evaluate",
            "measurement",
            "--home",
            str(tiny_world),
            "--no-sweeps",
            "--replicates",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tiny_world / "evaluation" / "measurement.json").read_text())
    main = res["main"]
    assert main["n_sends"] > 0
    # the five, and ours the other way round of the gap adjustment (with it if ours has none)
    extras = set(main["estimators"]) - set(em.ESTIMATORS)
    assert set(em.ESTIMATORS) <= set(main["estimators"]) and len(extras) == 1
    assert extras == ({"ours_unadjusted"} if main["ours_gap_adjusted"] else {"ours_adjusted"})
    for r in main["estimators"].values():
        assert r["discrimination"][0] == pytest.approx(r["p_r1_pos"][0] - r["p_r1_neg"][0])
        assert -1 <= r["within_user_corr"][0] <= 1 and r["within_user_users"] > 0
        assert r["discrimination"][1] <= r["discrimination"][0] <= r["discrimination"][2]
    assert main["panel_vs_production_max_abs_diff"] < 1e-9  # (a)-(d) see the production's Y
    for r in main["estimators"].values():
        lo, hi = r["rmse"][1], r["rmse"][2]
        assert lo <= r["rmse"][0] <= hi
    assert {r["event_name"] for r in res["event_weights"]} >= {"purchase", "app_open"}
    # the recomputed (bootstrappable) weights are the warehouse's
    assert max(abs(r["weight"] - r["production_weight"]) for r in res["event_weights"]) < 1e-9
    assert [r["is_goal"] for r in res["event_weights"]].count(True) == 1
    assert "(e) ours" in done.stdout
    assert "discrimination" in done.stdout and em.ESTIMATOR_LABELS[extras.pop()] in done.stdout
    # `nudgeflow report` shows the comparison as one of its sections
    from nudgeflow.lab.truth import report_sections as evaluation_sections

    ((title, rows),) = evaluation_sections(tiny_world)
    assert "Measurement" in title and rows[0][0] == "estimator"
    assert [r[0] for r in rows[1:]] == [em.ESTIMATOR_LABELS[e] for e in em.ESTIMATORS]
    ours = main["estimators"]["ours"]["rmse"]
    assert rows[-1][1] == f"{ours[0]:.3f} [{ours[1]:.3f}, {ours[2]:.3f}]"


def test_report_section_of_the_policy_comparison(tmp_path):
    from nudgeflow.lab.truth import report_sections as evaluation_sections

    out = tmp_path / "reports" / "policies"
    out.mkdir(parents=True)
    cols = {"world": ["default", "default"], "policy": ["rules", "ours"]}
    for m in ("inc_purchases", "true_effect"):
        cols |= {f"{m}_mean": [56.4, 45.8], f"{m}_lo": [43.5, 30.1], f"{m}_hi": [69.3, 61.5]}
    cols["oracle_share_te_mean"] = [0.37, 0.33]
    pl.DataFrame(cols).write_csv(out / "summary.csv")
    ((title, rows),) = evaluation_sections(tmp_path)
    assert "Policies" in title
    assert rows[1] == ("default", "rules", "56.4 [43.5, 69.3]", "56.4 [43.5, 69.3]", "0.37")
    assert rows[2][1] == "ours"
