"""Decide on Spark: decide/shard.py's ``decide_shard`` per shard, by ``groupBy(shard).applyInPandas``.

The runner at the edge, for a warehouse on Spark (the dbt ``spark`` target): the users of D
arrive as a Spark DataFrame of :data:`SPARK_SHARD_USERS` rows (one per user, as
``shard.SHARD_USERS``), each user gets its shard (:data:`SPARK_SHARD`, the same md5 rule as
``shard.shard_of``), and every shard is decided by the one pure function the in-process DuckDB
path runs. The day's :class:`~nudgeflow.decide.shard.Plan` (the catalogue, the action space,
the settings; the priors are folded into the users' posteriors) is small at any number of
users and reaches the executors in the function's closure: Spark pickles it once per task.

:func:`replace_schedule_partition` replaces the date's partition of a schedule table
partitioned by ``schedule_date`` (``INSERT OVERWRITE ... PARTITION (schedule_date = D)``, a
static partition, so a rerun with no sends empties D too), as ``replace_partition`` does on
DuckDB. pyspark is imported inside the functions: the product does not need it.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from nudgeflow.decide.shard import DECISIONS_SCHEMA, SHARD_USERS, SPARK_SHARD, Plan, decide_shard

SPARK_SHARD_USERS = (
    "user_id string, timezone string, country string, channels array<string>, "
    "last_send_s double, next_send_s double, "
    "last_message_id array<string>, last_message_s array<double>, "
    "next_message_id array<string>, next_message_s array<double>, "
    "alpha array<double>, beta array<double>"
)
# send_at is the UTC wall clock (timestamp_ntz), so no session time zone shifts it
SPARK_DECISIONS = (
    "schedule_date date, user_id string, message_id string, channel string, send_at timestamp_ntz, "
    "actions string, propensity double, has_option boolean, theta array<double>"
)
SCHEDULE_COLUMNS = ("user_id", "message_id", "channel", "send_at", "actions", "propensity", "policy", "run_id")


def _shard_frame(pdf) -> pl.DataFrame:
    """A shard's pandas rows (Spark's Arrow batch) as polars rows of SHARD_USERS."""
    import pyarrow as pa

    schema = pl.DataFrame(schema=SHARD_USERS).to_arrow().schema
    return pl.from_arrow(pa.Table.from_pandas(pdf[list(SHARD_USERS)], schema=schema, preserve_index=False))


def decide_on_spark(users, plan: Plan, n_shards: int):
    """D's decisions of every user (rows of :data:`SPARK_DECISIONS`, one per user, in no order)
    from a Spark DataFrame of :data:`SPARK_SHARD_USERS` rows, ``n_shards`` groups of
    ``decide_shard``. The choices are the rows with a message_id."""
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
