"""Step 4b, match: the send hour, send-or-wait and the eligible message closest to the
sampled actions, for every user; the propensity of each choice (see decide/matching.py).

This module reads the warehouse into arrays; the guardrails are decide/eligibility.py's and
the decision is decide/matching.py's. Users are decided in chunks of ``CHUNK_USERS``, so the
step's memory is bound by a chunk (chunk x messages), not by users x messages x hours; a
user's decision and propensity do not depend on the chunk it is in.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from nudgeflow.config import Settings, load_settings
from nudgeflow.decide.action_space import action_key, dense, frequency_labels, message_actions
from nudgeflow.decide.eligibility import Rules, country_allowed, eligibility_by_zone, local_send_times
from nudgeflow.decide.matching import Options, decide, propensity
from nudgeflow.decide.priors import NULL_ACTION
from nudgeflow.decide.sampling import DrawKeys
from nudgeflow.steps.progress import Progress, say
from nudgeflow.warehouse import connect, read, replace_partition, table_exists

CHUNK_USERS = 20_000  # users decided together

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


def _codes(values: pl.Series) -> tuple[list[str], np.ndarray]:
    """The distinct values of a text column and each row's index into them."""
    rows = values.to_frame("v").with_row_index("row")
    distinct = rows["v"].unique(maintain_order=True).to_list()
    return distinct, rows.join(_index_frame("v", distinct, "i"), on="v").sort("row")["i"].to_numpy()


def _per_user(times: pl.DataFrame, users: pl.DataFrame) -> np.ndarray:
    """(U,) epoch seconds of ``times`` (user_id, sent_ts) for the users' rows ``u``, NaN if none."""
    out = np.full(users.height, np.nan)
    j = users.select("user_id", "u").join(times, on="user_id")
    out[j["u"].to_numpy()] = j["sent_ts"].dt.epoch("s").to_numpy().astype(float)
    return out


def _pairs(times: pl.DataFrame, users: pl.DataFrame, m_ids: list[str]) -> tuple[np.ndarray, ...]:
    """(user row u, message index m, epoch seconds) of ``times`` (user_id, message_id, sent_ts), sorted by u."""
    j = (
        times.join(users.select("user_id", "u"), on="user_id")
        .join(_index_frame("message_id", m_ids, "m"), on="message_id")
        .sort("u", "m")
    )
    return j["u"].to_numpy(), j["m"].to_numpy(), j["sent_ts"].dt.epoch("s").to_numpy().astype(float)


def _epoch_s(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame[col].cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()


@dataclass
class DayInputs:
    """What the options of any chunk of D's users are built from, read once: the catalogue and
    each user's (row u of the run's users) time zone, country, consents and send history."""

    catalogue: pl.DataFrame
    label_sets: list[str]
    actions: list[tuple[str, str]]
    message_actions: np.ndarray  # (M, S)
    zone_send_at: np.ndarray  # (Z, H) datetime64[s] of each allowed local hour per time zone
    zone: np.ndarray  # (U,)
    consent: np.ndarray  # (U, C) opted in to each channel of the catalogue
    message_channel: np.ndarray  # (M,) index into C
    country: np.ndarray  # (U,) index into country_ok
    country_ok: np.ndarray  # (K, M) the message is allowed in the country
    last_send_s: np.ndarray  # (U,)
    next_send_s: np.ndarray  # (U,)
    last_pairs: tuple  # (u, m, epoch s), sorted by u: last send of m to u before D
    next_pairs: tuple  # the same, first send scheduled after D

    @classmethod
    def read(cls, con, day: dt.date, settings: Settings, user_ids: list[str], actions) -> DayInputs:
        users = (
            _index_frame("user_id", user_ids, "u")
            .join(read(con, "select user_id, timezone, country from marts.user_features"), on="user_id", how="left")
            .sort("u")
        )
        catalogue = read(
            con,
            "select message_id, channel, active, valid_from, valid_to, countries from marts.catalogue "
            "order by message_id",
        )
        labels = read(con, "select message_id, action_set, action from marts.catalogue_labels")
        label_sets = sorted(labels["action_set"].unique().to_list())
        m_ids = catalogue["message_id"].to_list()
        channel_rows = catalogue.select(
            "message_id", pl.lit("channel").alias("action_set"), pl.col("channel").alias("action")
        )
        msg_actions = message_actions(m_ids, pl.concat([channel_rows, labels]), ["channel", *label_sets], actions)

        zones, zone = _codes(users["timezone"].fill_null("UTC"))
        by_zone = local_send_times(day, zones, settings.send_hours)
        zone_send_at = np.stack([by_zone[z] for z in zones]) if zones else np.empty((0, len(settings.send_hours)))
        countries, country = _codes(users["country"].fill_null(""))
        channels, message_channel = _codes(catalogue["channel"])

        consents = read(con, "select user_id, channel from marts.consents_current where opted_in")
        cu = consents.join(users.select("user_id", "u"), on="user_id").join(
            _index_frame("channel", channels, "c"), on="channel"
        )
        consent = np.zeros((users.height, len(channels)), dtype=bool)
        consent[cu["u"].to_numpy(), cu["c"].to_numpy()] = True

        last_user, last_message = _history(con, day, settings)
        next_user, next_message = _scheduled_after(con, day, settings)
        return cls(
            catalogue=catalogue,
            label_sets=label_sets,
            actions=list(actions),
            message_actions=msg_actions,
            zone_send_at=zone_send_at.astype("datetime64[s]"),
            zone=zone,
            consent=consent,
            message_channel=message_channel,
            country=country,
            country_ok=country_allowed(countries, catalogue["countries"].to_list()),
            last_send_s=_per_user(last_user, users),
            next_send_s=_per_user(next_user, users),
            last_pairs=_pairs(last_message, users, m_ids),
            next_pairs=_pairs(next_message, users, m_ids),
        )

    def options(self, lo: int, hi: int, settings: Settings) -> Options:
        """The options of D for the users in rows [lo, hi): the guardrails and the action indices."""

        def rows(pairs):
            a, b = np.searchsorted(pairs[0], [lo, hi])
            return pairs[0][a:b] - lo, pairs[1][a:b], pairs[2][a:b]

        zone_t = self.zone_send_at.astype(np.int64).astype(float)
        zone_t[np.isnat(self.zone_send_at)] = np.nan
        eligibility, gap_hours = eligibility_by_zone(
            zone_t,
            self.zone[lo:hi],
            self.last_send_s[lo:hi],
            self.consent[lo:hi][:, self.message_channel] & self.country_ok[self.country[lo:hi]],
            self.catalogue["active"].fill_null(True).to_numpy(),
            _epoch_s(self.catalogue, "valid_from"),
            _epoch_s(self.catalogue, "valid_to"),
            Rules.of(settings),
            next_send_s=self.next_send_s[lo:hi],
            last_pairs=rows(self.last_pairs),
            next_pairs=rows(self.next_pairs),
        )
        return Options.build(
            self.actions,
            settings.send_hours,
            settings.frequency_bucket_hours,
            self.message_actions,
            self.zone_send_at[self.zone[lo:hi]],
            eligibility,
            gap_hours,
            send_rule=settings.send_rule,
        )


def build_options(
    con, day: dt.date, settings: Settings, user_ids: list[str], actions: list[tuple[str, str]]
) -> tuple[Options, pl.DataFrame, list[str]]:
    """The options of D for these users from the marts: their eligibility of every
    (user, message, hour) and the action indices. Returns (options, catalogue, label sets)."""
    inputs = DayInputs.read(con, day, settings, user_ids, actions)
    return inputs.options(0, len(user_ids), settings), inputs.catalogue, inputs.label_sets


SAMPLES = (
    "select s.user_id, s.action_set, s.action, s.theta, p.alpha, p.beta "
    "from decide.samples as s join decide.posteriors as p "
    "using (schedule_date, user_id, action_set, action) "
    "where schedule_date = ? and user_id between ? and ? order by user_id, action_set, action"
)


def _choices(day, settings, inputs: DayInputs, opts: Options, user_ids, send, hour, message, prop) -> pl.DataFrame:
    """The rows of decide.choices of one chunk: the users it sends to."""
    catalogue = inputs.catalogue
    chosen = np.nonzero(send)[0]
    h, m = hour[chosen], message[chosen]
    freq = frequency_labels(settings.frequency_bucket_hours)
    actions_json = [
        json.dumps(
            {
                "channel": catalogue["channel"][int(mi)],
                "send_hour": str(settings.send_hours[hi]),
                "frequency": freq[opts.gap_bucket[u, hi]],
                **{s: str(opts.action[a]) for s, a in zip(inputs.label_sets, row[1:]) if a >= 0},
            },
            sort_keys=False,
        )
        for u, hi, mi, row in zip(chosen, h, m, opts.message_actions[m])
    ]
    return pl.DataFrame(
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


def step_match(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Pick the hour, the send-or-wait decision and the best-matching eligible message per user."""
    settings = load_settings(home)
    with connect(home) as con:
        user_ids = read(
            con, "select distinct user_id from decide.samples where schedule_date = ? order by user_id", [day]
        )["user_id"].to_list()
        if not user_ids:  # an empty home, or a date before any user is known
            replace_partition(con, "decide.choices", day, pl.DataFrame(schema=CHOICES_SCHEMA))
            say(progress, "match: no candidate users (none known, or all in the holdout): nothing to send")
            return {"sends": 0, "waiting": 0}
        inputs, parts, waiting, stuck = None, [], 0, 0
        for lo in range(0, len(user_ids), CHUNK_USERS):
            hi = min(lo + CHUNK_USERS, len(user_ids))
            frame = read(con, SAMPLES, [day, user_ids[lo], user_ids[hi - 1]])
            if settings.send_rule != "null":  # the null is recorded and explained, not used
                frame = frame.filter(pl.col("action_set") != NULL_ACTION[0])
            theta, alpha, beta, ids, actions = dense(frame, "theta", "alpha", "beta")
            if inputs is None:
                inputs = DayInputs.read(con, day, settings, user_ids, actions)
            keys = DrawKeys.of(settings.seed, day.toordinal(), ids, [action_key(*a) for a in actions])
            opts = inputs.options(lo, hi, settings)
            send, hour, message = decide(theta, opts)
            prop = propensity(
                alpha,
                beta,
                opts,
                message,
                keys,
                settings.propensity_draws,
                sharpness=settings.sampling_sharpness,
            )
            parts.append(_choices(day, settings, inputs, opts, ids, send, hour, message, prop))
            has_option = opts.eligibility.feasible.any(axis=1)
            waiting += int((has_option & ~send).sum())
            stuck += int((~has_option).sum())
        choices = pl.concat(parts)
        replace_partition(con, "decide.choices", day, choices)
    say(
        progress,
        f"match: {choices.height} sends chosen for {len(user_ids)} users; {waiting} wait "
        f"(send or wait), {stuck} have no eligible message",
    )
    return {"sends": choices.height, "waiting": waiting}
