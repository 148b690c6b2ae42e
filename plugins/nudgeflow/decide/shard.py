"""Decide one shard of D's users: one pure function, :func:`decide_shard`, for every runner.

A shard is a set of users, one row each (:data:`SHARD_USERS`): their posteriors over the run's
actions (and, optionally, the logged draws), time zone, country, consents and send history.
The :class:`Plan` is what every shard of D shares, small at any number of users and broadcast
to the shards: the date, the action space, the catalogue and the settings, and optionally the
:class:`Priors` (the cells x actions prior and the measured null's placebos per cell). The
posterior of a user is the prior of its cell plus its own evidence (``priors.posterior``), so
a shard either gets its users' posteriors (the DuckDB path reads decide.posteriors) or makes
them from its users' evidence (:data:`SHARD_EVIDENCE`) and the broadcast priors.

Every value of a user's decision is a function of that user's row and the plan alone: draws
and propensity resamples are keyed by (seed, date, user, action), the guardrails read the
user's own consents and history, the message score ties go to the catalogue's order. So
deciding D's users in one shard, in 4 or in 1,000 gives the same rows (tests/unit/
test_sharding.py): in-process in chunks for DuckDB (``steps/match.py``, a chunk is a shard),
by ``groupBy(shard).applyInPandas`` on Spark (``decide/spark.py``).

Shard assignment (:func:`shard_of`): the second 32 bits of md5(user_id) mod the number of
shards (the first 32 are the global holdout's), stable across runs, engines and platforms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from nudgeflow.decide.action_space import action_key, frequency_labels, message_actions
from nudgeflow.decide.eligibility import Rules, country_allowed, eligibility_by_zone, local_send_times
from nudgeflow.decide.matching import Options, decide, propensity
from nudgeflow.decide.priors import NULL_ACTION, null_posterior, posterior
from nudgeflow.decide.sampling import DrawKeys, thompson_sample

# One row per user of a shard. Times are epoch seconds (float, NaN or null: none), so no
# engine's session time zone can shift them. alpha, beta (and theta) hold one value per action
# of the plan, in the plan's order (List or Array columns).
SHARD_USERS = {
    "user_id": pl.String,
    "timezone": pl.String,  # IANA name; null or unknown: UTC
    "country": pl.String,  # ISO code; null: none
    "channels": pl.List(pl.String),  # the channels the user is opted in to
    "last_send_s": pl.Float64,  # last send before D (landed or scheduled)
    "next_send_s": pl.Float64,  # first send scheduled after D, within the repeat horizon
    "last_message_id": pl.List(pl.String),  # last send of each message before D ...
    "last_message_s": pl.List(pl.Float64),  # ... at these instants
    "next_message_id": pl.List(pl.String),  # first send of each message scheduled after D ...
    "next_message_s": pl.List(pl.Float64),  # ... at these instants
    "alpha": pl.List(pl.Float64),
    "beta": pl.List(pl.Float64),
}
# instead of alpha and beta: the user's evidence, for posteriors made in the shard from the
# plan's Priors (the users' cells, and one list entry per action with evidence)
SHARD_EVIDENCE = {
    "cell": pl.String,  # the prior's cell (marts.user_features.prior_cell, or cell)
    "matching_cell": pl.String,  # the cell of the measured null
    "outcome_action_set": pl.List(pl.String),
    "outcome_action": pl.List(pl.String),
    "outcome_successes": pl.List(pl.Float64),  # weighted (marts.action_outcomes)
    "outcome_trials": pl.List(pl.Float64),
}
LOGGED_DRAWS = "theta"  # optional column of SHARD_USERS: the logged draws, else drawn from the keys

CHOICES_SCHEMA = {
    "schedule_date": pl.Date,
    "user_id": pl.String,
    "message_id": pl.String,
    "channel": pl.String,
    "send_at": pl.Datetime("us"),
    "actions": pl.String,
    "propensity": pl.Float64,
}
# what decide_shard returns: one row per user of the shard, the choice columns null for a user
# who waits or has no eligible message (has_option false)
DECISIONS_SCHEMA = {**CHOICES_SCHEMA, "has_option": pl.Boolean, "theta": pl.List(pl.Float64)}


def shard_of(user_ids, n_shards: int) -> np.ndarray:
    """The shard (0..n_shards-1) of each user: the second 32 bits of md5(user_id), as a
    big-endian number, mod n_shards. In SQL: DuckDB ``('0x' || substr(md5(user_id), 9, 8))
    ::ubigint % n``, Spark ``pmod(conv(substr(md5(user_id), 9, 8), 16, 10), n)``."""
    return np.array([int(hashlib.md5(str(u).encode()).hexdigest()[8:16], 16) % n_shards for u in user_ids], np.int64)


SPARK_SHARD = "cast(pmod(cast(conv(substr(md5(user_id), 9, 8), 16, 10) as bigint), {n}) as int)"


def _epoch_s(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame[col].cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()


def _index_frame(key: str, values: list[str], index: str) -> pl.DataFrame:
    """values with their positions: a join instead of a dict lookup (typed when empty)."""
    return pl.DataFrame({key: values, index: np.arange(len(values))}, schema={key: pl.String, index: pl.Int64})


def _codes(values: pl.Series) -> tuple[list[str], np.ndarray]:
    """The distinct values of a text column and each row's index into them."""
    rows = values.to_frame("v").with_row_index("row")
    distinct = rows["v"].unique(maintain_order=True).to_list()
    return distinct, rows.join(_index_frame("v", distinct, "i"), on="v").sort("row")["i"].to_numpy()


@dataclass(frozen=True)
class Priors:
    """What the posteriors of any shard's users are made from, besides their own evidence: the
    empirical-Bayes prior of every (cell, action) (``priors.prior_from_statistics``), the
    measured null's placebos per matching cell (cell, successes, placebos) and its strength."""

    prior: pl.DataFrame
    nulls: pl.DataFrame
    null_strength: float


@dataclass(frozen=True)
class Plan:
    """What every shard of D shares: the date, the action space (``actions``, the columns of
    the users' alpha and beta), the catalogue with its message actions, and the settings."""

    day: dt.date
    actions: tuple[tuple[str, str], ...]
    catalogue: pl.DataFrame  # message_id, channel, active, valid_from, valid_to, countries
    label_sets: tuple[str, ...]
    message_actions: np.ndarray  # (M, S) index into actions of each message's channel and labels
    send_hours: tuple[int, ...]
    frequency_bucket_hours: tuple[float, ...]
    rules: Rules
    send_rule: str
    seed: int
    sharpness: float
    propensity_draws: int
    priors: Priors | None = None  # for shards of SHARD_EVIDENCE rows

    @classmethod
    def of(
        cls,
        day: dt.date,
        settings,
        catalogue: pl.DataFrame,
        labels: pl.DataFrame,
        actions,
        priors: Priors | None = None,
    ) -> Plan:
        """The plan of D from the catalogue (marts.catalogue), its labels (message_id,
        action_set, action: marts.catalogue_labels) and the run's actions."""
        catalogue = catalogue.select("message_id", "channel", "active", "valid_from", "valid_to", "countries")
        label_sets = sorted(labels["action_set"].unique().to_list())
        channel_rows = catalogue.select(
            "message_id", pl.lit("channel").alias("action_set"), pl.col("channel").alias("action")
        )
        msg_actions = message_actions(
            catalogue["message_id"].to_list(),
            pl.concat([channel_rows, labels.select("message_id", "action_set", "action")]),
            ["channel", *label_sets],
            actions,
        )
        return cls(
            day=day,
            actions=tuple(tuple(a) for a in actions),
            catalogue=catalogue,
            label_sets=tuple(label_sets),
            message_actions=msg_actions,
            send_hours=tuple(settings.send_hours),
            frequency_bucket_hours=tuple(settings.frequency_bucket_hours),
            rules=Rules.of(settings),
            send_rule=settings.send_rule,
            seed=settings.seed,
            sharpness=settings.sampling_sharpness,
            propensity_draws=settings.propensity_draws,
            priors=priors,
        )

    def draw_keys(self, user_ids) -> DrawKeys:
        """The keys of these users' draws of D over the plan's actions."""
        return day_keys(self.seed, self.day, user_ids, self.actions)


def day_keys(seed: int, day: dt.date, user_ids, actions) -> DrawKeys:
    """The keys of the draws of (seed, D) for these users and (action_set, action) pairs: the
    logged draw is draw 0, the propensity's resamples 1..n (sampling.DrawKeys)."""
    return DrawKeys.of(seed, day.toordinal(), user_ids, [action_key(*a) for a in actions])


def _matrix(column: pl.Series, width: int) -> np.ndarray:
    """(U, width) float matrix of a List or Array column."""
    if isinstance(column.dtype, pl.List):
        column = column.list.to_array(width)
    return column.to_numpy().reshape(column.len(), width).astype(np.float64, copy=False)


def _pairs(users: pl.DataFrame, ids: str, times: str, m_ids: list[str]) -> tuple[np.ndarray, ...]:
    """(user row u, message index m, epoch seconds) of the list columns ``ids`` / ``times``,
    sorted by (u, m); messages not in the catalogue are left out."""
    j = (
        users.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("u"), pl.col(ids).alias("message_id"), times)
        .explode("message_id", times)
        .drop_nulls("message_id")
        .join(_index_frame("message_id", m_ids, "m"), on="message_id")
        .sort("u", "m")
    )
    return j["u"].to_numpy(), j["m"].to_numpy(), j[times].cast(pl.Float64).to_numpy()


def shard_options(users: pl.DataFrame, plan: Plan) -> Options:
    """The options of D for a shard's users (rows of :data:`SHARD_USERS`): the guardrails of
    every (user, message, hour) (decide/eligibility.py) and the action indices."""
    catalogue = plan.catalogue
    m_ids = catalogue["message_id"].to_list()
    zones, zone = _codes(users["timezone"].fill_null("UTC"))
    by_zone = local_send_times(plan.day, zones, plan.send_hours)
    zone_send_at = (
        np.stack([by_zone[z] for z in zones]) if zones else np.empty((0, len(plan.send_hours)), "datetime64[s]")
    ).astype("datetime64[s]")
    zone_t = zone_send_at.astype(np.int64).astype(float)
    zone_t[np.isnat(zone_send_at)] = np.nan
    countries, country = _codes(users["country"].fill_null(""))
    channels, message_channel = _codes(catalogue["channel"])
    cu = (
        users.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("u"), pl.col("channels").alias("channel"))
        .explode("channel")
        .join(_index_frame("channel", channels, "c"), on="channel")
    )
    consent = np.zeros((users.height, len(channels)), dtype=bool)
    consent[cu["u"].to_numpy(), cu["c"].to_numpy()] = True
    reachable = consent[:, message_channel] & country_allowed(countries, catalogue["countries"].to_list())[country]
    eligibility, gap_hours = eligibility_by_zone(
        zone_t,
        zone,
        users["last_send_s"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        reachable,
        catalogue["active"].fill_null(True).to_numpy(),
        _epoch_s(catalogue, "valid_from"),
        _epoch_s(catalogue, "valid_to"),
        plan.rules,
        next_send_s=users["next_send_s"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        last_pairs=_pairs(users, "last_message_id", "last_message_s", m_ids),
        next_pairs=_pairs(users, "next_message_id", "next_message_s", m_ids),
    )
    return Options.build(
        list(plan.actions),
        plan.send_hours,
        plan.frequency_bucket_hours,
        plan.message_actions,
        zone_send_at[zone],
        eligibility,
        gap_hours,
        send_rule=plan.send_rule,
    )


def _action_labels(plan: Plan, opts: Options, hour: np.ndarray, message: np.ndarray, users: np.ndarray) -> list:
    """The ``actions`` JSON of each chosen (user, hour, message): channel, send hour, frequency
    and each label dimension of the message."""
    channel = plan.catalogue["channel"]
    freq = frequency_labels(plan.frequency_bucket_hours)
    return [
        json.dumps(
            {
                "channel": channel[int(mi)],
                "send_hour": str(plan.send_hours[hi]),
                "frequency": freq[opts.gap_bucket[u, hi]],
                **{s: str(opts.action[a]) for s, a in zip(plan.label_sets, row[1:]) if a >= 0},
            },
            sort_keys=False,
        )
        for u, hi, mi, row in zip(users, hour, message, plan.message_actions[message])
    ]


def shard_posteriors(users: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    """The users (rows with :data:`SHARD_EVIDENCE`) with alpha and beta over the plan's actions:
    the plan's prior of the user's cell plus the user's evidence (``priors.posterior``, as the
    priors step makes them), and the measured null (``priors.null_posterior``) if it is one of
    the plan's actions."""
    actions = pl.DataFrame(list(plan.actions), schema=["action_set", "action"], orient="row")
    outcomes = (
        users.select(
            "user_id",
            action_set="outcome_action_set",
            action="outcome_action",
            successes="outcome_successes",
            trials="outcome_trials",
        )
        .explode("action_set", "action", "successes", "trials")
        .drop_nulls("action_set")
    )
    post = posterior(
        users.select("user_id", "cell"),
        actions.filter(pl.col("action_set") != NULL_ACTION[0]),
        plan.priors.prior,
        outcomes,
    )
    if NULL_ACTION in plan.actions:
        nulls = null_posterior(
            users.select("user_id", cell="matching_cell"), plan.priors.nulls, strength=plan.priors.null_strength
        )
        post = pl.concat([post, nulls], how="vertical_relaxed")
    grid = (
        users.select("user_id")
        .with_row_index("u")
        .join(actions.with_row_index("a"), how="cross")
        .join(
            post.select("user_id", "action_set", "action", "alpha", "beta"),
            on=["user_id", "action_set", "action"],
            how="left",
        )
        .sort("u", "a")
    )
    shape = (users.height, len(plan.actions))
    return users.with_columns(
        alpha=pl.Series(grid["alpha"].to_numpy().reshape(shape)), beta=pl.Series(grid["beta"].to_numpy().reshape(shape))
    )


_CHOSEN = {"row": pl.Int64, **{c: t for c, t in CHOICES_SCHEMA.items() if c not in ("schedule_date", "user_id")}}


def decide_shard(users: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    """D's decision for every user of a shard (rows of :data:`SHARD_USERS`, or with
    :data:`SHARD_EVIDENCE` instead of the posteriors), as
    :data:`DECISIONS_SCHEMA` rows in the users' order: the logged draws theta (the ``theta``
    column if given, else Thompson draws keyed by (seed, D, user, action)), the chosen message,
    channel, UTC send instant, actions and propensity (decide/matching.py), null where the
    user waits or has no eligible message."""
    if users.is_empty():
        return pl.DataFrame(schema=DECISIONS_SCHEMA)
    if "alpha" not in users.columns:  # the posteriors are made here, from the plan's priors
        users = shard_posteriors(users, plan)
    ids = users["user_id"].to_list()
    n_a = len(plan.actions)
    alpha, beta = _matrix(users["alpha"], n_a), _matrix(users["beta"], n_a)
    keys = plan.draw_keys(ids)
    if LOGGED_DRAWS in users.columns:
        theta = _matrix(users[LOGGED_DRAWS], n_a)
    else:
        theta = thompson_sample(alpha, beta, keys(0), plan.sharpness)
    opts = shard_options(users, plan)
    send, hour, message = decide(theta, opts)
    prop = propensity(alpha, beta, opts, message, keys, plan.propensity_draws, sharpness=plan.sharpness)
    chosen = np.nonzero(send)[0]
    h, m = hour[chosen], message[chosen]
    catalogue = plan.catalogue
    picked = pl.DataFrame(
        {
            "row": chosen,
            "message_id": catalogue["message_id"].gather(m).to_list() if len(chosen) else [],
            "channel": catalogue["channel"].gather(m).to_list() if len(chosen) else [],
            "send_at": opts.send_at[chosen, h].astype("datetime64[us]"),
            "actions": _action_labels(plan, opts, h, m, chosen),
            "propensity": prop[chosen],
        },
        schema=_CHOSEN,
    )
    every = pl.DataFrame(
        {
            "row": np.arange(len(ids)),
            "schedule_date": pl.Series([plan.day] * len(ids), dtype=pl.Date),
            "user_id": ids,
            "has_option": opts.eligibility.feasible.any(axis=1),
            "theta": pl.Series(theta, dtype=pl.Array(pl.Float64, n_a)).cast(pl.List(pl.Float64)),
        }
    )
    return every.join(picked, on="row", how="left").sort("row").select(list(DECISIONS_SCHEMA))


def choices(decisions: pl.DataFrame) -> pl.DataFrame:
    """The rows of decide.choices among decisions: the users sent to."""
    return decisions.filter(pl.col("message_id").is_not_null()).select(list(CHOICES_SCHEMA))


def decide_in_shards(users: pl.DataFrame, plan: Plan, n_shards: int) -> pl.DataFrame:
    """decide_shard over the shards of :func:`shard_of`, one after the other, in user order:
    what a cluster computes, in one process (tests/unit/test_sharding.py)."""
    shard = shard_of(users["user_id"].to_list(), n_shards)
    parts = [decide_shard(users.filter(pl.Series(shard == s)), plan) for s in range(n_shards)]
    return pl.concat(parts).sort("user_id")
