"""One measured stage, run by guard.py in its own process: `child.py '<json spec>'`.

Kinds: generate (a fresh world), extra_day (one more day of events and sends), floor (the
DuckDB group-by over the events), step (one step of the daily run), peers (the bandit
libraries' micro-benchmark). Writes {seconds, max_rss_bytes, result} to spec["out"]; the
seconds cover the work only, not the interpreter start or the imports.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _override_duckdb(settings: dict) -> None:
    """Every DuckDB database this process opens (the steps' and dbt-duckdb's) gets these
    settings (e.g. memory_limit), without touching the product: duckdb.connect is wrapped."""
    import duckdb

    original = duckdb.connect

    def connect(database=":memory:", read_only=False, config=None, **kwargs):
        return original(database, read_only=read_only, config={**(config or {}), **settings}, **kwargs)

    duckdb.connect = connect


def _floor(home: Path) -> dict:
    """select user_id, event_name, count(*) from read_parquet(events) group by all, materialised."""
    import duckdb

    con = duckdb.connect()
    events = str(home / "landing" / "events" / "*.parquet")
    started = time.perf_counter()
    con.execute(
        "create table floor as select user_id, event_name, count(*) as n from read_parquet(?) group by all", [events]
    )
    seconds = time.perf_counter() - started
    groups, rows = con.execute("select count(*), sum(n) from floor").fetchall()[0]
    return {
        "seconds": seconds,
        "groups": groups,
        "events": int(rows),
        "threads": con.sql("select current_setting('threads')").fetchall()[0][0],
    }


def _work(kind: str, spec: dict, home: Path) -> tuple[dict, float]:
    """Do the stage; return its result and the seconds of the work itself."""
    started = time.perf_counter()
    if kind == "generate":
        import world

        result = world.create(home, spec["users"], seed=spec["seed"])
    elif kind == "extra_day":
        import world

        d = world.next_day_index(home)
        result = world.write_days(home, range(d, d + 1), spec["seed"])
    elif kind == "floor":
        result = _floor(home)
        return result, result["seconds"]  # the query alone, without opening DuckDB
    elif kind == "step":
        from nudgeflow.steps import run_step

        day = dt.date.fromisoformat(spec["day"])
        started = time.perf_counter()
        result = run_step(spec["step"], home, day, f"bench__{day}", progress=_log)
    elif kind == "peers":
        import peers

        result = peers.run(spec["users"], spec["arms"], spec["budget_seconds"], spec["seed"], progress=_log)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    return result, time.perf_counter() - started


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("duckdb_settings"):
        _override_duckdb(spec["duckdb_settings"])
    result, seconds = _work(spec["kind"], spec, Path(spec["home"]))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(spec["out"]).write_text(
        json.dumps({"seconds": seconds, "max_rss_bytes": max(own, children) * 1024, "result": result}, default=str)
    )


if __name__ == "__main__":
    main()
