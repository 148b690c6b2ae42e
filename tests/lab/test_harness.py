"""The policy harness (issue 4): in-memory reward = dbt, closed loop, propensities, SNIPS.

Tiny worlds (300 users, 7 days of history, a few loop days) so that the whole file stays
well under a minute; nothing here depends on timing.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest

from nudgeflow.lab.harness import offpolicy
from nudgeflow.lab.harness.loop import ensure_world, run_policy
from nudgeflow.lab.harness.policies import make_policy
from nudgeflow.lab.harness.report import mean_ci
from nudgeflow.lab.harness.rewards import US, Measurement
from nudgeflow.lab.simulate import create_world, load_world
from nudgeflow.lab.world import CHANNELS, EVENT_NAMES

START = dt.date(2026, 1, 5)
HISTORY = 7


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    return tmp_path_factory.mktemp("harness_worlds")


PARITY_SETTINGS = [
    {"placebo_sends": 5000},
    {"half_life_hours": 8, "window_hours": 24, "neighbours": 3, "gap_adjustment": True, "placebo_sends": 5000},
    {
        "goal_event": "add_to_cart",
        "weight_window_hours": 48,
        "evidence_half_life_days": 7,
        "pre_match_candidates": 0,
        "placebo_sends": 5000,
    },
]


@pytest.mark.parametrize("overrides", PARITY_SETTINGS, ids=["defaults", "short-windows-k3", "other-goal"])
def test_in_memory_reward_equals_dbt(tmp_path, overrides):
    """rewards.Measurement on the landed files == marts.send_outcomes and marts.action_outcomes
    of real dbt builds, under several settings: a first run scoring the whole history, then
    three more days (legacy sends) and a second, incremental run."""
    import yaml

    from nudgeflow.config import load_settings
    from nudgeflow.lab.simulate import deliver
    from nudgeflow.steps import step_ingest, step_measure

    home = tmp_path / "home"
    create_world(home, users=300, history_days=HISTORY, start=START, seed=5)
    (home / "nudgeflow.yml").write_text(yaml.safe_dump(overrides))
    settings = load_settings(home)
    first = START + dt.timedelta(days=HISTORY)
    step_ingest(home, first)
    step_measure(home, first)
    for i in range(3):
        deliver(home, first + dt.timedelta(days=i), legacy=True)
    as_of = first + dt.timedelta(days=3)
    step_ingest(home, as_of)
    step_measure(home, as_of)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    dbt_out = con.sql("select send_id, reward, delta_y, n_controls from marts.send_outcomes").pl()
    dbt_actions = con.sql("select * from marts.action_outcomes").pl()
    dbt_cells = con.sql("select user_id, prior_cell, activity_hour from marts.user_features").pl()
    dbt_placebos = con.sql("select user_id, sent_ts, gap_bin, delta_y_unadjusted from marts.placebo_outcomes").pl()
    dbt_adjust = dict(
        con.sql(
            "select gap_bin, adjustment from marts.gap_adjustments where weights_as_of = ?", params=[as_of]
        ).fetchall()
    )
    con.close()

    world = load_world(home)
    uidx = {u: i for i, u in enumerate(world.user_ids.to_list())}
    ev = pl.read_parquet(home / "landing" / "events" / "*.parquet")
    sends = pl.read_parquet(home / "landing" / "sends" / "*.parquet").sort("sent_ts", "send_id")
    m = Measurement(world, settings)
    m.add_events(
        [uidx[u] for u in ev["user_id"]],
        [EVENT_NAMES.index(e) for e in ev["event_name"]],
        ev["event_ts"].cast(pl.Int64).to_numpy(),
        ev["value"].to_numpy(),
    )
    m.add_sends(
        [uidx[u] for u in sends["user_id"]],
        [world.msg_index[x] for x in sends["message_id"]],
        [CHANNELS.index(c) for c in sends["channel"]],
        sends["sent_ts"].cast(pl.Int64).to_numpy(),
    )
    as_of_us = [(day - dt.date(1970, 1, 1)).days * 86400 * US for day in (first, as_of)]
    for t in as_of_us:
        m.score(t)
    mine = pl.DataFrame({"send_id": sends["send_id"], "r": m.reward, "dy": m.delta_y, "nc": m.n_controls})
    joined = dbt_out.join(mine, on="send_id", how="inner")
    assert dbt_out.height > 100 and joined.height == dbt_out.height
    assert mine.filter(pl.col("r").is_not_nan()).height == dbt_out.filter(pl.col("reward").is_not_null()).height
    assert (joined["reward"].cast(pl.Float64) == joined["r"]).all()
    assert (joined["n_controls"] == joined["nc"]).all()
    assert np.allclose(joined["delta_y"].to_numpy(), joined["dy"].to_numpy(), atol=1e-9, equal_nan=True)
    # the placebos (same users, times and gap bins) and the gap adjustments of the last run
    p = m.placebos
    mine_p = pl.DataFrame(
        {
            "user_id": np.array(m.user_ids, dtype=object)[p["u"]].tolist(),
            "sent_ts": pl.Series(p["t"]).cast(pl.Datetime("us")),
            "gap_bin": np.array(m.gap_bins, dtype=object)[p["bin"]].tolist(),
            "d": p["delta"],
        }
    )
    # a user can be the placebo of several sends at the same time: compare sorted multisets
    key = ["user_id", "sent_ts", "gap_bin"]
    theirs = dbt_placebos.rename({"delta_y_unadjusted": "d"}).sort(key)
    mine_p = mine_p.sort(key)
    assert theirs.height > 50 and theirs.select(key).equals(mine_p.select(key))
    assert np.allclose(theirs["d"].to_numpy(), mine_p["d"].to_numpy(), atol=1e-9, equal_nan=True)
    assert set(dbt_adjust) == set(m.gap_bins)
    assert np.allclose([dbt_adjust[b] for b in m.gap_bins], m.adjustment, atol=1e-9)
    assert np.abs(m.adjustment).max() > 0

    # the priors' behaviour cells (activity-hour bin x activity half) and the activity hour
    f = m.user_features(as_of_us[-1])
    cells = dbt_cells.join(
        pl.DataFrame({"user_id": m.user_ids, "mine": f["prior_cell"], "hour": f["activity_hour"]}), on="user_id"
    )
    assert cells.height == len(m.user_ids) and (cells["prior_cell"] == cells["mine"]).all()
    assert cells["prior_cell"].n_unique() >= 6
    assert np.allclose(
        cells["activity_hour"].fill_null(np.nan).to_numpy(), cells["hour"].to_numpy(), atol=1e-9, equal_nan=True
    )

    # action_outcomes: plain counts and the counts with forgetting (evidence_half_life_days)
    key = ["user_id", "action_set", "action"]
    plain = m.action_outcomes(as_of_us[-1])
    weighted = m.action_outcomes(as_of_us[-1], half_life_days=settings.evidence_half_life_days or None)
    both = dbt_actions.join(plain.rename({"successes": "s", "trials": "n"}), on=key, how="full", coalesce=True).join(
        weighted.rename({"successes": "ws", "trials": "wn"}), on=key, how="full", coalesce=True
    )
    assert both.height == dbt_actions.height > 100
    assert (both["successes"] == both["s"]).all() and (both["trials"] == both["n"]).all()
    assert np.allclose(both["weighted_successes"].to_numpy(), both["ws"].to_numpy(), rtol=1e-9, atol=1e-12)
    assert np.allclose(both["weighted_trials"].to_numpy(), both["wn"].to_numpy(), rtol=1e-9, atol=1e-12)


def test_forgetting_discounts_old_evidence(worlds):
    home = ensure_world(worlds, "default", 1, 300, HISTORY, START)
    from nudgeflow.lab.harness.loop import Sim, epoch_us

    sim = Sim(home)
    as_of = epoch_us(sim.first_day)
    sim.meas.score(as_of)
    full = sim.meas.action_outcomes(as_of)
    half = sim.meas.action_outcomes(as_of, half_life_days=2.0)
    window = sim.meas.action_outcomes(as_of, window_days=2.0)
    assert full["trials"].sum() > half["trials"].sum() > 0
    assert full["trials"].sum() > window["trials"].sum() > 0
    assert (full["trials"] == full["trials"].round()).all()  # plain counts without forgetting


def test_closed_loop_policies(worlds):
    """Every policy respects the guardrails (run_policy asserts eligibility and one send a
    day); organic behaviour is shared (common random numbers); the oracle is best in truth."""
    home = ensure_world(worlds, "fatigue", 2, 300, HISTORY, START)
    res = {}
    for name in ("none", "random", "oracle", "ours", "ours_flat", "rules", "mab_ts", "mab_knn", "vw"):
        r = run_policy(home, make_policy(name), 3)
        sim = r["sim"]
        rows = r["loop_sends"]
        assert not sim.world.is_holdout[sim.meas.sends["u"][rows]].any()
        gaps = sim.meas.send_actions()["gap"][rows]
        assert not (gaps < 20).any()
        res[name] = r["daily"]
    te = {k: float(d["true_effect"].sum()) for k, d in res.items()}
    assert te["none"] == 0
    assert te["oracle"] >= max(v for k, v in te.items() if k != "oracle")
    assert te["oracle"] > 0


@pytest.fixture(scope="module")
def warm(worlds):
    """``ours`` after 5 loop days on a tiny world, and the context of the next day."""
    home = ensure_world(worlds, "default", 11, 300, HISTORY, START)
    return offpolicy.warm_state(home, 5)


def test_propensities_are_calibrated(warm):
    """Logged propensities (matching.propensity) match the pick frequency over re-runs of the
    same day with other seeds."""
    sim, pol, ctx = warm
    c = offpolicy.calibration(sim, pol, ctx, reruns=200)
    logged, emp = c["logged"], c["empirical"]
    assert c["users"] >= 30
    assert abs(logged.mean() - emp.mean()) < 0.03
    assert np.abs(logged - emp).mean() < 0.06
    assert np.corrcoef(logged, emp)[0, 1] > 0.9


def test_snips_from_random_logs_lands_in_ours_simulated_interval(warm):
    """SNIPS of ours's value from uniformly random logs: its 95% interval holds the value the
    simulator measures when ours runs, and is narrow (half-width under half that value)."""
    sim, pol, ctx = warm
    r = offpolicy.snips_check(sim, pol, ctx, log_runs=320, target_runs=40)
    lo, hi = r["snips_interval"]
    assert lo <= r["target_mean"] <= hi, r
    assert (hi - lo) / 2 < 0.5 * r["target_mean"], r
    assert r["effective_n"] > 300


def test_within_user_correlation_by_hand():
    from nudgeflow.lab.harness.report import within_user_corr

    # user 2 has one row and is left out; user 0: (.5, -.5) x (.5, -.5); user 1: (-.5, .5) x (-1, 1)
    u = np.array([0, 0, 1, 1, 2])
    r = within_user_corr(u, np.array([1.0, 0.0, 0.0, 1.0, 1.0]), np.array([2.0, 1.0, 1.0, 3.0, 5.0]))
    assert r == pytest.approx(1.5 / np.sqrt(1.0 * 2.5))


def test_mean_ci():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert m == 3.0 and lo < 3.0 < hi
    assert np.isclose(hi - m, 2.776 * np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))


def test_gap_bias_table(worlds):
    from nudgeflow.lab.harness.gap_bias import gap_bias

    table = gap_bias(worlds, seeds=1, users=300, history_days=HISTORY, days=4)
    assert set(table["bucket"]) <= {"<36h", "36-84h", "84-180h", ">=180h", "first"}
    assert table["sends"].sum() > 100 and table["null_sends"].sum() > 0
    for col in ("p_reward", "p_reward_if_positive", "p_reward_if_negative", "p_reward_null"):
        assert table[col].drop_nulls().is_between(0, 1).all()
    # both rewards from the same sends: the difference in differences alone, and less the gap adjustment
    by = {r: table.filter(pl.col("reward") == r).sort("bucket") for r in ("unadjusted", "adjusted")}
    assert by["unadjusted"]["sends"].to_list() == by["adjusted"]["sends"].to_list()
    assert by["unadjusted"]["p_reward"].to_list() != by["adjusted"]["p_reward"].to_list()
