"""Build a simulated world's warehouse on DuckDB and on Spark and compare every mart (the
measurement behind docs/scale-out.md; not a test, it takes minutes).

    PYTHONPATH=plugins .venv/bin/python tests/spark/compare_world.py --users 2000 --days 28

The world comes from the lab's simulator (nudgeflow.lab.simulate.create_world), is ingested
into DuckDB's raw schema as a daily run would, then built by `dbt build` on both targets like
tests/spark/test_dbt_on_spark.py does (the same loading, comparison and tolerances). Prints
the wall time of both builds, the slowest models of each and, per mart, whether it agrees.
With --daily the first build is for the day before, and the timed build is the daily run's
incremental one (one more day of matured sends measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"nudgeflow_spark_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=28, help="days of simulated history before as_of")
    parser.add_argument("--cores", type=int, default=2, help="Spark local[n]")
    parser.add_argument("--work", type=Path, default=None, help="folder for the world (default: a temporary one)")
    parser.add_argument("--report", type=Path, default=None, help="write the timings and results here (json)")
    parser.add_argument(
        "--daily",
        action="store_true",
        help="build for the day before first, then time the daily (incremental) build for the day",
    )
    args = parser.parse_args()

    import duckdb
    from pyspark.sql import SparkSession

    from nudgeflow.lab.simulate import create_world
    from nudgeflow.steps.ingest import step_ingest

    compare = _module("test_dbt_on_spark")
    work = args.work or Path(tempfile.mkdtemp(prefix="nudgeflow-spark-world-"))
    home = work / "home"
    start = dt.date(2026, 1, 5)
    day = start + dt.timedelta(days=args.days)
    started = time.perf_counter()
    create_world(home, users=args.users, history_days=args.days, start=start, seed=0)
    step_ingest(home, day)
    warehouse = home / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    events = con.execute("select count(*) from raw.events").fetchone()[0]
    sends = con.execute("select count(*) from raw.sends").fetchone()[0]
    con.close()
    print(f"world: {args.users} users, {events} events, {sends} sends ({time.perf_counter() - started:.1f} s)")

    import os

    os.environ["NUDGEFLOW_WAREHOUSE"] = str(warehouse)
    as_of = f"{day.isoformat()} 00:00:00"
    before = f"{(day - dt.timedelta(days=1)).isoformat()} 00:00:00"
    first = {}
    if args.daily:
        first["duckdb"] = compare._dbt_build("default", work, before)
        print(f"duckdb first build for {before}: {first['duckdb']['seconds']:.1f} s")
    duck = compare._dbt_build("default", work, as_of)
    print(f"duckdb build: {duck['seconds']:.1f} s, failed: {compare._failed(duck, {'model', 'test', 'unit_test'})}")

    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .appName("nudgeflow-compare-world")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(2 * args.cores))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(work / "spark-warehouse"))
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    loading = time.perf_counter()
    compare._load_raw_into_spark(spark, warehouse, work / "raw")
    load_seconds = time.perf_counter() - loading
    if args.daily:
        first["spark"] = compare._dbt_build("spark", work, before)
        print(f"spark first build for {before}: {first['spark']['seconds']:.1f} s")
    on_spark = compare._dbt_build("spark", work, as_of)
    print(f"spark load of raw: {load_seconds:.1f} s; spark build: {on_spark['seconds']:.1f} s")
    print(f"spark failed: {compare._failed(on_spark, {'model', 'test', 'unit_test'})}")

    results = {}
    for mart in compare.MARTS:
        if not spark.catalog.tableExists(f"marts.{mart}"):
            results[mart] = "not built on Spark"
            continue
        duck_columns, duck_rows = compare._duckdb_mart(warehouse, mart)
        spark_columns, spark_rows = compare._spark_mart(spark, mart)
        if duck_columns != spark_columns:
            results[mart] = f"columns differ: {duck_columns} vs {spark_columns}"
            continue
        problems = compare._differences(duck_columns, duck_rows, spark_rows)
        results[mart] = f"{len(duck_rows)} rows, " + (
            "agree" if not problems else f"{len(problems)} differences, e.g. {problems[:3]}"
        )
    for mart, result in results.items():
        print(f"  {mart}: {result}")
    for name, build in [("duckdb", duck), ("spark", on_spark)]:
        models = sorted(
            ((n["seconds"], n["name"]) for n in build["nodes"].values() if n["kind"] == "model"), reverse=True
        )
        print(f"slowest models on {name}: " + ", ".join(f"{m} {s:.1f} s" for s, m in models[:8]))
    if args.report:
        args.report.write_text(
            json.dumps(
                {
                    "users": args.users,
                    "days": args.days,
                    "events": events,
                    "sends": sends,
                    "spark_cores": args.cores,
                    "spark_load_seconds": load_seconds,
                    "daily": args.daily,
                    "first_seconds": {name: build["seconds"] for name, build in first.items()},
                    "marts": results,
                    **{
                        name: {
                            "seconds": build["seconds"],
                            "models": {
                                n["name"]: n["seconds"] for n in build["nodes"].values() if n["kind"] == "model"
                            },
                        }
                        for name, build in [("duckdb", duck), ("spark", on_spark)]
                    },
                },
                indent=1,
            )
        )
    spark.stop()


if __name__ == "__main__":
    main()
