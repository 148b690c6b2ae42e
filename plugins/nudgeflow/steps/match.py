"""Step 4b, match: the send hour, send-or-wait and the eligible message closest to the
sampled actions, for every user; the propensity of each choice (see decide/matching.py).

This module reads the warehouse into one row per user (decide/shard.py's SHARD_USERS) and the
day's plan (the catalogue, the actions, the settings); the decision is decide/shard.py's
``decide_shard``, the same pure function a Spark cluster runs per shard (decide/spark.py).
Users are decided in chunks of ``CHUNK_USERS``, so the step's memory is bound by a chunk
(chunk x messages), not by users x messages x hours; a chunk is a shard, and a user's
decision and propensity do not depend on the chunk it is in.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from nudgeflow.config import Settings, load_settings
from nudgeflow.decide.action_space import dense
from nudgeflow.decide.matching import Options
from nudgeflow.decide.priors import NULL_ACTION
from nudgeflow.decide.shard import CHOICES_SCHEMA, Plan, choices, decide_shard, shard_options
from nudgeflow.steps.progress import Progress, say
from nudgeflow.warehouse import connect, read, replace_partition, require_partition, table_exists

CHUNK_USERS = 20_000  # users decided together


def _history(con, day: dt.date, settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Last send per user and last send per (user, message), landed before D or scheduled for dates before D."""
    # only sends before D: the same for the run for D and for a replay after later runs (explain)
    landed = read(con, "select user_id, message_id, sent_ts from marts.recent_sends where sent_ts < ?", [day])
    last_landed = read(
        con, "select user_id, last_sent_ts as sent_ts from marts.user_features where last_sent_ts < ?", [day]
    )
    scheduled = pl.DataFrame(schema={"user_id": pl.String, "message_id": pl.String, "sent_ts": pl.Datetime("us")})
    if table_exists(con, "main", "send_schedule"):
        scheduled = read(
            con,
            "select user_id, message_id, send_at as sent_ts from send_schedule "
            "where schedule_date < ? and schedule_date >= ?",
            [day, day - dt.timedelta(days=settings.min_days_before_repeat + 1)],
        )
    sends = pl.concat(
        [
            landed.with_columns(pl.col("sent_ts").cast(pl.Datetime("us"))),
            scheduled.with_columns(pl.col("sent_ts").cast(pl.Datetime("us"))),
        ]
    )
    last_user = (
        pl.concat(
            [sends.select("user_id", "sent_ts"), last_landed.with_columns(pl.col("sent_ts").cast(pl.Datetime("us")))]
        )
        .group_by("user_id")
        .agg(pl.col("sent_ts").max())
    )
    last_message = sends.group_by("user_id", "message_id").agg(pl.col("sent_ts").max())
    return last_user, last_message


def _scheduled_after(con, day: dt.date, settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """First send per user and per (user, message) already scheduled for dates after D, within
    the repeat horizon: a backfill must keep the rules with the schedules of later dates."""
    empty = pl.DataFrame(schema={"user_id": pl.String, "message_id": pl.String, "sent_ts": pl.Datetime("us")})
    later = empty
    if table_exists(con, "main", "send_schedule"):
        later = read(
            con,
            "select user_id, message_id, send_at as sent_ts from send_schedule "
            "where schedule_date > ? and schedule_date <= ?",
            [day, day + dt.timedelta(days=settings.min_days_before_repeat + 1)],
        ).with_columns(pl.col("sent_ts").cast(pl.Datetime("us")))
    first_user = later.group_by("user_id").agg(pl.col("sent_ts").min())
    first_message = later.group_by("user_id", "message_id").agg(pl.col("sent_ts").min())
    return first_user, first_message


def _epoch_s(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64)


def read_users(con, day: dt.date, settings: Settings, user_ids: list[str]) -> pl.DataFrame:
    """One row per user of ``user_ids``, in that order, as decide/shard.py's SHARD_USERS less
    the posteriors: time zone, country, consented channels and the send history around D."""
    features = read(con, "select user_id, timezone, country from marts.user_features")
    consents = (
        read(con, "select user_id, channel from marts.consents_current where opted_in")
        .group_by("user_id")
        .agg(pl.col("channel").alias("channels"))
    )
    last_user, last_message = _history(con, day, settings)
    next_user, next_message = _scheduled_after(con, day, settings)

    def per_message(times: pl.DataFrame, prefix: str) -> pl.DataFrame:
        return times.group_by("user_id").agg(
            pl.col("message_id").alias(f"{prefix}_message_id"), _epoch_s("sent_ts").alias(f"{prefix}_message_s")
        )

    users = pl.DataFrame({"user_id": user_ids}, schema={"user_id": pl.String}).with_row_index("u")
    for frame in (
        features,
        consents,
        last_user.select("user_id", _epoch_s("sent_ts").alias("last_send_s")),
        next_user.select("user_id", _epoch_s("sent_ts").alias("next_send_s")),
        per_message(last_message, "last"),
        per_message(next_message, "next"),
    ):
        users = users.join(frame, on="user_id", how="left")
    return users.sort("u").drop("u")


def read_plan(con, day: dt.date, settings: Settings, actions) -> Plan:
    """The plan of D (decide/shard.py): the catalogue and its labels from the marts, the actions."""
    catalogue = read(
        con,
        "select message_id, channel, active, valid_from, valid_to, countries from marts.catalogue order by message_id",
    )
    labels = read(con, "select message_id, action_set, action from marts.catalogue_labels")
    return Plan.of(day, settings, catalogue, labels, actions)


def build_options(
    con, day: dt.date, settings: Settings, user_ids: list[str], actions: list[tuple[str, str]]
) -> tuple[Options, pl.DataFrame, list[str]]:
    """The options of D for these users from the marts: their eligibility of every
    (user, message, hour) and the action indices. Returns (options, catalogue, label sets)."""
    plan = read_plan(con, day, settings, actions)
    return shard_options(read_users(con, day, settings, user_ids), plan), plan.catalogue, list(plan.label_sets)


SAMPLES = (
    "select s.user_id, s.action_set, s.action, s.theta, p.alpha, p.beta "
    "from decide.samples as s join decide.posteriors as p "
    "using (schedule_date, user_id, action_set, action) "
    "where schedule_date = ? and user_id between ? and ? order by user_id, action_set, action"
)


def step_match(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Pick the hour, the send-or-wait decision and the best-matching eligible message per user."""
    settings = load_settings(home)
    with connect(home) as con:
        user_ids = read(
            con, "select distinct user_id from decide.samples where schedule_date = ? order by user_id", [day]
        )["user_id"].to_list()
        for table in ("decide.samples", "decide.posteriors"):
            require_partition(con, table, day, "match")
        if not user_ids:  # an empty home, or a date before any user is known
            replace_partition(con, "decide.choices", day, pl.DataFrame(schema=CHOICES_SCHEMA))
            say(progress, "match: no candidate users (none known, or all in the holdout): nothing to send")
            return {"sends": 0, "waiting": 0}
        users = read_users(con, day, settings, user_ids)
        plan, parts, waiting, stuck = None, [], 0, 0
        for lo in range(0, len(user_ids), CHUNK_USERS):
            hi = min(lo + CHUNK_USERS, len(user_ids))
            frame = read(con, SAMPLES, [day, user_ids[lo], user_ids[hi - 1]])
            if settings.send_rule != "null":  # the null is recorded and explained, not used
                frame = frame.filter(pl.col("action_set") != NULL_ACTION[0])
            theta, alpha, beta, ids, actions = dense(frame, "theta", "alpha", "beta")
            if ids != user_ids[lo:hi]:
                raise AssertionError(f"decide.samples of {day} lack actions for some of users {lo}..{hi}")
            plan = plan or read_plan(con, day, settings, actions)
            # the chunk's users with their posteriors and logged draws (decide.samples): a shard
            shard = users.slice(lo, hi - lo).with_columns(
                alpha=pl.Series(alpha), beta=pl.Series(beta), theta=pl.Series(theta)
            )
            decisions = decide_shard(shard, plan)
            parts.append(choices(decisions))
            sent = decisions["message_id"].is_not_null()
            waiting += int((decisions["has_option"] & ~sent).sum())
            stuck += int((~decisions["has_option"]).sum())
        rows = pl.concat(parts)
        replace_partition(con, "decide.choices", day, rows)
    say(
        progress,
        f"match: {rows.height} sends chosen for {len(user_ids)} users; {waiting} wait "
        f"(send or wait), {stuck} have no eligible message",
    )
    return {"sends": rows.height, "waiting": waiting}
