"""Decide on Spark end to end (issue 15): from a Spark warehouse built by dbt's `spark` target
for as-of D, decide/spark.py's ``decide_from_marts`` (the plan and the priors from the Spark
marts, the users' rows in Spark SQL, then ``groupBy(shard).applyInPandas``) chooses exactly
the sends that the DuckDB path (steps priors -> sample -> match for D, as the product runs
them) writes to decide.choices.

The tiny hand-made warehouse of tests/dbt has almost nobody to send to (one consented user),
so the world is a small simulated one (the lab's simulator, 200 users, 10 days), ingested
into DuckDB, built by the product's measure step, and its raw tables loaded into Spark as
tests/spark/test_dbt_on_spark.py does (its loader). The home has placebos (placebo_sends), so
that send_rule null is decided too. Run by ``make test-spark``; skipped
without pyspark or Java.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("pyspark", reason="pyspark is not installed")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("no Java for Spark (java on PATH or JAVA_HOME)", allow_module_level=True)

# the Python workers must be this Python (polars, numpy, nudgeflow), whoever makes the session
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from nudgeflow.config import as_of, load_settings  # noqa: E402
from nudgeflow.decide.priors import NULL_ACTION  # noqa: E402
from nudgeflow.decide.shard import CHOICES_SCHEMA  # noqa: E402
from nudgeflow.decide.spark import decide_from_marts, replace_schedule_partition, spark_shard_evidence  # noqa: E402
from nudgeflow.lab.simulate import create_world  # noqa: E402
from nudgeflow.steps import step_ingest, step_measure  # noqa: E402
from nudgeflow.steps.match import step_match  # noqa: E402
from nudgeflow.steps.measure import dbt_args, run_dbt  # noqa: E402
from nudgeflow.steps.priors import step_priors  # noqa: E402
from nudgeflow.steps.sample import step_sample  # noqa: E402
from nudgeflow.steps.schedule import POLICY, step_schedule  # noqa: E402

START = dt.date(2026, 1, 5)
DAY = START + dt.timedelta(days=10)
USERS = 200
# placebos, so that marts.null_rewards has rows and send_rule null can be decided
SETTINGS = "placebo_sends: 20\n"
SCHEDULE = "default.send_schedule"  # the Spark schedule table (replace_schedule_partition)


def _dbt_on_spark_tests():
    path = Path(__file__).resolve().parent / "test_dbt_on_spark.py"
    spec = importlib.util.spec_from_file_location("nudgeflow_dbt_on_spark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    work = tmp_path_factory.mktemp("decide_end_to_end")
    home = work / "home"
    home.mkdir()
    (home / "nudgeflow.yml").write_text(SETTINGS)
    create_world(home, users=USERS, history_days=10, start=START, seed=0)
    step_ingest(home, DAY)
    seconds = {}
    started = time.perf_counter()
    step_measure(home, DAY)
    seconds["duckdb measure"] = time.perf_counter() - started
    started = time.perf_counter()
    for step in (step_priors, step_sample, step_match):
        step(home, DAY)
    seconds["duckdb priors, sample, match"] = time.perf_counter() - started
    started = time.perf_counter()
    _dbt_on_spark_tests()._load_raw_into_spark(spark, home / "warehouse.duckdb", work / "raw")
    seconds["spark load raw"] = time.perf_counter() - started
    started = time.perf_counter()
    # the same models and vars as the measure step, on the spark target (dbt-spark's session
    # method: this test's session, shared by the folder); a full refresh, since the session's
    # catalog may hold another test's incremental marts (tests/spark/test_dbt_on_spark.py)
    run_dbt(dbt_args("run", home, load_settings(home), "--target", "spark", "--full-refresh"), home, as_of(DAY))
    seconds["spark dbt run"] = time.perf_counter() - started
    return {"home": home, "seconds": seconds}


def _duckdb_choices(home: Path, day: dt.date) -> pl.DataFrame:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            f"select {', '.join(CHOICES_SCHEMA)} from decide.choices where schedule_date = ?", [day]
        ).fetchall()
    finally:
        con.close()
    return pl.DataFrame(rows, schema=CHOICES_SCHEMA, orient="row").sort("user_id")


def _spark_choices(decisions) -> pl.DataFrame:
    rows = decisions.where("message_id is not null").select(*CHOICES_SCHEMA).collect()
    return pl.DataFrame([tuple(r) for r in rows], schema=CHOICES_SCHEMA, orient="row").sort("user_id")


def test_spark_decides_from_its_marts_what_duckdb_chose(spark, world):
    settings = load_settings(world["home"])
    started = time.perf_counter()
    decisions, plan = decide_from_marts(spark, DAY, settings, n_shards=4)
    on_spark = _spark_choices(decisions)
    seconds = time.perf_counter() - started
    on_duckdb = _duckdb_choices(world["home"], DAY)
    print({**world["seconds"], "spark decide (plan, users, applyInPandas, collect)": seconds})
    print(f"choices: DuckDB {on_duckdb.height}, Spark {on_spark.height}; {len(plan.actions)} actions")
    assert on_duckdb.height > 20, "the world gives too few sends to compare"
    assert_frame_equal(on_spark, on_duckdb, check_exact=True)


def test_the_next_day_keeps_the_rules_with_the_schedule_of_d(spark, world):
    """D's schedule written on both engines (the schedule step; replace_schedule_partition),
    then D + 1 decided on both: the users' send history includes D's scheduled sends (read
    from the schedule table), and the choices agree. D + 1 is decided on the marts of D (no
    second dbt build, to keep the test short): the steps and the reader take them as given."""
    home, settings, day = world["home"], load_settings(world["home"]), DAY + dt.timedelta(days=1)
    decisions, _ = decide_from_marts(spark, DAY, settings, n_shards=4)
    decisions = decisions.cache()
    step_schedule(home, DAY, "run-1")
    replace_schedule_partition(spark, decisions, SCHEDULE, DAY, POLICY, "run-1")
    for step in (step_priors, step_sample, step_match):
        step(home, day)
    users = spark_shard_evidence(spark, day, settings, schedule=SCHEDULE)
    day_s = (DAY - dt.date(1970, 1, 1)).days * 86400.0
    from_schedule = users.where(f"last_send_s >= {day_s}").count()
    assert from_schedule == _duckdb_choices(home, DAY).height > 20
    started = time.perf_counter()
    on_spark = _spark_choices(decide_from_marts(spark, day, settings, n_shards=4, schedule=SCHEDULE)[0])
    print(f"spark decide of D + 1: {time.perf_counter() - started:.1f} s")
    on_duckdb = _duckdb_choices(home, day)
    print(f"choices of D + 1: DuckDB {on_duckdb.height}, Spark {on_spark.height}")
    assert on_duckdb.height > 0
    assert_frame_equal(on_spark, on_duckdb, check_exact=True)


def test_send_or_wait_against_the_measured_null(spark, world):
    """send_rule null: the measured null (the placebos of marts.null_rewards, in the plan's
    priors) is one of the actions, and the choices of D agree. The home's settings are put
    back, and D decided again, at the end."""
    home, path = world["home"], world["home"] / "nudgeflow.yml"
    path.write_text(SETTINGS + "send_rule: 'null'\n")
    try:
        settings = load_settings(home)
        for step in (step_priors, step_sample, step_match):
            step(home, DAY)
        decisions, plan = decide_from_marts(spark, DAY, settings, n_shards=4)
        assert NULL_ACTION in plan.actions and plan.priors.nulls["placebos"].sum() > 0
        on_spark, on_duckdb = _spark_choices(decisions), _duckdb_choices(home, DAY)
        print(f"choices with send_rule null: DuckDB {on_duckdb.height}, Spark {on_spark.height}")
        assert on_duckdb.height > 20
        assert_frame_equal(on_spark, on_duckdb, check_exact=True)
    finally:
        path.write_text(SETTINGS)
        for step in (step_priors, step_sample, step_match):
            step(home, DAY)
