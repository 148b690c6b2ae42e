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
DuckDB. pyspark is imported inside the functions: the product does not need it.
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
