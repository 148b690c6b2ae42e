"""Step 4b, match: the send hour, send-or-wait and the eligible message closest to the
sampled actions, for every user; the propensity of each choice (see decide/matching.py).

This module reads the warehouse into arrays; the guardrails are decide/eligibility.py's and
the decision is decide/matching.py's.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

from nudgeflow.config import Settings, load_settings
from nudgeflow.decide.action_space import dense, frequency_labels, message_actions
from nudgeflow.decide.eligibility import Rules, country_allowed, eligibility, send_instants
from nudgeflow.decide.matching import Options, decide, propensity
from nudgeflow.decide.priors import NULL_ACTION
from nudgeflow.steps.progress import Progress, say
from nudgeflow.warehouse import connect, read, replace_partition, table_exists

CHOICES_SCHEMA = {
    "schedule_date": pl.Date,
    "user_id": pl.String,
    "message_id": pl.String,
    "channel": pl.String,
    "send_at": pl.Datetime("us"),
    "actions": pl.String,
    "propensity": pl.Float64,
}


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


def _index_frame(key: str, values: list[str], index: str) -> pl.DataFrame:
    """values with their positions: a join instead of a dict lookup (typed when empty)."""
    return pl.DataFrame({key: values, index: np.arange(len(values))}, schema={key: pl.String, index: pl.Int64})


def _per_user(times: pl.DataFrame, users: pl.DataFrame) -> np.ndarray:
    """(U,) epoch seconds of ``times`` (user_id, sent_ts) for the users' rows ``u``, NaN if none."""
    out = np.full(users.height, np.nan)
    j = users.select("user_id", "u").join(times, on="user_id")
    out[j["u"].to_numpy()] = j["sent_ts"].dt.epoch("s").to_numpy().astype(float)
    return out


def _per_user_message(times: pl.DataFrame, users: pl.DataFrame, m_index: dict) -> np.ndarray:
    """(U, M) epoch seconds of ``times`` (user_id, message_id, sent_ts), NaN if none."""
    out = np.full((users.height, len(m_index)), np.nan)
    j = times.join(users.select("user_id", "u"), on="user_id").join(
        _index_frame("message_id", list(m_index), "m"), on="message_id"
    )
    out[j["u"].to_numpy(), j["m"].to_numpy()] = j["sent_ts"].dt.epoch("s").to_numpy().astype(float)
    return out


def _epoch_s(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame[col].cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()


def build_options(
    con, day: dt.date, settings: Settings, user_ids: list[str], actions: list[tuple[str, str]]
) -> tuple[Options, pl.DataFrame, list[str]]:
    """The options of D for these users from the marts: their eligibility of every
    (user, message, hour) and the action indices. Returns (options, catalogue, label sets)."""
    n_u = len(user_ids)
    users = _index_frame("user_id", user_ids, "u").join(
        read(con, "select user_id, timezone, country from marts.user_features"), on="user_id", how="left"
    )
    catalogue = read(
        con,
        "select message_id, channel, active, valid_from, valid_to, countries from marts.catalogue order by message_id",
    )
    labels = read(con, "select message_id, action_set, action from marts.catalogue_labels")
    label_sets = sorted(labels["action_set"].unique().to_list())
    m_ids = catalogue["message_id"].to_list()
    m_index = {m: i for i, m in enumerate(m_ids)}
    channel_rows = catalogue.select(
        "message_id", pl.lit("channel").alias("action_set"), pl.col("channel").alias("action")
    )
    msg_actions = message_actions(m_ids, pl.concat([channel_rows, labels]), ["channel", *label_sets], actions)

    send_at, t = send_instants(day, users["timezone"].fill_null("UTC").to_list(), settings.send_hours)

    last_user, last_message = _history(con, day, settings)
    next_user, next_message = _scheduled_after(con, day, settings)

    consents = read(con, "select user_id, channel from marts.consents_current where opted_in")
    consent = np.zeros((n_u, len(m_ids)), dtype=bool)
    cm = consents.join(users.select("user_id", "u"), on="user_id").join(
        catalogue.select("message_id", "channel").join(_index_frame("message_id", m_ids, "m"), on="message_id"),
        on="channel",
    )
    consent[cm["u"].to_numpy(), cm["m"].to_numpy()] = True
    reachable = consent & country_allowed(users["country"].to_list(), catalogue["countries"].to_list())

    eligible, gap_hours = eligibility(
        t,
        _per_user(last_user, users),
        _per_user_message(last_message, users, m_index),
        reachable,
        catalogue["active"].fill_null(True).to_numpy(),
        _epoch_s(catalogue, "valid_from"),
        _epoch_s(catalogue, "valid_to"),
        Rules.of(settings),
        next_send_s=_per_user(next_user, users),
        next_message_s=_per_user_message(next_message, users, m_index),
    )
    opts = Options.build(
        actions,
        settings.send_hours,
        settings.frequency_bucket_hours,
        msg_actions,
        send_at,
        eligible,
        gap_hours,
        send_rule=settings.send_rule,
    )
    return opts, catalogue, label_sets


def step_match(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Pick the hour, the send-or-wait decision and the best-matching eligible message per user."""
    settings = load_settings(home)
    with connect(home) as con:
        frame = read(
            con,
            "select s.user_id, s.action_set, s.action, s.theta, p.alpha, p.beta "
            "from decide.samples as s join decide.posteriors as p "
            "using (schedule_date, user_id, action_set, action) "
            "where schedule_date = ? order by user_id, action_set, action",
            [day],
        )
        if settings.send_rule != "null":  # the null is recorded and explained, not used
            frame = frame.filter(pl.col("action_set") != NULL_ACTION[0])
        theta, alpha, beta, user_ids, actions = dense(frame, "theta", "alpha", "beta")
        if not user_ids:  # an empty home, or a date before any user is known
            replace_partition(con, "decide.choices", day, pl.DataFrame(schema=CHOICES_SCHEMA))
            say(progress, "match: no candidate users (none known, or all in the holdout): nothing to send")
            return {"sends": 0, "waiting": 0}
        opts, catalogue, label_sets = build_options(con, day, settings, user_ids, actions)
        send, hour, message = decide(theta, opts)
        rng = np.random.default_rng([settings.seed, day.toordinal(), 1])
        prop = propensity(
            alpha, beta, opts, message, rng, settings.propensity_draws, sharpness=settings.sampling_sharpness
        )
        chosen = np.nonzero(send)[0]
        h, m = hour[chosen], message[chosen]
        freq = frequency_labels(settings.frequency_bucket_hours)
        actions_json = [
            json.dumps(
                {
                    "channel": catalogue["channel"][int(mi)],
                    "send_hour": str(settings.send_hours[hi]),
                    "frequency": freq[opts.gap_bucket[u, hi]],
                    **{s: str(opts.action[a]) for s, a in zip(label_sets, row[1:]) if a >= 0},
                },
                sort_keys=False,
            )
            for u, hi, mi, row in zip(chosen, h, m, opts.message_actions[m])
        ]
        choices = pl.DataFrame(
            {
                "schedule_date": [day] * len(chosen),
                "user_id": [user_ids[u] for u in chosen],
                "message_id": catalogue["message_id"].gather(m).to_list() if len(chosen) else [],
                "channel": catalogue["channel"].gather(m).to_list() if len(chosen) else [],
                "send_at": opts.send_at[chosen, h].astype("datetime64[us]"),
                "actions": actions_json,
                "propensity": prop[chosen],
            },
            schema=CHOICES_SCHEMA,
        )
        replace_partition(con, "decide.choices", day, choices)
    waiting = int((opts.eligible.any(axis=(1, 2)) & ~send).sum())
    say(
        progress,
        f"match: {len(chosen)} sends chosen for {len(user_ids)} users; {waiting} wait "
        f"(send or wait), {int((~opts.eligible.any(axis=(1, 2))).sum())} have no eligible message",
    )
    return {"sends": int(len(chosen)), "waiting": waiting}
