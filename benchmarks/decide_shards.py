"""decide_shard with 1 shard and with N (md5 of user_id), in-process and optionally on Spark:
seconds of each and a check that the rows are the same.

The world is decide_scale.py's (500 messages, 4 label dimensions, 14 send hours, 23 time
zones, a send history), its posteriors keyed by the rows; the draws are made by decide_shard
(no logged draws given), so every timing covers sampling, guardrails, decision and propensity.

    .venv/bin/python benchmarks/decide_shards.py --users 20000 --shards 4
    .venv/bin/python benchmarks/decide_shards.py --users 20000 --shards 4 --spark local[2]

With ``--home DIR --date D`` the users are those of the run for D in that home's warehouse
(read as steps/match.py reads them; D must be its last run, as later schedules change the
rules), and the rows are also checked against the run's decide.choices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decide_scale import inputs, posteriors  # noqa: E402

from nudgeflow.decide.shard import CHOICES_SCHEMA, DECISIONS_SCHEMA, choices, decide_in_shards, decide_shard  # noqa: E402


def home_inputs(home: Path, day: dt.date):
    """(plan, users with posteriors, the run's choices) of the run for D in a home."""
    from nudgeflow.config import load_settings
    from nudgeflow.decide.action_space import dense
    from nudgeflow.decide.priors import NULL_ACTION
    from nudgeflow.steps.match import read_plan, read_users
    from nudgeflow.warehouse import connect, read

    settings = load_settings(home)
    with connect(home, published=True) as con:
        post = read(
            con,
            "select user_id, action_set, action, alpha, beta from decide.posteriors "
            "where schedule_date = ? order by user_id, action_set, action",
            [day],
        )
        if settings.send_rule != "null":
            post = post.filter(pl.col("action_set") != NULL_ACTION[0])
        alpha, beta, ids, actions = dense(post)
        users = read_users(con, day, settings, ids).with_columns(alpha=pl.Series(alpha), beta=pl.Series(beta))
        stored = read(con, "select * from decide.choices where schedule_date = ? order by user_id", [day])
        return read_plan(con, day, settings, actions), users, stored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--draws", type=int, default=100, help="propensity resamples (propensity_draws)")
    ap.add_argument("--spark", metavar="MASTER", help="also run applyInPandas on this master, e.g. local[2]")
    ap.add_argument("--home", type=Path, help="decide the users of a home's run for --date instead")
    ap.add_argument("--date", type=dt.date.fromisoformat)
    a = ap.parse_args()
    stored = None
    if a.home:
        plan, users, stored = home_inputs(a.home, a.date)
    else:
        plan, users, _, _ = inputs(a.users)
        plan = replace(plan, propensity_draws=a.draws)
        alpha, beta = posteriors(0, a.users, len(plan.actions))
        users = users.with_columns(alpha=pl.Series(alpha), beta=pl.Series(beta))
    t0 = time.perf_counter()
    one = decide_shard(users, plan)
    t1 = time.perf_counter()
    many = decide_in_shards(users, plan, a.shards)
    t2 = time.perf_counter()
    assert_frame_equal(many, one.sort("user_id"), check_exact=True)
    if stored is not None:
        assert_frame_equal(choices(one), stored.select(list(CHOICES_SCHEMA)), check_exact=True)
        print(f"the rows are the run's decide.choices of {a.date} ({stored.height:,} sends)")
    sends = int(one["message_id"].is_not_null().sum())
    print(
        f"{users.height:,} users, {plan.catalogue.height} messages, {len(plan.actions)} actions, "
        f"{plan.propensity_draws} draws"
    )
    print(f"in-process, 1 shard: {t1 - t0:.1f} s; {a.shards} shards: {t2 - t1:.1f} s; {sends:,} sends, rows equal")
    if a.spark:
        from pyspark.sql import SparkSession

        from nudgeflow.decide.spark import SPARK_SHARD_USERS, decide_on_spark

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (
            SparkSession.builder.master(a.spark)
            .config("spark.sql.shuffle.partitions", str(a.shards))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        t3 = time.perf_counter()
        frame = spark.createDataFrame(users.rows(), schema=SPARK_SHARD_USERS)
        rows = [r.asDict() for r in decide_on_spark(frame, plan, a.shards).collect()]
        t4 = time.perf_counter()
        got = pl.DataFrame(rows, schema=DECISIONS_SCHEMA, orient="row").sort("user_id")
        assert_frame_equal(got, one.sort("user_id"), check_exact=True)
        print(f"spark {a.spark}, {a.shards} shards by applyInPandas: {t4 - t3:.1f} s (rows in and out), rows equal")
        spark.stop()


if __name__ == "__main__":
    main()
