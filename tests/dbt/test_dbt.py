"""The dbt project (step 2, measure) on a tiny hand-made warehouse.

The raw rows below are small enough to follow by hand. The run is for as_of 2026-01-20
with the contract's defaults (72 h follow window, 48 h outcome window, 24 h half-life).

Event weights come from the horizon [2025-12-23, 2026-01-17), T = 600 h. u1 views on
01-02 10:00 and purchases a day later (the view is followed; the purchase is not: the next
goal is 15 days later), u2 and u3 view and never purchase in time (not followed; u3's view
is landed twice without an event_id, which is one event). Followed hours F_u (72 h before
each goal, clipped to the horizon): u1 72 (before 01-03 10:00) + 36 ([01-15 12:00, 01-17),
before 01-18 12:00) = 108, u2 12 (before 01-19 12:00), u3 11 (before 01-19 13:00).
Mantel-Haenszel within users:
    view:     followed 1 * (600 - 108) / 600 = 0.82, not followed 1 * 12/600 + 1 * 11/600
              w_view = ln((0.82 + 0.5) / (23/600 + 0.5))
    purchase: the goal weighs max(1, the largest other weight) = max(1, w_view = 0.897) = 1

Send s1 to u1 at t = 2026-01-17 12:00 (matured 2026-01-19 12:00):
    pre:  view at t - 12 h            -> ln(2/3) * 2^(-12/24)
    post: app_open at t (weight 0: not in the horizon) and a purchase at t + 24 h,
          landed twice with the same event_id (one event) -> 1 * 2^(-24/24)
Controls of s1 are matched on the features of the send's day, 2026-01-17 (the 28 days
before it): u1's cell is UTC offset 0 x has a goal in 28 days. In it, u2 and u5 (unknown
timezone 'Mars/Olympus' = UTC; both purchased on 2025-12-20, before every weight horizon)
had no send in [t - 48 h, t + 48 h) and no event in the window (u2's purchase is exactly at
t + 48 h, outside): both have y_pre = y_post = 0. u3 (sent at t - 36 h) and u6 (sent at
t + 36 h, not yet matured) are excluded; u4 (Asia/Tokyo) is in another cell. So
delta_y = y_post - y_pre - 0 = 0.5 - 0.634 < 0 and reward = 0. (At as_of, u3 and u6 have goals too, but
those purchases come after the send and do not move its matching.)
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO / "dbt_project"
AS_OF = "2026-01-20 00:00:00"
W_VIEW = math.log((0.82 + 0.5) / (23 / 600 + 0.5))  # see the module docstring

RAW_TABLES = {
    "events": ["event_id", "user_id", "event_name", "event_ts", "value"],
    "users": ["user_id", "timezone", "country", "updated_ts"],
    "consents": ["user_id", "channel", "opted_in", "updated_ts"],
    "sends": ["send_id", "user_id", "message_id", "channel", "sent_ts"],
    "messages": ["message_id", "channel", "active", "valid_from", "valid_to", "countries", "title", "body"],
    "message_labels": ["message_id", "dimension", "value"],
}

# (file, row, *values); None is a missing cell.
EVENTS = [
    ("events_1.csv", 1, "e1", "u1", "view", "2026-01-02T10:00:00", None),
    ("events_1.csv", 2, "e2", "u1", "purchase", "2026-01-03T10:00:00", "20.0"),
    ("events_1.csv", 3, "e3", "u2", "view", "2026-01-05 00:00:00", None),
    ("events_1.csv", 4, None, "u3", "view", "2026-01-06 00:00:00", None),
    ("events_1.csv", 5, None, "u3", "view", "2026-01-06 00:00:00", None),  # duplicate, no id
    ("events_1.csv", 6, "e6", "u1", "view", "2026-01-17 00:00:00", None),
    ("events_1.csv", 7, "e7", "u1", "app_open", "2026-01-17T12:00:00Z", None),
    ("events_2.csv", 1, "e8", "u1", "purchase", "2026-01-18 12:00:00", "35.5"),
    ("events_2.csv", 2, "e8", "u1", "purchase", "2026-01-18 12:00:00", "35.5"),  # duplicate event_id
    ("events_2.csv", 3, "e9", "u2", "purchase", "2026-01-19 12:00:00", "10"),
    ("events_2.csv", 4, "e10", "u3", "purchase", "2026-01-19 13:00:00", "10"),
    ("events_2.csv", 5, "e11", "u4", "purchase", "2026-01-19 13:00:00", "10"),
    ("events_2.csv", 6, "e12", "u5", "purchase", "2026-01-19 13:00:00", "10"),
    ("events_2.csv", 7, "e13", "u6", "purchase", "2026-01-19 13:00:00", "10"),
    ("events_2.csv", 8, "e14", "u1", "view", "yesterday", None),  # bad timestamp
    ("events_2.csv", 9, "e15", " ", "view", "2026-01-10 00:00:00", None),  # missing user_id
    ("events_2.csv", 10, "e16", "u2", "purchase", "2026-01-10 00:00:00", "ten"),  # bad value
    ("events_2.csv", 11, "e17", "u2", "view", "2026-01-21 00:00:00", None),  # after as_of
    # goals before every weight horizon used here but inside the 28 days of features before
    # the sends' days: u2 and u5 are goal users before s1 (pre-treatment matching features)
    ("events_2.csv", 12, "e18", "u2", "purchase", "2025-12-20 12:00:00", "5"),
    ("events_2.csv", 13, "e19", "u5", "purchase", "2025-12-20 12:00:00", "5"),
]
USERS = [
    ("users_1.csv", 1, "u1", "America/New_York", "us", "2026-01-01 00:00:00"),
    ("users_1.csv", 2, "u2", "UTC", "GB", None),
    ("users_1.csv", 3, "u3", "Europe/London", "GB", None),
    ("users_1.csv", 4, "u4", "Asia/Tokyo", "JP", None),
    ("users_1.csv", 5, "u5", "Mars/Olympus", None, None),  # unknown timezone
    ("users_1.csv", 6, "u6", "utc", "FR", None),
    ("users_2.csv", 1, "u1", "Europe/London", "GB", "2026-01-10 00:00:00"),  # latest known: wins
    ("users_2.csv", 2, "u1", "Asia/Tokyo", "JP", "2026-01-25 00:00:00"),  # after as_of
]
CONSENTS = [
    ("consents_1.csv", 1, "u1", "Push", "true", "2026-01-01 00:00:00"),
    ("consents_1.csv", 2, "u1", "push", "false", "2026-01-10 00:00:00"),  # latest: wins
    ("consents_1.csv", 3, "u2", "email", "yes", "2026-01-01 00:00:00"),
    ("consents_1.csv", 4, "u3", "push", "maybe", "2026-01-01 00:00:00"),  # bad boolean
]
SENDS = [
    ("sends_1.csv", 1, "s1", "u1", "m1", "push", "2026-01-17 12:00:00"),
    ("sends_1.csv", 2, "s3", "u3", "m2", "email", "2026-01-16 00:00:00"),
    ("sends_2.csv", 1, "s6", "u6", "m1", "push", "2026-01-19 00:00:00"),  # not matured
    ("sends_2.csv", 2, "s1", "u2", "m1", "push", "2026-01-18 00:00:00"),  # duplicate send_id
    ("sends_2.csv", 3, "s7", None, "m1", "push", "2026-01-18 00:00:00"),  # missing user_id
]
MESSAGES = [
    ("messages_1.csv", 1, "m1", "push", None, None, None, None, "Hi", "Come back"),
    ("messages_1.csv", 2, "m2", "email", "true", None, None, "fr, de", "Deal", "10% off"),
    ("messages_2.csv", 1, "m1", "PUSH", "TRUE", None, "2026-03-01", "", "Hi", "Come back"),
    ("messages_2.csv", 2, "m3", "email", "false", None, None, None, "New", "Look"),
    ("messages_2.csv", 3, "m3", "email", "true", None, None, None, "New", "Again"),  # duplicate id
]
MESSAGE_LABELS = [
    ("messages_1.csv", 1, "m1", "tone", "casual"),
    ("messages_1.csv", 2, "m2", "tone", "urgent"),
    ("messages_2.csv", 1, "m1", "tone", "friendly"),
    ("messages_2.csv", 2, "m3", "tone", "playful"),
    ("messages_2.csv", 3, "m3", "tone", "dropped with its row"),
]


def _create_raw(path: Path) -> None:
    from nudgeflow.steps.ingest import create_raw_tables

    con = duckdb.connect(str(path))
    create_raw_tables(con)  # the raw schema as ingest makes it, with raw.timezones
    for table, rows in [
        ("events", EVENTS),
        ("users", USERS),
        ("consents", CONSENTS),
        ("sends", SENDS),
        ("messages", MESSAGES),
        ("message_labels", MESSAGE_LABELS),
    ]:
        columns = RAW_TABLES[table]
        con.executemany(
            f"insert into raw.{table} ({', '.join(columns)}, _file, _row) "
            f"values ({', '.join('?' for _ in columns)}, ?, ?)",
            [[*values, file, row] for file, row, *values in rows],
        )
    con.execute(
        "insert into raw.ingested_files values "
        "('messages', 'messages_1.csv', 2, '2026-01-01'), ('messages', 'messages_2.csv', 3, '2026-01-02')"
    )
    con.execute(
        "insert into raw.quarantined_files values "
        "('events', 'broken.parquet', 'unreadable file: not a parquet file', '2026-01-02')"
    )
    con.close()


def _dbt_build(tmp_path: Path, as_of: str = AS_OF, *extra: str) -> list:
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        [
            "build",
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(tmp_path / "dbt" / "target"),
            "--log-path",
            str(tmp_path / "dbt" / "logs"),
            "--vars",
            json.dumps({"as_of": as_of}),
            "--quiet",
            *extra,
        ]
    )
    failed = [
        f"{r.node.name}: {r.message}"
        for r in (result.result or [])
        if str(r.status).lower() in ("error", "fail", "runtime error")
    ]
    assert result.exception is None, result.exception
    assert result.success and not failed, failed
    return list(result.result)


def _query(warehouse: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(warehouse))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _counts(warehouse: Path) -> dict[str, int]:
    tables = [
        "send_outcomes",
        "send_actions",
        "action_outcomes",
        "quarantine",
        "event_weights",
        "user_features",
        "catalogue",
        "catalogue_labels",
        "consents_current",
        "recent_sends",
    ]
    return {t: _query(warehouse, f"select count(*) from marts.{t}")[0][0] for t in tables}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One warehouse built once for as_of, then rebuilt (the rerun must add nothing)."""
    tmp_path = tmp_path_factory.mktemp("dbt")
    warehouse = tmp_path / "warehouse.duckdb"
    _create_raw(warehouse)
    mp = pytest.MonkeyPatch()
    mp.setenv("NUDGEFLOW_WAREHOUSE", str(warehouse))
    first = _dbt_build(tmp_path)
    controls = _query(warehouse, "select send_id, control_user_id from intermediate.int_sends__controls")
    counts_first = _counts(warehouse)
    second = _dbt_build(tmp_path)
    yield {
        "tmp_path": tmp_path,
        "warehouse": warehouse,
        "first": first,
        "second": second,
        "controls": controls,
        "counts_first": counts_first,
    }
    mp.undo()


def test_build_succeeds_with_unit_tests(built):
    kinds = {r.node.resource_type for r in built["first"]}
    assert {"model", "test", "unit_test"} <= {str(k).split(".")[-1].lower() for k in kinds}
    unit_tests = [r for r in built["first"] if str(r.node.resource_type).lower().endswith("unit_test")]
    assert len(unit_tests) >= 5


def test_quarantine_lists_bad_rows_with_reasons(built):
    rows = _query(built["warehouse"], "select table_name, _file, _row, reason, action from marts.quarantine")
    by_key = {(t, f, r): reason for t, f, r, reason, _ in rows}
    kept = {(t, f, r) for t, f, r, _, action in rows if action == "kept"}
    # fail-safe readings, kept and listed: an unknown zone is UTC, an unreadable opt-in an opt-out
    assert kept == {("users", "users_1.csv", 5), ("consents", "consents_1.csv", 4)}
    assert by_key[("users", "users_1.csv", 5)] == "unknown timezone Mars/Olympus: treated as UTC"
    assert by_key[("consents", "consents_1.csv", 4)] == "unparsable boolean opted_in: maybe: treated as opted out"
    assert _query(built["warehouse"], "select opted_in from staging.stg_raw__consents where user_id = 'u3'") == [
        (False,)
    ]
    assert "unparsable timestamp event_ts" in by_key[("events", "events_2.csv", 8)]
    assert by_key[("events", "events_2.csv", 9)] == "missing user_id"
    assert "unparsable number value" in by_key[("events", "events_2.csv", 10)]
    assert "unparsable boolean opted_in" in by_key[("consents", "consents_1.csv", 4)]
    assert by_key[("sends", "sends_2.csv", 2)] == "duplicate send_id"
    assert by_key[("sends", "sends_2.csv", 3)] == "missing user_id"
    assert by_key[("messages", "messages_2.csv", 3)] == "duplicate message_id in snapshot"
    assert by_key[("events", "broken.parquet", None)].startswith("unreadable file")
    assert len(rows) == 9


def test_staging_deduplicates_events(built):
    wh = built["warehouse"]
    # e8 landed twice (same event_id): one event; u3's view landed twice without id: one event
    assert _query(wh, "select count(*) from staging.stg_raw__events where event_id = 'e8'") == [(1,)]
    assert _query(wh, "select count(*) from staging.stg_raw__events where user_id = 'u3' and event_name = 'view'") == [
        (1,)
    ]
    # the kept duplicate is the first landed row; nothing at or after as_of
    assert _query(wh, f"select count(*) from staging.stg_raw__events where event_ts >= timestamp '{AS_OF}'") == [(0,)]


def test_latest_row_wins(built):
    wh = built["warehouse"]
    users = dict((u, (tz, c)) for u, tz, c in _query(wh, "select user_id, timezone, country from marts.user_features"))
    assert users["u1"] == ("Europe/London", "GB")  # the 2026-01-25 row is not known yet
    assert users["u5"] == ("UTC", None)  # unknown timezone means UTC
    assert users["u6"][0] == "UTC"  # case-insensitive match, canonical name
    consents = set(_query(wh, "select user_id, channel, opted_in from marts.consents_current"))
    assert consents == {("u1", "push", False), ("u2", "email", True), ("u3", "push", False)}  # u3: fail safe


def test_catalogue_is_the_last_snapshot(built):
    wh = built["warehouse"]
    catalogue = {
        m: (ch, active, countries, valid_to)
        for m, ch, active, countries, valid_to in _query(
            wh, "select message_id, channel, active, countries, cast(valid_to as varchar) from marts.catalogue"
        )
    }
    assert catalogue == {"m1": ("push", True, None, "2026-03-01 00:00:00"), "m3": ("email", False, None, None)}
    labels = set(_query(wh, "select message_id, action_set, action from marts.catalogue_labels"))
    assert labels == {("m1", "label_tone", "friendly"), ("m3", "label_tone", "playful")}


def test_event_weights_by_hand(built):
    weights = {
        name: (n, nf, goal, w)
        for name, n, nf, goal, w in _query(
            built["warehouse"], "select event_name, n_events, n_followed, is_goal, weight from marts.event_weights"
        )
    }
    assert set(weights) == {"view", "purchase"}
    assert weights["view"][:3] == (3, 1, False)
    assert weights["purchase"][:3] == (1, 0, True)
    assert weights["view"][3] == pytest.approx(W_VIEW)
    assert weights["purchase"][3] == 1.0


def test_send_outcome_by_hand(built):
    row = _query(
        built["warehouse"],
        """
        select y_pre, y_post, n_controls, delta_y_control, delta_y, reward, is_scored,
               cast(matured_at as varchar)
        from marts.send_outcomes where send_id = 's1'""",
    )[0]
    y_pre = W_VIEW * 2 ** (-12 / 24)
    y_post = 1.0 * 2 ** (-24 / 24)
    assert row[0] == pytest.approx(y_pre)
    assert row[1] == pytest.approx(y_post)
    assert row[2:4] == (2, 0.0)
    assert row[4] == pytest.approx(y_post - y_pre)
    assert y_post - y_pre < 0
    assert row[5:] == (0, True, "2026-01-19 12:00:00")
    # s6 (sent 2026-01-19) is not matured at as_of; s3 is
    assert sorted(r[0] for r in _query(built["warehouse"], "select send_id from marts.send_outcomes")) == ["s1", "s3"]


def test_controls_exclude_treated_and_messaged_users(built):
    controls = built["controls"]
    assert sorted(c for s, c in controls if s == "s1") == ["u2", "u5"]
    # s3 (u3 at 2026-01-16 00:00): on 2026-01-16 u3 has no goal in 28 days; of the other UTC
    # users without one, u6 was not messaged in the window (sent 2026-01-19 00:00)
    assert sorted(c for s, c in controls if s == "s3") == ["u6"]
    assert not [1 for s, c in controls if (s, c) in {("s1", "u1"), ("s3", "u3")}]


def test_actions_of_a_send(built):
    actions = dict(_query(built["warehouse"], "select action_set, action from marts.send_actions where send_id = 's1'"))
    assert actions == {"channel": "push", "send_hour": "12", "frequency": ">=180h", "label_tone": "friendly"}
    # m2 left the catalogue: the send keeps the labels of the latest snapshot that had it
    actions_s3 = dict(
        _query(built["warehouse"], "select action_set, action from marts.send_actions where send_id = 's3'")
    )
    assert actions_s3["label_tone"] == "urgent"
    outcomes = _query(
        built["warehouse"],
        "select successes, trials from marts.action_outcomes where user_id = 'u1' and action_set = 'channel'",
    )
    assert outcomes == [(0, 1)]


def test_holdout_is_the_md5_rule(built):
    for user_id, is_holdout in _query(built["warehouse"], "select user_id, is_holdout from marts.user_features"):
        fraction = int(hashlib.md5(user_id.encode()).hexdigest()[:8], 16) / 2**32
        assert is_holdout == (fraction < 0.10)


def test_rerun_is_idempotent(built):
    assert _counts(built["warehouse"]) == built["counts_first"]
    # the rerun had nothing left to score
    assert _query(built["warehouse"], "select count(*) from intermediate.int_sends__to_score") == [(0,)]


def test_earlier_as_of_sees_only_sends_matured_by_then(built):
    _dbt_build(built["tmp_path"], "2026-01-19 00:00:00", "--exclude-resource-type", "unit_test")
    wh = built["warehouse"]
    assert _query(wh, "select count(*) from marts.send_outcomes") == [(2,)]  # frozen, nothing added
    assert sorted(r[0] for r in _query(wh, "select distinct send_id from marts.send_actions")) == ["s3"]


def test_docs_generate_and_every_column_is_documented(built):
    """`dbt docs generate` works, and every model, source and column that exists in the
    warehouse has a description (analysts read them in the docs site)."""
    from dbt.cli.main import dbtRunner

    target = built["tmp_path"] / "docs"
    result = dbtRunner().invoke(
        [
            "docs",
            "generate",
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(target),
            "--log-path",
            str(built["tmp_path"] / "dbt" / "logs"),
            "--vars",
            json.dumps({"as_of": AS_OF}),
            "--quiet",
        ]
    )
    assert result.success, result.exception
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    missing = []
    for group in ("nodes", "sources"):
        assert catalog[group], group
        for uid, node in catalog[group].items():
            documented = manifest[group][uid]
            if not (documented.get("description") or "").strip():
                missing.append(uid)
            for column in node["columns"]:
                entry = documented["columns"].get(column) or {}
                if not (entry.get("description") or "").strip():
                    missing.append(f"{uid}.{column}")
    assert not missing, missing
