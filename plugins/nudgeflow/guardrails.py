"""The guardrails, checked a second time and independently before anything is exported.

`decide/eligibility.py` chooses only eligible (user, message, hour)s; this module checks the
chosen rows again, written separately from the data contract, in SQL over the staged inputs
(not the marts the decision read), with DuckDB's own time zones: a bug in either place
shows up as a disagreement, and `step_schedule` refuses to export a day with any violating
row (the Airflow task fails, the previous export stays). Every rule of the contract's
output section is one check:

send_window      send_at in [D, D+1)
local_hour        the local hour of send_at in the user's time zone is one of send_hours
consent           the user's latest consent for the row's channel is opted in
message_channel   the row's channel is the message's channel
catalogue         the message is in the current catalogue, active, inside its validity interval
country           the message is allowed in the user's country
holdout           the user is not in the global holdout (stable hash of user_id)
cap               at most max_sends_per_day rows per user on D
spacing           min_hours_between_sends from every other send of the user, landed or scheduled
repeat            min_days_before_repeat from every other send of the same message to the user
propensity        in (0, 1]
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from nudgeflow.config import Settings
from nudgeflow.warehouse import read, table_exists

CHECKS = """
with chosen as (
    select *, row_number() over () as _rid from decide.choices where schedule_date = $day
),
users as (select * from staging.stg_raw__users),
consents as (select * from staging.stg_raw__consents),
catalogue as (select * from staging.stg_raw__messages where is_current),
others as (  -- every other send of the user: landed before D, scheduled for other dates
    select user_id, message_id, sent_ts as at from staging.stg_raw__sends
    union all
    select user_id, message_id, send_at from {schedule} where schedule_date <> $day
),
checked as (
    select
        c._rid, c.user_id, c.message_id, c.channel, c.send_at,
        not (c.send_at >= $day::timestamp and c.send_at < $day::timestamp + interval 1 day) as send_window,
        extract(hour from timezone(coalesce(u.timezone, 'UTC'), c.send_at::timestamptz))
            not in (select unnest($hours::integer[])) as local_hour,
        not coalesce((select any_value(k.opted_in) from consents as k
                      where k.user_id = c.user_id and k.channel = c.channel), false) as consent,
        m.message_id is null or m.channel <> c.channel as message_channel,
        m.message_id is null
            or not coalesce(m.active, true)
            or (m.valid_from is not null and c.send_at < m.valid_from)
            or (m.valid_to is not null and c.send_at >= m.valid_to) as catalogue,
        coalesce(trim(m.countries), '') <> ''
            and not list_contains(
                list_transform(string_split(upper(m.countries), ','), lambda x: trim(x)),
                upper(trim(coalesce(u.country, '')))) as country,
        (('0x' || left(md5(c.user_id), 8))::ubigint / 4294967296.0) < $holdout as holdout,
        count(*) over (partition by c.user_id) > $cap as cap,
        exists (select 1 from others as o where o.user_id = c.user_id
                and abs(date_diff('second', o.at, c.send_at)) < $spacing_s)
            or exists (select 1 from chosen as d where d.user_id = c.user_id and d._rid <> c._rid
                       and abs(date_diff('second', d.send_at, c.send_at)) < $spacing_s) as spacing,
        exists (select 1 from others as o where o.user_id = c.user_id and o.message_id = c.message_id
                and abs(date_diff('second', o.at, c.send_at)) < $repeat_s) as repeat,
        not (c.propensity > 0 and c.propensity <= 1) as propensity
    from chosen as c
    left join users as u on u.user_id = c.user_id
    left join catalogue as m on m.message_id = c.message_id
)
select * from checked
"""
RULES = (
    "send_window",
    "local_hour",
    "consent",
    "message_channel",
    "catalogue",
    "country",
    "holdout",
    "cap",
    "spacing",
    "repeat",
    "propensity",
)


def violations(con, day: dt.date, settings: Settings) -> pl.DataFrame:
    """The rows of decide.choices for D that break a rule: user_id, message_id, channel,
    send_at and ``rule`` (one row per broken rule)."""
    schedule = (
        "main.send_schedule"
        if table_exists(con, "main", "send_schedule")
        else (
            "(select null::varchar as user_id, null::varchar as message_id, null::timestamp as send_at, "
            "null::date as schedule_date where false)"
        )
    )
    params = {
        "day": day,
        "hours": list(settings.send_hours),
        "holdout": settings.holdout_fraction,
        "cap": settings.max_sends_per_day,
        "spacing_s": settings.min_hours_between_sends * 3600.0,
        "repeat_s": settings.min_days_before_repeat * 86400.0,
    }
    checked = read(con, CHECKS.format(schedule=schedule), params).with_columns(
        pl.col(list(RULES)).cast(pl.Boolean).fill_null(True)  # a check that cannot tell counts as broken
    )
    keys = ["user_id", "message_id", "channel", "send_at"]
    return pl.concat(
        [checked.filter(pl.col(rule)).select(*keys, rule=pl.lit(rule)) for rule in RULES],
        how="vertical",
    )
