"""Decide on Spark: decide/shard.py's ``decide_shard`` per shard, by ``groupBy(shard).applyInPandas``.

The runner at the edge, for a warehouse on Spark (the dbt ``spark`` target). The users of D
arrive as a Spark DataFrame, one row per user: :data:`SPARK_SHARD_USERS` (``shard.SHARD_USERS``,
with their posteriors) or :data:`SPARK_SHARD_EVIDENCE` (their evidence instead, from which
each shard makes the posteriors with the plan's priors). Each user gets its shard
(:data:`SPARK_SHARD`, the md5 rule of ``shard.shard_of``), and every shard is decided by the
one pure function the in-process DuckDB path runs. The day's
:class:`~nudgeflow.decide.shard.Plan` (the catalogue, the action space, the settings and
optionally the cells x actions priors) is small at any number of users and reaches the
executors in the function's closure: Spark pickles it once per task.

:func:`replace_schedule_partition` replaces the date's partition of a schedule table
partitioned by ``schedule_date`` (``INSERT OVERWRITE ... PARTITION (schedule_date = D)``, a
static partition, so a rerun with no sends empties D too), as ``replace_partition`` does on
DuckDB.

:func:`decide_from_marts` is the whole of D from a Spark warehouse built by dbt's ``spark``
target: :func:`spark_plan` (the catalogue, the labels and the actions as ``steps/match.py``'s
``read_plan`` has them, and the priors fitted by ``decide.priors.prior_from_statistics`` from
the collected ``marts.prior_statistics``, with the placebos of ``marts.null_rewards``),
:func:`spark_shard_evidence` (``read_users`` in Spark SQL, with each user's cells and the
evidence of ``marts.action_outcomes``), then :func:`decide_on_spark`. pyspark is imported
inside the functions: the product does not need it.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from nudgeflow.decide.shard import (
    DECISIONS_SCHEMA,
    LOGGED_DRAWS,
    SHARD_EVIDENCE,
    SHARD_USERS,
    SPARK_SHARD,
    Plan,
    decide_shard,
)

_SPARK_TYPES = {pl.String: "string", pl.Float64: "double"}


def _spark_ddl(schema: dict) -> str:
    """A Spark DDL schema of polars String, Float64 and List columns."""

    def ddl(t):
        return f"array<{ddl(t.inner)}>" if isinstance(t, pl.List) else _SPARK_TYPES[t]

    return ", ".join(f"{c} {ddl(t)}" for c, t in schema.items())


# the rows of a shard's users as Spark columns: with their posteriors, or with their evidence
# (the posteriors then made in the shard from the plan's priors)
SPARK_SHARD_USERS = _spark_ddl(SHARD_USERS)
SPARK_SHARD_EVIDENCE = _spark_ddl({c: t for c, t in SHARD_USERS.items() if c not in ("alpha", "beta")} | SHARD_EVIDENCE)
# send_at is the UTC wall clock (timestamp_ntz), so no session time zone shifts it
SPARK_DECISIONS = (
    "schedule_date date, user_id string, message_id string, channel string, send_at timestamp_ntz, "
    "actions string, propensity double, has_option boolean, theta array<double>"
)
SCHEDULE_COLUMNS = ("user_id", "message_id", "channel", "send_at", "actions", "propensity", "policy", "run_id")


def _shard_frame(pdf) -> pl.DataFrame:
    """A shard's pandas rows (Spark's Arrow batch) as polars rows of SHARD_USERS, or of
    SHARD_EVIDENCE in place of the posteriors (with the logged draws if given)."""
    import pyarrow as pa

    known = SHARD_USERS | SHARD_EVIDENCE | {LOGGED_DRAWS: pl.List(pl.Float64)}
    columns = {c: t for c, t in known.items() if c in pdf.columns}
    schema = pl.DataFrame(schema=columns).to_arrow().schema
    return pl.from_arrow(pa.Table.from_pandas(pdf[list(columns)], schema=schema, preserve_index=False))


def decide_on_spark(users, plan: Plan, n_shards: int):
    """D's decisions of every user (rows of :data:`SPARK_DECISIONS`, one per user, in no order)
    from a Spark DataFrame of :data:`SPARK_SHARD_USERS` rows (or :data:`SPARK_SHARD_EVIDENCE`
    rows, with the priors in the plan), ``n_shards`` groups of ``decide_shard``. The choices
    are the rows with a message_id."""
    from pyspark.sql import functions as F

    def run(pdf):
        return decide_shard(_shard_frame(pdf), plan).select(list(DECISIONS_SCHEMA)).to_pandas()

    sharded = users.withColumn("shard", F.expr(SPARK_SHARD.format(n=int(n_shards))))
    return sharded.groupBy("shard").applyInPandas(run, schema=SPARK_DECISIONS)


def replace_schedule_partition(spark, decisions, table: str, day: dt.date, policy: str, run_id: str) -> None:
    """Replace D's partition of ``table`` (created if missing: Parquet, partitioned by
    schedule_date) with D's choices among ``decisions``; the other dates are left as they are.
    On Delta, the same is ``.write.option("replaceWhere", "schedule_date = D")``."""
    from pyspark.sql import functions as F

    spark.sql(
        f"create table if not exists {table} (user_id string, message_id string, channel string, "
        "send_at timestamp_ntz, actions string, propensity double, policy string, run_id string, "
        "schedule_date date) using parquet partitioned by (schedule_date)"
    )
    view = f"decide_choices_{day.strftime('%Y%m%d')}"
    rows = decisions.where(F.col("message_id").isNotNull() & (F.col("schedule_date") == F.lit(day)))
    rows.withColumn("policy", F.lit(policy)).withColumn("run_id", F.lit(run_id)).select(
        *SCHEDULE_COLUMNS
    ).createOrReplaceTempView(view)
    try:
        spark.sql(
            f"insert overwrite table {table} partition (schedule_date = date'{day.isoformat()}') "
            f"select {', '.join(SCHEDULE_COLUMNS)} from {view}"
        )
    finally:
        spark.catalog.dropTempView(view)


# ------------------------------------------------------------------ reading D from the Spark marts

# what DuckDB's reads give (steps/match.py read_plan, steps/priors.py), as polars types, so the
# pure code after them sees the same frames on either engine
_CATALOGUE = {
    "message_id": pl.String,
    "channel": pl.String,
    "active": pl.Boolean,
    "valid_from": pl.Datetime("us"),
    "valid_to": pl.Datetime("us"),
    "countries": pl.String,
}
_LABELS = {"message_id": pl.String, "action_set": pl.String, "action": pl.String}
_STATISTICS = {
    "cell": pl.String,
    "action_set": pl.String,
    "action": pl.String,
    "n_users": pl.Int64,
    "trials": pl.Float64,
    "successes": pl.Float64,
    "sum_sq": pl.Float64,
}
_NULLS = {"cell": pl.String, "successes": pl.Float64, "placebos": pl.Float64}


def _collect(frame, schema: dict) -> pl.DataFrame:
    """A small Spark DataFrame as polars rows of ``schema`` (timestamps as the UTC wall clock:
    select them as timestamp_ntz, so no time zone of the Python process shifts them)."""
    rows = [tuple(r) for r in frame.collect()]
    return pl.DataFrame(rows, schema=schema, orient="row")


def _ntz(col: str) -> str:
    return f"cast({col} as timestamp_ntz) as {col}"


def spark_plan(spark, day: dt.date, settings, *, marts: str = "marts") -> Plan:
    """The plan of D from the Spark marts, with the priors (:class:`Priors`) for shards of
    :data:`SPARK_SHARD_EVIDENCE` rows: what ``steps/match.py``'s ``read_plan`` gives on DuckDB
    (the catalogue, its labels, the run's actions as ``decide.samples`` holds them less the
    measured null unless ``send_rule`` is ``null``), and what ``steps/priors.py`` fits: the
    cells x actions prior from ``marts.prior_statistics`` (``prior_from_statistics``, on the
    small collected table) and the placebos of ``marts.null_rewards`` per cell."""
    from nudgeflow.decide.action_space import action_space
    from nudgeflow.decide.priors import NULL_ACTION, prior_from_statistics
    from nudgeflow.decide.shard import Priors

    catalogue = _collect(
        spark.sql(
            f"select message_id, channel, active, {_ntz('valid_from')}, {_ntz('valid_to')}, countries "
            f"from {marts}.catalogue order by message_id"
        ),
        _CATALOGUE,
    )
    labels = _collect(spark.sql(f"select message_id, action_set, action from {marts}.catalogue_labels"), _LABELS)
    stats = _collect(
        spark.sql(
            "select cell, action_set, action, cast(n_users as bigint), cast(trials as double), "
            f"cast(successes as double), cast(sum_sq as double) from {marts}.prior_statistics "
            f"where cells = '{settings.prior_cells}'"
        ),
        _STATISTICS,
    )
    since = day - dt.timedelta(days=settings.null_window_days)
    nulls = _collect(
        spark.sql(
            "select cell, cast(sum(successes) as double), cast(sum(placebos) as double) "
            f"from {marts}.null_rewards where sent_date >= date'{since.isoformat()}' group by cell"
        ),
        _NULLS,
    )
    prior = prior_from_statistics(stats, max_strength=settings.prior_max_strength, min_users=settings.prior_min_users)
    # the actions of decide.samples (steps/priors.py: the run's actions, and the measured null
    # when there are placebos), less the null unless it decides (steps/match.py)
    run = action_space(
        sorted(set(catalogue["channel"].to_list())),
        labels.select("action_set", "action").unique(),
        settings.send_hours,
        settings.frequency_bucket_hours,
    )
    actions = [tuple(a) for a in run.iter_rows()]
    if settings.send_rule == "null" and nulls.height and nulls["placebos"].sum() > 0:
        actions = sorted([*actions, NULL_ACTION])
    priors = Priors(prior=prior, nulls=nulls, null_strength=settings.prior_max_strength)
    return Plan.of(day, settings, catalogue, labels, actions, priors=priors)


def spark_shard_evidence(spark, day: dt.date, settings, *, marts: str = "marts", schedule: str | None = None):
    """D's candidate users (``marts.user_features``, not in the holdout) as a Spark DataFrame
    of :data:`SPARK_SHARD_EVIDENCE` rows, in Spark SQL: what ``steps/match.py``'s
    ``read_users`` reads on DuckDB (time zone, country, consented channels; the last send
    before D per user and per message, landed in ``marts.recent_sends`` or
    ``marts.user_features.last_sent_ts``, or scheduled in ``schedule`` for the repeat horizon
    before D; the first send scheduled after D within it), with the prior's cells and the
    evidence of ``marts.action_outcomes`` (weighted) instead of the posteriors. Times are epoch
    seconds (doubles). ``schedule``: the schedule table (:func:`replace_schedule_partition`),
    none if it does not exist."""
    horizon = settings.min_days_before_repeat + 1
    d = f"date'{day.isoformat()}'"
    first, last = (day - dt.timedelta(days=horizon)).isoformat(), (day + dt.timedelta(days=horizon)).isoformat()
    empty = "select cast(null as string) as user_id, cast(null as string) as message_id, "
    empty += "cast(null as timestamp) as sent_ts, cast(null as date) as schedule_date where false"
    scheduled = (
        f"select user_id, message_id, cast(send_at as timestamp) as sent_ts, schedule_date from {schedule}"
        if schedule and spark.catalog.tableExists(schedule)
        else empty
    )
    cell = "prior_cell" if settings.prior_cells == "behaviour" else "cell"
    return spark.sql(
        f"""
        with scheduled as ({scheduled}),
        sends as (
            select user_id, message_id, sent_ts from {marts}.recent_sends where sent_ts < {d}
            union all
            select user_id, message_id, sent_ts from scheduled
            where schedule_date < {d} and schedule_date >= date'{first}'
        ),
        later as (
            select user_id, message_id, sent_ts from scheduled
            where schedule_date > {d} and schedule_date <= date'{last}'
        ),
        last_user as (
            select user_id, max(sent_ts) as sent_ts from (
                select user_id, sent_ts from sends
                union all
                select user_id, last_sent_ts from {marts}.user_features where last_sent_ts < {d}
            ) group by user_id
        ),
        last_message as (
            select user_id, collect_list(struct(message_id, cast(unix_seconds(sent_ts) as double) as s)) as sends
            from (select user_id, message_id, max(sent_ts) as sent_ts from sends group by user_id, message_id)
            group by user_id
        ),
        next_user as (select user_id, min(sent_ts) as sent_ts from later group by user_id),
        next_message as (
            select user_id, collect_list(struct(message_id, cast(unix_seconds(sent_ts) as double) as s)) as sends
            from (select user_id, message_id, min(sent_ts) as sent_ts from later group by user_id, message_id)
            group by user_id
        ),
        consents as (
            select user_id, collect_list(channel) as channels from {marts}.consents_current
            where opted_in group by user_id
        ),
        outcomes as (
            select user_id, collect_list(struct(action_set, action, cast(weighted_successes as double) as successes,
                cast(weighted_trials as double) as trials)) as outcomes
            from {marts}.action_outcomes group by user_id
        )
        select f.user_id, f.timezone, f.country, c.channels,
            cast(unix_seconds(lu.sent_ts) as double) as last_send_s,
            cast(unix_seconds(nu.sent_ts) as double) as next_send_s,
            lm.sends.message_id as last_message_id, lm.sends.s as last_message_s,
            nm.sends.message_id as next_message_id, nm.sends.s as next_message_s,
            f.{cell} as cell, f.cell as matching_cell,
            o.outcomes.action_set as outcome_action_set, o.outcomes.action as outcome_action,
            o.outcomes.successes as outcome_successes, o.outcomes.trials as outcome_trials
        from {marts}.user_features as f
        left join consents as c using (user_id)
        left join last_user as lu using (user_id)
        left join next_user as nu using (user_id)
        left join last_message as lm using (user_id)
        left join next_message as nm using (user_id)
        left join outcomes as o using (user_id)
        where not f.is_holdout
        """
    )


def decide_from_marts(
    spark, day: dt.date, settings, n_shards: int, *, marts: str = "marts", schedule: str | None = None
):
    """D's decisions (:data:`SPARK_DECISIONS` rows) from a Spark warehouse built by dbt's
    ``spark`` target for as-of D: :func:`spark_plan`, :func:`spark_shard_evidence`, then
    :func:`decide_on_spark` (the posteriors made in the shards from the broadcast priors).
    Returns (decisions, plan)."""
    plan = spark_plan(spark, day, settings, marts=marts)
    users = spark_shard_evidence(spark, day, settings, marts=marts, schedule=schedule)
    return decide_on_spark(users, plan, n_shards), plan
