"""The daily run through Airflow: dbt as a task per model (Cosmos) against dbt as one task.

    .venv/bin/python benchmarks/airflow_dbt.py            # 20,000 users
    BENCH_AIRFLOW_USERS=100000 .venv/bin/python benchmarks/airflow_dbt.py

Builds the bench's world (benchmarks/world.py) with its history measured by `nudgeflow run`
in-process, lands one more day, copies the home once per mode and runs that day's DagRun of
`nudgeflow_daily` (a warm-up, not measured: a deployment's components have run for days, and
dbt's partial parse is then the home's own), lands the next day and runs and measures its
DagRun, in a real Airflow on loopback (nudgeflow.lab.local_airflow: api-server,
scheduler with the LocalExecutor, dag-processor, triggerer), first with
`NUDGEFLOW_DBT_TASKS=one` (the build in one `measure` task), then with the default `models`
(Cosmos's watcher mode: one `dbt build`, a sensor task per model and its data tests).
Both runs start from the same warehouse and data, one after the other in this process, so
their ratio is what to read on a shared machine (BENCH_AIRFLOW_MODES=models runs one mode only,
to try a change; models:5 has the sensors poll every 5 s instead of every 1 s;
BENCH_AIRFLOW_REUSE=1 reuses the prepared home of an earlier run; BENCH_AIRFLOW_ENV=NAME=VALUE;...
sets more environment variables of every Airflow component, e.g. an Airflow setting to try). Also prints the CPU seconds
each Airflow component used during the run. Prints, per mode: the DagRun's wall time,
the dbt part (from the end of `ingest` to the end of `check`, or of `measure` in one task)
and the build itself (the producer task, or the `measure` task), and writes
benchmarks/results/airflow-<users>.json. BENCH_DIR (default data/bench) holds the homes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import world  # noqa: E402  (benchmarks/world.py)

from nudgeflow.lab.local_airflow import LocalAirflow  # noqa: E402
from nudgeflow.steps import run as nudgeflow_run  # noqa: E402

DAG_ID = "nudgeflow_daily"
MODES = ("one", "models")


def _ts(text: str | None) -> float | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def _logical(day: dt.date) -> str:
    """The logical date of the scheduled run that plans ``day``: 21:00 UTC the evening before."""
    return dt.datetime.combine(day - dt.timedelta(days=1), dt.time(21), tzinfo=dt.UTC).isoformat()


def _pairs(text: str) -> dict[str, str]:
    """NAME=VALUE;NAME=VALUE as a dict."""
    pairs = [p.split("=", 1) for p in text.split(";") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"BENCH_AIRFLOW_ENV: expected NAME=VALUE;NAME=VALUE, got {text!r}")
    return {k.strip(): v.strip() for k, v in pairs}


def _figures(tis: list[dict], mode: str) -> dict:
    by_id = {t["task_id"]: t for t in tis}
    start = min(_ts(t["start_date"]) for t in tis if t["start_date"])
    end = max(_ts(t["end_date"]) for t in tis if t["end_date"])
    build = by_id["measure.dbt_producer_watcher" if mode == "models" else "measure"]
    dbt_end = by_id["check" if mode == "models" else "measure"]
    return {
        "tasks": len(tis),
        "states": sorted({t["state"] for t in tis}),
        "dagrun_s": round(end - start, 1),
        "dbt_part_s": round(_ts(dbt_end["end_date"]) - _ts(by_id["ingest"]["end_date"]), 1),
        "build_s": round(_ts(build["end_date"]) - _ts(build["start_date"]), 1),
    }


def main() -> None:
    users = int(os.environ.get("BENCH_AIRFLOW_USERS", 20_000))
    base = Path(os.environ.get("BENCH_DIR", REPO / "data" / "bench")).resolve() / f"airflow-{users}"
    prepared = base / "prepared"
    first_day = world.START + dt.timedelta(days=world.HISTORY_DAYS)
    day = first_day + dt.timedelta(days=1)
    if os.environ.get("BENCH_AIRFLOW_REUSE") and (prepared / ".ready").exists():
        print(f"world: {users:,} users, reused from {prepared}", flush=True)
        for mode in MODES:
            shutil.rmtree(base / mode, ignore_errors=True)
    else:
        shutil.rmtree(base, ignore_errors=True)
        print(f"world: {users:,} users, {world.HISTORY_DAYS} days ({time.strftime('%H:%M:%S')})", flush=True)
        world.create(prepared, users, seed=1)
        started = time.perf_counter()
        nudgeflow_run(prepared, first_day)
        print(f"first run (in-process, the history measured): {time.perf_counter() - started:.1f}s", flush=True)
        d = world.next_day_index(prepared)
        world.write_days(prepared, range(d, d + 1), 1)
        (prepared / ".ready").touch()
    measured, measured_index = day + dt.timedelta(days=1), world.next_day_index(prepared)
    results = {"users": users, "day": measured.isoformat(), "modes": {}}
    # a mode, or models:S for the sensors polling every S seconds (NUDGEFLOW_DBT_POKE_SECONDS)
    modes = [m for m in os.environ.get("BENCH_AIRFLOW_MODES", ",".join(MODES)).split(",") if m]
    if not {m.split(":")[0] for m in modes} <= set(MODES):
        raise SystemExit(f"BENCH_AIRFLOW_MODES: {modes} is not a subset of {MODES} (or models:SECONDS)")
    for mode in modes:
        home = base / mode.replace(":", "-")
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(prepared, home, symlinks=True)
        # no scheduled run beside the bench's (the latest tick's would plan from stale data, first)
        env = {"NUDGEFLOW_DBT_TASKS": mode.split(":")[0], "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
        if ":" in mode:
            env["NUDGEFLOW_DBT_POKE_SECONDS"] = mode.split(":")[1]
        env.update(_pairs(os.environ.get("BENCH_AIRFLOW_ENV", "")))
        with LocalAirflow(home, [REPO / "dags" / "nudgeflow_daily.py"], env=env) as airflow:
            airflow.start()
            airflow.wait_parsed(DAG_ID)
            # the day before, unmeasured: Airflow's components and dbt's parse as on any day of a
            # deployment (its components run for days; the first run pays their start-up)
            warm = airflow.run(DAG_ID, f"warm_{mode.replace(':', '_')}", _logical(day), timeout=3600)
            if warm != "success":
                raise SystemExit(f"{mode}: the warm-up DagRun for {day} ended {warm}\n{airflow.diagnostics()}")
            world.write_days(home, range(measured_index, measured_index + 1), 1)
            cpu_before = airflow.cpu_seconds()
            run_id = f"bench_{mode.replace(':', '_')}"
            state = airflow.run(DAG_ID, run_id, _logical(measured), timeout=3600)
            cpu = {k: round(v - cpu_before[k], 1) for k, v in airflow.cpu_seconds().items()}
            figures = {"state": state, **_figures(airflow.task_instances(DAG_ID, run_id), mode.split(":")[0])}
            figures["cpu_s"] = cpu  # per component during the run; the scheduler's includes its tasks'
        results["modes"][mode] = figures
        print(f"{mode:>6}: {json.dumps(figures)}", flush=True)
    table = "\n| users | dbt as | tasks | DagRun s | dbt part s | build s |\n|---|---|---|---|---|---|\n" + "\n".join(
        f"| {users:,} | {m} | {f['tasks']} | {f['dagrun_s']} | {f['dbt_part_s']} | {f['build_s']} |"
        for m, f in results["modes"].items()
    )
    if not set(MODES) <= set(modes):
        print(table)
        return  # a trial: no ratio, and the results file is left as it was
    one, models = results["modes"]["one"], results["modes"]["models"]
    results["ratio_dagrun"] = round(models["dagrun_s"] / one["dagrun_s"], 2)
    results["ratio_dbt_part"] = round(models["dbt_part_s"] / one["dbt_part_s"], 2)
    print(table + f"\n\nmodels / one: DagRun {results['ratio_dagrun']}x, dbt part {results['ratio_dbt_part']}x")
    out = REPO / "benchmarks" / "results" / f"airflow-{users}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"-> {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
