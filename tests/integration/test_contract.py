"""A home written by hand, in CSV, with other event names, channels and labels than the
simulator's, through `nudgeflow run`; every guardrail of the contract is checked on the schedule."""

import csv
import datetime as dt
import hashlib
import random
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest

D = dt.date(2026, 3, 10)
DT = dt.datetime(2026, 3, 10)
SEND_HOURS = [9, 10, 11, 18, 19]
ZONES = ["Asia/Kolkata", "America/Los_Angeles", "Europe/Berlin", "Mars/Olympus", ""]
COUNTRIES = ["IN", "US", "DE", "BR", ""]
CHANNELS = ["whatsapp", "webpush", "letter"]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_home(home: Path, n_users: int = 80) -> dict:
    rng = random.Random(42)
    users = [f"cust-{i:03d}" for i in range(n_users)]
    (home / "nudgeflow.yml").write_text(
        "goal_event: checkout\nholdout_fraction: 0.25\nsend_hours: [9, 10, 11, 18, 19]\n"
        "neighbours: 3\nweight_window_hours: 48\n"
    )
    _write_csv(
        home / "landing/users/users.csv",
        ["user_id", "timezone", "country", "updated_ts", "extra"],
        [[u, ZONES[i % 5], COUNTRIES[i % 5], _iso(DT - dt.timedelta(days=30)), "x"] for i, u in enumerate(users)]
        # a later row for cust-000 wins; a row after the as-of time does not
        + [
            ["cust-000", "Europe/Berlin", "DE", _iso(DT - dt.timedelta(days=3)), ""],
            ["cust-000", "Asia/Kolkata", "IN", _iso(DT + dt.timedelta(hours=5)), ""],
        ],
    )
    consents = []
    for i, u in enumerate(users):
        for c in CHANNELS:
            if rng.random() < 0.7:
                consents.append([u, c, "true", _iso(DT - dt.timedelta(days=20))])
        if i % 7 == 0:  # opted out later: latest row wins
            consents.append([u, "whatsapp", "false", _iso(DT - dt.timedelta(days=2))])
        if i % 11 == 0:  # opted in, but only after the as-of time
            consents.append([u, "letter", "true", _iso(DT + dt.timedelta(hours=1))])
            consents.append([u, "letter", "false", _iso(DT - dt.timedelta(days=25))])
    _write_csv(home / "landing/consents/consents.csv", ["user_id", "channel", "opted_in", "updated_ts"], consents)

    header = [
        "message_id",
        "channel",
        "active",
        "valid_from",
        "valid_to",
        "countries",
        "title",
        "body",
        "label_voice",
        "label_cta",
    ]
    old = [["old-1", "whatsapp", "true", "", "", "", "t", "b", "calm", "shop"]]
    _write_csv(home / "landing/messages/2026-01-01.csv", header, old)
    current = [
        ["wa-calm", "whatsapp", "true", "", "", "", "Hi", "...", "calm", "shop"],
        ["wa-loud", "whatsapp", "true", "", "", "", "HI", "...", "loud", "browse"],
        ["wp-calm", "webpush", "", "", "", "", "Hi", "...", "calm", "browse"],
        ["wp-off", "webpush", "false", "", "", "", "Off", "...", "loud", "shop"],
        [
            "wp-window",
            "webpush",
            "true",
            _iso(DT + dt.timedelta(hours=12)),
            _iso(DT + dt.timedelta(hours=20)),
            "",
            "Later",
            "...",
            "loud",
            "shop",
        ],
        ["lt-de", "letter", "true", "", "", "DE, IN", "Brief", "...", "calm", ""],
        ["lt-expired", "letter", "true", "", _iso(DT - dt.timedelta(days=1)), "", "Old", "...", "loud", "shop"],
    ]
    _write_csv(home / "landing/messages/2026-03-01.csv", header, current)

    events = []
    for i, u in enumerate(users):
        for day in range(1, 21):
            t0 = DT - dt.timedelta(days=day, hours=rng.randint(0, 23), minutes=rng.randint(0, 59))
            events.append([f"e{i}-{day}", u, "session_start", _iso(t0), ""])
            if rng.random() < 0.5:
                events.append([f"e{i}-{day}-b", u, "browse", _iso(t0 + dt.timedelta(minutes=3)), ""])
                if rng.random() < 0.3:
                    events.append(
                        [
                            f"e{i}-{day}-c",
                            u,
                            "checkout",
                            _iso(t0 + dt.timedelta(minutes=9)),
                            f"{rng.uniform(5, 90):.2f}",
                        ]
                    )
    events.append(["e0-1", users[0], "session_start", _iso(DT - dt.timedelta(days=1)), ""])  # duplicate id
    events.append(["bad-ts", users[1], "browse", "yesterday", ""])  # quarantined
    events.append(["no-user", "", "browse", _iso(DT - dt.timedelta(days=1)), ""])  # quarantined
    _write_csv(home / "landing/events/events.csv", ["event_id", "user_id", "event_name", "event_ts", "value"], events)
    (home / "landing/events/broken.csv").write_text("user_id;event_name\nu;x\n")  # file quarantined

    sends = []
    for i, u in enumerate(users):
        if i % 3 == 0:  # 10 hours before D: spacing rule forbids early sends on D
            sends.append([f"s{i}a", u, "wa-calm", "whatsapp", _iso(DT - dt.timedelta(hours=10))])
        if i % 3 == 1:  # 5 days ago: the same message may not repeat within 14 days
            sends.append([f"s{i}b", u, "wp-calm", "webpush", _iso(DT - dt.timedelta(days=5))])
        if i % 4 == 0:
            sends.append([f"s{i}c", u, "wa-loud", "whatsapp", _iso(DT - dt.timedelta(days=9))])
    _write_csv(home / "landing/sends/sends.csv", ["send_id", "user_id", "message_id", "channel", "sent_ts"], sends)
    return {"users": users, "current": current}


def _holdout(user_id: str, fraction: float) -> bool:
    return int(hashlib.md5(user_id.encode()).hexdigest()[:8], 16) / 2**32 < fraction


@pytest.fixture(scope="module")
def home_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("handmade")
    meta = make_home(home)
    done = subprocess.run(
        [sys.executable, "-m", "nudgeflow.cli", "run", "--home", str(home), "--date", str(D)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home, meta


def _schedule(home: Path) -> pl.DataFrame:
    return pl.read_parquet(home / f"exports/send_schedule/date={D}/part-0.parquet")


def test_schedule_columns_and_export_equal_the_table(home_run):
    home, _ = home_run
    export = _schedule(home)
    assert export.columns == [
        "schedule_date",
        "user_id",
        "message_id",
        "channel",
        "send_at",
        "actions",
        "propensity",
        "policy",
        "run_id",
    ]
    assert export.height > 0
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    table = con.sql("select * from send_schedule where schedule_date = ? order by user_id", params=[D]).pl()
    con.close()
    assert table.drop("send_at").equals(export.sort("user_id").drop("send_at"))
    assert (export["schedule_date"] == D).all()
    assert export["propensity"].is_between(0, 1, closed="right").all()


def test_every_guardrail(home_run):
    home, meta = home_run
    rows = _schedule(home).to_dicts()
    msgs = {m[0]: m for m in meta["current"]}
    tz = {u: ZONES[i % 5] for i, u in enumerate(meta["users"])}
    tz["cust-000"] = "Europe/Berlin"
    country = {u: COUNTRIES[i % 5] for i, u in enumerate(meta["users"])}
    country["cust-000"] = "DE"
    with (home / "landing/consents/consents.csv").open() as f:
        latest = {}
        for r in csv.DictReader(f):
            ts = dt.datetime.fromisoformat(r["updated_ts"].replace("Z", ""))
            if ts < DT and ts >= latest.get((r["user_id"], r["channel"]), (dt.datetime.min, None))[0]:
                latest[(r["user_id"], r["channel"])] = (ts, r["opted_in"] == "true")
    with (home / "landing/sends/sends.csv").open() as f:
        sends = [
            (r["user_id"], r["message_id"], dt.datetime.fromisoformat(r["sent_ts"].replace("Z", "")))
            for r in csv.DictReader(f)
        ]
    per_user = {}
    for r in rows:
        u, m, at = r["user_id"], r["message_id"], r["send_at"]
        per_user[u] = per_user.get(u, 0) + 1
        assert DT <= at < DT + dt.timedelta(days=1)
        zone = ZoneInfo(tz[u]) if tz[u] in ("Asia/Kolkata", "America/Los_Angeles", "Europe/Berlin") else dt.UTC
        local = at.replace(tzinfo=dt.UTC).astimezone(zone)
        assert local.hour in SEND_HOURS and local.minute == 0
        assert not _holdout(u, 0.25)
        assert latest.get((u, r["channel"]), (None, False))[1], (u, r["channel"])
        assert m not in ("wp-off", "lt-expired", "old-1")
        msg = msgs[m]
        assert r["channel"] == msg[1]
        assert msg[2] != "false"
        if msg[3]:
            assert at >= dt.datetime.fromisoformat(msg[3].replace("Z", ""))
        if msg[4]:
            assert at < dt.datetime.fromisoformat(msg[4].replace("Z", ""))
        if msg[5]:
            assert country[u] in [c.strip() for c in msg[5].split(",")]
        for su, sm, st in sends:
            if su == u:
                assert at - st >= dt.timedelta(hours=20)
                if sm == m:
                    assert at - st >= dt.timedelta(days=14)
    assert max(per_user.values()) <= 1


def test_actions_name_every_action_set(home_run):
    import json

    home, _ = home_run
    for r in _schedule(home).to_dicts():
        actions = json.loads(r["actions"])
        assert {"channel", "send_hour", "frequency"} <= set(actions)
        assert actions["channel"] == r["channel"]
        assert set(actions) - {"channel", "send_hour", "frequency"} <= {"label_voice", "label_cta"}


def test_bad_rows_and_files_are_quarantined_with_a_reason(home_run):
    home, _ = home_run
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    q = con.sql("select table_name, _file, _row, reason from marts.quarantine").pl()
    con.close()
    assert "broken.csv" in q["_file"].to_list()
    events = q.filter((pl.col("table_name") == "events") & (pl.col("_file") == "events.csv"))
    assert events.height >= 2
    assert events["reason"].str.len_chars().min() > 0


def test_rerun_gives_the_same_schedule_and_replaces_it(home_run):
    home, _ = home_run
    before = _schedule(home)
    done = subprocess.run(
        [sys.executable, "-m", "nudgeflow.cli", "run", "--home", str(home), "--date", str(D), "--run-id", "second"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = _schedule(home)
    assert after.drop("run_id").equals(before.drop("run_id"))
    assert (after["run_id"] == "second").all()
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    n = con.execute("select count(*) from send_schedule where schedule_date = ?", [D]).fetchall()[0][0]
    con.close()
    assert n == after.height
    assert list((home / "exports/send_schedule").iterdir()) == [home / f"exports/send_schedule/date={D}"]
    assert [p.name for p in (home / f"exports/send_schedule/date={D}").iterdir()] == ["part-0.parquet"]


def test_report_works_on_a_hand_made_csv_home(home_run, tmp_path):
    """A home that was never simulated (CSV landing files, other names): the text report and
    the HTML report read the published copy, not landing/*.parquet."""
    home, _ = home_run
    done = subprocess.run(
        [sys.executable, "-m", "nudgeflow.cli", "report", "--home", str(home), "--html", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (tmp_path / "r.html").read_text().count("<svg") >= 1
