"""Decide on Spark: ``groupBy(shard).applyInPandas`` of decide_shard gives exactly the rows of
the in-process run on the same small world (tests/unit/test_sharding.py's), the Spark SQL shard
is shard_of's, and D's schedule partition is replaced (also by an empty one), others kept.
Run by ``make test-spark``; skipped without pyspark or Java."""

import datetime as dt
import importlib.util
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("pyspark", reason="pyspark is not installed")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("no Java for Spark (java on PATH or JAVA_HOME)", allow_module_level=True)

# the Python workers must be this Python (polars, numpy, nudgeflow), whoever makes the session
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from nudgeflow.decide.shard import DECISIONS_SCHEMA, SPARK_SHARD, choices, decide_shard, shard_of  # noqa: E402
from nudgeflow.decide.spark import (  # noqa: E402
    SPARK_SHARD_EVIDENCE,
    SPARK_SHARD_USERS,
    decide_on_spark,
    replace_schedule_partition,
)


def _sharding_tests():
    path = Path(__file__).resolve().parents[1] / "unit" / "test_sharding.py"
    spec = importlib.util.spec_from_file_location("sharding_world", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def session(request, tmp_path_factory):
    """The suite's ``spark`` fixture (tests/spark/conftest.py) if there is one, else a local[1]
    session of this module's own."""
    try:
        yield request.getfixturevalue("spark")
        return
    except pytest.FixtureLookupError:
        pass
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("nudgeflow-apply-in-pandas")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield spark
    spark.stop()


def _to_spark(spark, users: pl.DataFrame, schema: str = SPARK_SHARD_USERS):
    columns = [c.split()[0] for c in schema.split(", ")]
    return spark.createDataFrame(users.select(columns).rows(), schema=schema)


def _collect(frame) -> pl.DataFrame:
    rows = [r.asDict() for r in frame.collect()]
    return pl.DataFrame(rows, schema=DECISIONS_SCHEMA, orient="row").sort("user_id")


@pytest.mark.parametrize("send_rule", ["longer", "null"])
def test_apply_in_pandas_gives_the_in_process_rows(session, send_rule):
    plan, users, _ = _sharding_tests().world(n_u=160, send_rule=send_rule)
    local = decide_shard(users, plan)
    assert local["message_id"].is_not_null().sum() > 30
    started = time.perf_counter()
    on_spark = _collect(decide_on_spark(_to_spark(session, users), plan, n_shards=4))
    print(f"applyInPandas, {users.height} users in 4 shards: {time.perf_counter() - started:.1f} s")
    assert_frame_equal(on_spark, local, check_exact=True)


def test_posteriors_made_on_the_executors_from_the_broadcast_priors(session):
    sharding = _sharding_tests()
    plan, evidence, posteriors = sharding.with_evidence(*sharding.world(n_u=160, send_rule="null")[:2])
    on_spark = _collect(decide_on_spark(_to_spark(session, evidence, SPARK_SHARD_EVIDENCE), plan, n_shards=4))
    assert_frame_equal(on_spark, decide_shard(posteriors, plan), check_exact=True)


def test_the_spark_shard_expression_is_shard_of(session):
    ids = [f"u{i:04d}" for i in range(500)] + ["ü-ñ", ""]
    frame = session.createDataFrame([(u,) for u in ids], "user_id string")
    got = dict(frame.selectExpr("user_id", f"{SPARK_SHARD.format(n=7)} as shard").collect())
    assert [got[u] for u in ids] == shard_of(ids, 7).tolist()


def test_the_schedule_partition_of_the_date_is_replaced(session):
    plan, users, _ = _sharding_tests().world(n_u=120)
    spark_users = _to_spark(session, users)
    decisions = decide_on_spark(spark_users, plan, n_shards=4).cache()
    table = "schedule_partition_test"
    session.sql(f"drop table if exists {table}")
    other_day = plan.day + dt.timedelta(days=1)
    replace_schedule_partition(session, decisions, table, plan.day, "p/1", "run-1")
    later = decide_on_spark(spark_users, replace(plan, day=other_day), n_shards=4)
    replace_schedule_partition(session, later, table, other_day, "p/1", "run-1")
    sent = choices(decide_shard(users, plan)).height
    count = dict(session.sql(f"select schedule_date, count(*) from {table} group by 1").collect())
    assert count == {plan.day: sent, other_day: count[other_day]} and count[other_day] > 0
    replace_schedule_partition(session, decisions, table, plan.day, "p/1", "run-2")  # a rerun of D
    rows = session.sql(f"select run_id, count(*) from {table} where schedule_date = date'{plan.day}' group by 1")
    assert dict(rows.collect()) == {"run-2": sent}
    replace_schedule_partition(session, decisions.limit(0), table, plan.day, "p/1", "run-3")  # no sends
    count = dict(session.sql(f"select schedule_date, count(*) from {table} group by 1").collect())
    assert plan.day not in count and count[other_day] > 0
    session.sql(f"drop table {table}")
