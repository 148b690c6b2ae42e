"""The synthetic world: contract-exact landing files, determinism, delivery of a schedule,
causal effects with common random numbers, seasonality and ground truth."""

from __future__ import annotations

import datetime as dt
import filecmp
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from nudgeflow.lab.simulate import create_world, deliver, oracle_effects
from nudgeflow.lab.world import holdout_score

START = dt.date(2026, 1, 5)  # a Monday
HISTORY = 3
FIRST = START + dt.timedelta(days=HISTORY)

CONTRACT = {
    "users": {"user_id": pl.String, "timezone": pl.String, "country": pl.String, "updated_ts": pl.Datetime("us")},
    "consents": {"user_id": pl.String, "channel": pl.String, "opted_in": pl.Boolean, "updated_ts": pl.Datetime("us")},
    "events": {
        "event_id": pl.String,
        "user_id": pl.String,
        "event_name": pl.String,
        "event_ts": pl.Datetime("us"),
        "value": pl.Float64,
    },
    "sends": {
        "send_id": pl.String,
        "user_id": pl.String,
        "message_id": pl.String,
        "channel": pl.String,
        "sent_ts": pl.Datetime("us"),
    },
}


@pytest.fixture(scope="module")
def base_world(tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("world") / "home"
    summary = create_world(home, users=300, history_days=HISTORY, start=START, seed=7)
    return home, summary


def _copy(base: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(base, dst)
    return dst


def _write_schedule(home: Path, day: dt.date, rows: list[dict]) -> Path:
    path = home / "exports" / "send_schedule" / f"date={day.isoformat()}" / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        rows,
        schema={
            "schedule_date": pl.Date,
            "user_id": pl.String,
            "message_id": pl.String,
            "channel": pl.String,
            "send_at": pl.Datetime("us"),
            "actions": pl.String,
            "propensity": pl.Float64,
            "policy": pl.String,
            "run_id": pl.String,
        },
    ).write_parquet(path)
    return path


def _best_sends(home: Path, day: dt.date, n: int) -> list[dict]:
    """Schedule rows for the n users with the largest oracle effect, at their best hour."""
    orc = pl.read_parquet(home / "truth" / "user_message_hour_effects.parquet")
    best = (
        orc.filter("eligible")
        .sort("true_effect", descending=True)
        .unique("user_id", keep="first")
        .sort("true_effect", descending=True)
        .head(n)
    )
    tz = pl.read_parquet(home / "truth" / "world_users.parquet").select("user_id", "timezone")
    cat = pl.read_parquet(home / "landing" / "messages" / "catalogue_0001.parquet")
    best = best.join(tz, on="user_id").join(cat.select("message_id", "channel"), on="message_id")
    rows = []
    d0 = dt.datetime(day.year, day.month, day.day)
    from zoneinfo import ZoneInfo

    for r in best.iter_rows(named=True):
        local = dt.datetime(day.year, day.month, day.day, r["local_hour"], tzinfo=ZoneInfo(r["timezone"]))
        utc = local.astimezone(dt.UTC).replace(tzinfo=None)
        while utc < d0:
            utc += dt.timedelta(days=1)
        while utc >= d0 + dt.timedelta(days=1):
            utc -= dt.timedelta(days=1)
        rows.append(
            {
                "schedule_date": day,
                "user_id": r["user_id"],
                "message_id": r["message_id"],
                "channel": r["channel"],
                "send_at": utc,
                "actions": "{}",
                "propensity": 1.0,
                "policy": "oracle",
                "run_id": "t",
            }
        )
    return rows


def test_files_follow_the_contract(base_world):
    home, summary = base_world
    landing = home / "landing"
    assert summary["first_closed_loop_date"] == FIRST.isoformat()
    assert summary["users"] == 300 and summary["sends"] > 0 and summary["purchases"] > 0
    users = pl.read_parquet(landing / "users" / "users.parquet")
    consents = pl.read_parquet(landing / "consents" / "consents.parquet")
    for name, df in (("users", users), ("consents", consents)):
        assert dict(df.schema) == CONTRACT[name], name
    assert users["user_id"].is_unique().all() and users["user_id"].str.contains(r"^u\d{6}$").all()
    assert (consents["updated_ts"] < dt.datetime(2026, 1, 5)).all()
    assert set(consents["channel"]) <= {"push", "email", "in_app", "sms"}
    cat = pl.read_parquet(landing / "messages" / "catalogue_0001.parquet")
    assert 12 <= cat.height <= 24 and cat["message_id"].is_unique().all()
    assert {
        "message_id",
        "channel",
        "active",
        "valid_from",
        "valid_to",
        "countries",
        "title",
        "body",
        "label_tone",
        "label_offer",
        "label_emoji",
    } <= set(cat.columns)
    assert cat["active"].dtype == pl.Boolean and (~cat["active"]).sum() >= 1
    assert cat["valid_from"].dtype == pl.Datetime("us")
    for i in range(HISTORY):
        day = (START + dt.timedelta(days=i)).isoformat()
        ev = pl.read_parquet(landing / "events" / f"events_{day}.parquet")
        se = pl.read_parquet(landing / "sends" / f"sends_{day}.parquet")
        assert dict(ev.schema) == CONTRACT["events"] and dict(se.schema) == CONTRACT["sends"]
        assert ev["event_id"].is_unique().all() and se["send_id"].is_unique().all()
        lo = dt.datetime.fromisoformat(day)
        assert ev["event_ts"].min() >= lo and ev["event_ts"].max() < lo + dt.timedelta(days=1)
        assert set(ev["event_name"]) <= {
            "app_open",
            "view_item",
            "add_to_cart",
            "purchase",
            "settings_view",
            "help_view",
        }
        assert ev.filter(pl.col("event_name") == "purchase")["value"].is_not_null().all()
        assert ev.filter(pl.col("event_name") != "purchase")["value"].is_null().all()
        # the legacy sender: one message, 18:00 UTC, consented users, never the holdout
        assert se["message_id"].n_unique() == 1 and (se["sent_ts"].dt.hour() == 18).all()
    for f in ("state.json", "world_users.parquet", "user_message_hour_effects.parquet"):
        assert (home / "truth" / f).exists()


def test_legacy_sender_respects_consent_and_holdout(base_world):
    home, _ = base_world
    sends = pl.read_parquet(home / "landing" / "sends" / "*.parquet")
    consents = (
        pl.read_parquet(home / "landing" / "consents" / "consents.parquet")
        .sort("updated_ts")
        .group_by("user_id", "channel")
        .last()
    )
    joined = sends.join(consents, on=["user_id", "channel"], how="left")
    assert joined["opted_in"].fill_null(False).all()
    holdout = pl.read_parquet(home / "truth" / "world_users.parquet").filter("is_holdout")["user_id"]
    assert holdout.len() > 0 and not sends["user_id"].is_in(holdout.implode()).any()


def test_holdout_hash_matches_duckdb_formula():
    ids = ["u000001", "u000002", "u123456"]
    py = holdout_score(ids)
    sql = duckdb.sql(
        "select ('0x' || left(md5(u), 8))::UBIGINT / 4294967296.0 as s from (select unnest(?::varchar[]) as u)",
        params=[ids],
    ).fetchall()
    assert np.allclose(py, [r[0] for r in sql])
    assert py[0] == int(hashlib.md5(b"u000001").hexdigest()[:8], 16) / 2**32


def test_refuses_a_home_with_landed_files(base_world, tmp_path):
    home, _ = base_world
    with pytest.raises(ValueError, match="already has files"):
        create_world(home, users=10, history_days=1)
    with pytest.raises(ValueError, match="unknown scenario"):
        create_world(tmp_path / "x", users=10, history_days=1, scenario="nope")


def test_deterministic_for_a_seed(base_world, tmp_path):
    home, _ = base_world
    again = tmp_path / "again"
    create_world(again, users=300, history_days=HISTORY, start=START, seed=7)
    files = sorted(p.relative_to(home) for p in home.rglob("*.parquet") if "exports" not in p.parts)
    assert files and all(filecmp.cmp(home / f, again / f, shallow=False) for f in files)
    other = tmp_path / "other"
    create_world(other, users=300, history_days=HISTORY, start=START, seed=8)
    day = f"events_{START.isoformat()}.parquet"
    assert not pl.read_parquet(home / "landing" / "events" / day).equals(
        pl.read_parquet(other / "landing" / "events" / day)
    )


def test_deliver_turns_the_schedule_into_sends(base_world, tmp_path):
    home = _copy(base_world[0], tmp_path, "h")
    d0 = dt.datetime(FIRST.year, FIRST.month, FIRST.day)
    rows = [
        {
            "schedule_date": FIRST,
            "user_id": "u000001",
            "message_id": "msg_001",
            "channel": "push",
            "send_at": d0 + dt.timedelta(hours=9, minutes=30),
            "actions": "{}",
            "propensity": 0.5,
            "policy": "test",
            "run_id": "r",
        },
        {
            "schedule_date": FIRST,
            "user_id": "u000002",
            "message_id": "msg_007",
            "channel": "email",
            "send_at": d0 + dt.timedelta(hours=23),
            "actions": "{}",
            "propensity": 0.5,
            "policy": "test",
            "run_id": "r",
        },
        {
            "schedule_date": FIRST,
            "user_id": "u000003",
            "message_id": "msg_012",
            "channel": "in_app",
            "send_at": d0 + dt.timedelta(days=1, hours=1),
            "actions": "{}",
            "propensity": 0.5,
            "policy": "test",
            "run_id": "r",
        },  # outside the day: not delivered
    ]
    _write_schedule(home, FIRST, rows)
    r = deliver(home, FIRST)
    assert r["sends"] == 2 and r["rejected"] == {"send_at_outside_day": 1}
    sends = pl.read_parquet(home / "landing" / "sends" / f"sends_{FIRST.isoformat()}.parquet")
    assert dict(sends.schema) == CONTRACT["sends"]
    assert sends.select("user_id", "message_id", "channel", "sent_ts").rows() == [
        ("u000001", "msg_001", "push", d0 + dt.timedelta(hours=9, minutes=30)),
        ("u000002", "msg_007", "email", d0 + dt.timedelta(hours=23)),
    ]
    assert sends["send_id"].to_list() == [f"s-{FIRST:%Y%m%d}-000001", f"s-{FIRST:%Y%m%d}-000002"]
    truth = pl.read_parquet(home / "truth" / "send_effects" / f"{FIRST.isoformat()}.parquet")
    assert truth["send_id"].to_list() == sends["send_id"].to_list()
    assert set(truth["source"]) == {"schedule"}
    events = pl.read_parquet(home / "landing" / "events" / f"events_{FIRST.isoformat()}.parquet")
    assert dict(events.schema) == CONTRACT["events"]
    # idempotent: delivering the day again replaces it with the same files
    before = {p: p.read_bytes() for p in (home / "landing").rglob(f"*{FIRST.isoformat()}*")}
    deliver(home, FIRST)
    assert all(p.read_bytes() == b for p, b in before.items())
    # no schedule: no sends (the legacy sender only ran in history)
    nxt = FIRST + dt.timedelta(days=1)
    assert deliver(home, nxt)["sends"] == 0


def test_a_positive_send_adds_events_and_nothing_else_changes(base_world, tmp_path):
    """Common random numbers: with and without the schedule, untreated users' events are
    identical and treated users (tau > 0) only gain events, also after midnight."""
    with_s = _copy(base_world[0], tmp_path, "with")
    without = _copy(base_world[0], tmp_path, "without")
    rows = _best_sends(with_s, FIRST, 80)
    _write_schedule(with_s, FIRST, rows)
    nxt = FIRST + dt.timedelta(days=1)
    for h in (with_s, without):
        deliver(h, FIRST)
        deliver(h, nxt)
    truth = pl.read_parquet(with_s / "truth" / "send_effects" / f"{FIRST.isoformat()}.parquet")
    assert truth.height == 80 and (truth["tau"] > 0).all()
    treated = truth["user_id"].implode()
    key = ["user_id", "event_name", "event_ts"]
    gained = {}
    for day in (FIRST, nxt):
        a = pl.read_parquet(with_s / "landing" / "events" / f"events_{day.isoformat()}.parquet")
        b = pl.read_parquet(without / "landing" / "events" / f"events_{day.isoformat()}.parquet")
        assert (
            a.filter(~pl.col("user_id").is_in(treated))
            .select(key)
            .equals(b.filter(~pl.col("user_id").is_in(treated)).select(key))
        )
        ta = set(a.filter(pl.col("user_id").is_in(treated)).select(key).rows())
        tb = set(b.filter(pl.col("user_id").is_in(treated)).select(key).rows())
        assert tb <= ta
        gained[day] = {n: sum(1 for r in ta - tb if r[1] == n) for n in ("app_open", "purchase")}
    assert gained[FIRST]["app_open"] > 0 and gained[nxt]["app_open"] > 0  # carry-over
    assert gained[FIRST]["purchase"] + gained[nxt]["purchase"] > 0
    assert truth["true_effect"].sum() > 0


def test_weekly_seasonality_is_visible(tmp_path):
    home = tmp_path / "season"
    create_world(home, users=400, history_days=14, start=START, seed=1)
    ev = pl.read_parquet(home / "landing" / "events" / "*.parquet")
    daily = (
        ev.filter(pl.col("event_name") == "app_open")
        .group_by(pl.col("event_ts").dt.date().alias("d"))
        .len()
        .with_columns(weekend=pl.col("d").dt.weekday() >= 6)
    )
    we = daily.filter("weekend")["len"].mean()
    wd = daily.filter(~pl.col("weekend"))["len"].mean()
    assert we > 1.2 * wd


def test_truth_is_consistent(base_world):
    home, summary = base_world
    effects = pl.read_parquet(home / "truth" / "send_effects" / "*.parquet")
    sends = pl.read_parquet(home / "landing" / "sends" / "*.parquet")
    assert effects.height == sends.height
    assert set(effects["send_id"]) == set(sends["send_id"])
    assert (np.sign(effects["tau"]) == np.sign(effects["true_effect"])).all()
    orc = pl.read_parquet(home / "truth" / "user_message_hour_effects.parquet")
    n_msg = pl.read_parquet(home / "landing" / "messages" / "catalogue_0001.parquet").height
    assert orc.height == 300 * n_msg * 14
    assert orc["tau"].dtype == pl.Float32 and orc["local_hour"].dtype == pl.Int8
    assert set(orc["local_hour"]) == set(range(8, 22))
    assert (np.sign(orc["tau"]) == np.sign(orc["true_effect"])).all()
    holdout = pl.read_parquet(home / "truth" / "world_users.parquet").filter("is_holdout")["user_id"]
    assert not orc.filter(pl.col("user_id").is_in(holdout.implode()))["eligible"].any()
    o = summary["oracle"]
    assert 0.15 < o["share_negative"] < 0.45 and o["mean_tau"] > 0 and o["best_vs_avg"] > 1.5
    state = json.loads((home / "truth" / "state.json").read_text())
    assert state["scenario"] == "default" and state["first_closed_loop_date"] == FIRST.isoformat()


def test_fatigue_lowers_the_effect_of_a_quick_second_send(tmp_path):
    home = tmp_path / "fatigue"
    create_world(home, users=200, history_days=1, start=START, seed=2, scenario="fatigue")
    day = START + dt.timedelta(days=1)
    d0 = dt.datetime(day.year, day.month, day.day)
    row = {
        "schedule_date": day,
        "user_id": "u000010",
        "message_id": "msg_013",
        "channel": "in_app",
        "actions": "{}",
        "propensity": 1.0,
        "policy": "t",
        "run_id": "r",
    }
    _write_schedule(
        home, day, [row | {"send_at": d0 + dt.timedelta(hours=2)}, row | {"send_at": d0 + dt.timedelta(hours=3)}]
    )
    r = deliver(home, day)
    assert r["violations"].get("users_with_several_sends") == 1
    t = pl.read_parquet(home / "truth" / "send_effects" / f"{day.isoformat()}.parquet").sort("sent_ts")
    assert t["hours_since_prev"][1] == pytest.approx(1.0)
    assert t["fatigue_penalty"][1] > 0.5 and t["tau"][1] < t["tau"][0]


@pytest.mark.parametrize("scenario", ["strong_seasonality", "drift", "many_labels"])
def test_scenarios(tmp_path, scenario):
    home = tmp_path / scenario
    s = create_world(home, users=150, history_days=2, start=START, seed=4, scenario=scenario)
    assert json.loads((home / "truth" / "state.json").read_text())["scenario"] == scenario
    assert s["events"] > 0
    r = deliver(home, START + dt.timedelta(days=2))
    assert r["events"] > 0 and r["sends"] == 0
    cat = pl.read_parquet(home / "landing" / "messages" / "catalogue_0001.parquet")
    labels = [c for c in cat.columns if c.startswith("label_")]
    assert len(labels) == (6 if scenario == "many_labels" else 3)
    if scenario == "drift":
        first = START + dt.timedelta(days=2)
        a = oracle_effects(home, first)
        b = oracle_effects(home, first + dt.timedelta(days=30))  # after the regime change
        assert a.height == b.height
        assert np.corrcoef(a["tau"], b["tau"])[0, 1] < 0.9
