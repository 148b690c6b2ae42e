"""A benchmark world written straight into `HOME/landing/` with DuckDB SQL, apart from the lab.

Nothing here imports `nudgeflow.lab`: the world has its own vocabulary (screen_view, search,
add_to_basket, checkout_start, order_completed; `goal_event: order_completed` in
`HOME/nudgeflow.yml`) so that the pipeline is measured on data its simulator did not shape.

Every random number is a pure function of its key, ``hash(seed, stream, user, day, k)``
mapped to [0, 1): the same seed gives the same rows on the same DuckDB version, whatever the
thread count, and one more day is one more set of keys (the history does not move).

What lands (sizes per user are means):

* ``users/users.parquet``: user_id, timezone (IANA), country, updated_ts.
* ``consents/consents.parquet``: one row per (user, channel) for push, email, in_app, sms
  (opt-in rates 0.6, 0.7, 0.9, 0.3) and a later row flipping it for 5 % of the pairs.
* ``messages/messages_<start>.parquet``: 500 messages, 125 per channel, labels label_tone,
  label_offer, label_length, label_emoji; 5 % inactive, 10 % with a validity window, 20 %
  limited to a few countries.
* ``events/events_<day>.parquet``: about 100 events per user over 30 days (3.3 a day, a
  heavy-tailed activity per user, a weekly rhythm, mostly in the user's local daytime);
  order_completed carries a value.
* ``sends/sends_<day>.parquet``: a legacy sender that reaches about 30 % of the users a day
  (hundreds of thousands a day at 1M users), on a channel the user opted into, at a local
  hour 8-21. A send lifts the user's activity that day and the share of orders after it by
  an effect per message, so the measure step has something to find.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import duckdb

START = dt.date(2026, 1, 5)  # no daylight-saving change in the 31 days from here
HISTORY_DAYS = 30
CHANNELS = ("push", "email", "in_app", "sms")
OPT_IN = (0.6, 0.7, 0.9, 0.3)
N_MESSAGES = 500
LABELS = {
    "label_tone": ("friendly", "urgent", "playful", "formal", "informative"),
    "label_offer": ("none", "discount_10", "discount_20", "free_shipping", "bundle"),
    "label_length": ("short", "medium", "long"),
    "label_emoji": ("yes", "no"),
}
EVENTS_PER_USER_DAY = 100 / 30
# (IANA zone, ISO country, standard UTC offset in January in minutes, weight in %)
ZONES = (
    ("Europe/Berlin", "DE", 60, 12),
    ("Europe/Paris", "FR", 60, 8),
    ("Europe/London", "GB", 0, 8),
    ("Europe/Madrid", "ES", 60, 5),
    ("Europe/Rome", "IT", 60, 5),
    ("Europe/Amsterdam", "NL", 60, 3),
    ("Europe/Warsaw", "PL", 60, 3),
    ("Europe/Vienna", "AT", 60, 2),
    ("Europe/Zurich", "CH", 60, 2),
    ("America/New_York", "US", -300, 12),
    ("America/Chicago", "US", -360, 6),
    ("America/Denver", "US", -420, 2),
    ("America/Los_Angeles", "US", -480, 6),
    ("America/Toronto", "CA", -300, 3),
    ("America/Sao_Paulo", "BR", -180, 5),
    ("America/Mexico_City", "MX", -360, 3),
    ("Asia/Kolkata", "IN", 330, 5),
    ("Asia/Kathmandu", "NP", 345, 1),
    ("Asia/Tokyo", "JP", 540, 3),
    ("Asia/Singapore", "SG", 480, 2),
    ("Asia/Dubai", "AE", 240, 1),
    ("Australia/Sydney", "AU", 660, 2),
    ("Africa/Lagos", "NG", 60, 1),
)
COUNTRY_LISTS = ("DE,AT,CH", "US,CA", "GB", "FR", "IN,NP", "ES,MX")


def _u(seed: int, *key) -> str:
    """SQL for U[0, 1) keyed by (seed, key...): 53 bits of DuckDB's 64-bit hash."""
    return f"((hash({seed}, {', '.join(map(str, key))}) >> 11)::double / 9007199254740992.0)"


def _list(values) -> str:
    """A SQL list literal of strings."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _values(rows) -> str:
    def lit(v):
        return "null" if v is None else (f"'{v}'" if isinstance(v, str) else str(v))

    return ", ".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows)


def _copy(con: duckdb.DuckDBPyConnection, select: str, path: Path) -> None:
    """COPY a query to Parquet under a hidden name, then rename: a landed file appears whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    con.execute(f"copy ({select}) to '{tmp}' (format parquet, compression zstd)")
    os.replace(tmp, path)


def _connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    if threads:
        con.execute(f"set threads = {int(threads)}")
    return con


def _users_table(con: duckdb.DuckDBPyConnection, n_users: int, seed: int) -> None:
    """temp table u: one row per user with the parameters every day's rows are drawn from."""
    slots = [(z, c, off) for z, c, off, w in ZONES for _ in range(w)]
    slots = [(i, *zone) for i, zone in enumerate(slots)]
    con.execute("create or replace temp table zone_slots (slot int, timezone varchar, country varchar, offset_min int)")
    con.execute(f"insert into zone_slots values {_values(slots)}")
    con.execute(
        f"""
        create or replace temp table u as
        select
            i,
            'u' || lpad(i::varchar, 7, '0') as user_id,
            z.timezone,
            z.country,
            z.offset_min,
            -- heavy-tailed activity with mean about 1 (exponential, capped at 8)
            least(-ln(1.0 - {_u(seed, 1, "i")}), 8.0) as activity,
            0.5 + {_u(seed, 2, "i")} as buyer,
            0.2 + 0.6 * {_u(seed, 3, "i")} as p_send,
            [{", ".join(f"{_u(seed, 4, 'i', c)} < {p}" for c, p in enumerate(OPT_IN))}] as opted
        from range({int(n_users)}) as t(i)
        join zone_slots as z on z.slot = hash({seed}, 0, i) % {len(slots)}
        """
    )


def _day_table(con: duckdb.DuckDBPyConnection, d: int, seed: int) -> None:
    """temp table ud: each user's day d, i.e. whether and when the legacy sender reached them
    and how many events they have."""
    day = START + dt.timedelta(days=d)
    weekly = 1.0 + 0.15 * (1 if day.weekday() >= 5 else -0.4)  # busier weekends
    con.execute(
        f"""
        create or replace temp table ud as
        with draws as (
            select
                u.*,
                (hash({seed}, 10, i, {d}) % 4)::int as ch,
                {_u(seed, 11, "i", d)} < p_send as wants_send,
                (8 + floor(14 * {_u(seed, 12, "i", d)})) * 3600 + floor(3600 * {_u(seed, 13, "i", d)}) as local_send_s,
                floor(125 * {_u(seed, 14, "i", d)})::int as slot
            from u
        ),
        sent as (
            select
                *,
                wants_send and opted[ch + 1] as has_send,
                ((local_send_s - offset_min * 60)::bigint % 86400 + 86400) % 86400 as send_s,
                ch + 4 * slot as m
            from draws
        )
        select
            i, user_id, offset_min, buyer, has_send, send_s, ch, m,
            0.15 + 0.3 * ((hash({seed}, 5, m) >> 11)::double / 9007199254740992.0) as lift,
            floor(
                activity * {EVENTS_PER_USER_DAY * weekly} * (case when has_send then 1.15 else 1.0 end)
                + {_u(seed, 15, "i", d)}
            )::int as n_events
        from sent
        """
    )


def _events_select(d: int, seed: int) -> str:
    day = START + dt.timedelta(days=d)
    r = [_u(seed, 20 + j, "i", d, "k") for j in range(4)]
    return f"""
        with ev as (
            select i, user_id, offset_min, buyer, has_send, send_s, lift, unnest(range(n_events)) as k
            from ud
        ),
        timed as (
            select
                *,
                ((case when {r[0]} < 0.85 then 25200 + 57600 * {r[1]} else 86400 * {r[1]} end)::bigint
                    - offset_min * 60) % 86400 as s0,
                {r[2]} as r_name,
                {r[3]} as r_value
            from ev
        ),
        placed as (
            select *, (s0 + 86400) % 86400 as s from timed
        ),
        named as (
            select
                *,
                0.04 * buyer * (case when has_send and s >= send_s then 1.0 + lift else 1.0 end) as p_order,
                0.07 * buyer as p_checkout
            from placed
        )
        select
            user_id || '-{d:02d}-' || k as event_id,
            user_id,
            case
                when r_name < p_order then 'order_completed'
                when r_name < p_order + p_checkout then 'checkout_start'
                when r_name < p_order + p_checkout + 0.12 then 'add_to_basket'
                when r_name < p_order + p_checkout + 0.32 then 'search'
                else 'screen_view'
            end as event_name,
            make_timestamp({_epoch_us(day)} + s * 1000000 + floor(1000000 * r_value)::bigint) as event_ts,
            case when r_name < p_order then round(15 + 150 * r_value, 2) end as value
        from named
    """


def _sends_select(d: int) -> str:
    day = START + dt.timedelta(days=d)
    return f"""
        select
            's{day:%Y%m%d}-' || user_id as send_id,
            user_id,
            'm' || lpad(m::varchar, 3, '0') as message_id,
            {_list(CHANNELS)}[ch + 1] as channel,
            make_timestamp({_epoch_us(day)} + send_s * 1000000) as sent_ts
        from ud
        where has_send
    """


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 1_000_000


def _static_tables(con: duckdb.DuckDBPyConnection, landing: Path, seed: int) -> None:
    start_us = _epoch_us(START)
    day_us = 86400 * 1_000_000
    _copy(
        con,
        f"""select user_id, timezone, country,
                   make_timestamp({start_us} - {30 * day_us} + floor({30 * day_us} * {_u(seed, 30, "i")})::bigint)
                       as updated_ts
            from u order by i""",
        landing / "users" / "users.parquet",
    )
    channels = _list(CHANNELS)
    _copy(
        con,
        f"""with pairs as (
                select i, user_id, c, opted[c + 1] as opted_in from u, range(4) as t(c)
            ),
            first_rows as (
                select i, user_id, c, opted_in,
                       make_timestamp({start_us} - floor({60 * day_us} * {_u(seed, 31, "i", "c")})::bigint) as ts
                from pairs
            ),
            changes as (
                select i, user_id, c, not opted_in as opted_in,
                       make_timestamp({start_us} + floor({HISTORY_DAYS * day_us} * {_u(seed, 33, "i", "c")})::bigint)
                from pairs where {_u(seed, 32, "i", "c")} < 0.05
            )
            select user_id, {channels}[c + 1] as channel, opted_in, ts as updated_ts
            from (select * from first_rows union all select * from changes)
            order by i, c, updated_ts""",
        landing / "consents" / "consents.parquet",
    )
    label_cols = ",\n".join(
        f"{_list(v)}[1 + (hash({seed}, {40 + j}, m) % {len(v)})::int] as {k}" for j, (k, v) in enumerate(LABELS.items())
    )
    countries = _list(COUNTRY_LISTS)
    _copy(
        con,
        f"""select
                'm' || lpad(m::varchar, 3, '0') as message_id,
                {channels}[(m % 4) + 1] as channel,
                {_u(seed, 50, "m")} >= 0.05 as active,
                case when {_u(seed, 51, "m")} < 0.10
                    then make_timestamp({start_us} + floor({40 * day_us} * {_u(seed, 52, "m")})::bigint - {10 * day_us})
                end as valid_from,
                case when {_u(seed, 51, "m")} < 0.10
                    then make_timestamp({start_us} + floor({40 * day_us} * {_u(seed, 52, "m")})::bigint
                         + {20 * day_us})
                end as valid_to,
                case when {_u(seed, 53, "m")} < 0.20
                    then {countries}[1 + (hash({seed}, 54, m) % {len(COUNTRY_LISTS)})::int]
                end as countries,
                'Message ' || m as title,
                'Body of message ' || m || ': an offer you will like.' as body,
                {label_cols}
            from range({N_MESSAGES}) as t(m)""",
        landing / "messages" / f"messages_{START:%Y-%m-%d}.parquet",
    )


def write_days(home: Path, days: range, seed: int, con: duckdb.DuckDBPyConnection | None = None) -> dict:
    """Land the events and sends of day indices ``days`` (0 = START) as one file each per day."""
    own = con is None
    if own:
        con = _connect()
        users = Path(home) / "landing" / "users" / "users.parquet"
        _users_table(con, con.execute("select count(*) from read_parquet(?)", [str(users)]).fetchall()[0][0], seed)
    landing = Path(home) / "landing"
    for d in days:
        day = START + dt.timedelta(days=d)
        _day_table(con, d, seed)
        _copy(con, _events_select(d, seed), landing / "events" / f"events_{day:%Y-%m-%d}.parquet")
        _copy(con, _sends_select(d), landing / "sends" / f"sends_{day:%Y-%m-%d}.parquet")
    if own:
        con.close()
    return {"days": [str(START + dt.timedelta(days=d)) for d in days]}


def create(home: Path, n_users: int, seed: int = 1, history_days: int = HISTORY_DAYS) -> dict:
    """A fresh world of ``n_users`` with ``history_days`` of events and sends from START."""
    home = Path(home)
    (home / "landing").mkdir(parents=True, exist_ok=True)
    (home / "nudgeflow.yml").write_text("goal_event: order_completed\n", encoding="utf-8")
    started = time.perf_counter()
    con = _connect()
    _users_table(con, n_users, seed)
    _static_tables(con, home / "landing", seed)
    write_days(home, range(history_days), seed, con)
    con.close()
    return {"seconds": time.perf_counter() - started, **landed_size(home)}


def landed_size(home: Path) -> dict:
    """Rows and bytes on disk of each landing table."""
    out = {}
    con = duckdb.connect()
    for folder in sorted((Path(home) / "landing").iterdir()):
        files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
        rows = con.execute("select sum(num_rows) from parquet_file_metadata(?)", [[str(p) for p in files]]).fetchall()[
            0
        ][0]
        out[folder.name] = {"files": len(files), "rows": int(rows or 0), "bytes": sum(p.stat().st_size for p in files)}
    con.close()
    return {"tables": out}


def next_day_index(home: Path) -> int:
    """The day index after the last landed events file."""
    last = max(p.name for p in (Path(home) / "landing" / "events").glob("events_*.parquet"))
    return (dt.date.fromisoformat(last[len("events_") : -len(".parquet")]) - START).days + 1
