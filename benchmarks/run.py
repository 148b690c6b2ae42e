"""`make bench`: how long the daily run takes, and how much memory, at 10k, 100k and 1M users.

For each size (S 10k users, M 100k, L 1M; about 100 events per user over 30 days):

1. generate a world (benchmarks/world.py, DuckDB SQL, apart from the lab's simulator);
2. the floor: one DuckDB ``select user_id, event_name, count(*) ... group by all`` over its events;
3. the first run for the date after the history, every step in its own guarded process
   (ingest, measure with the top dbt models from run_results.json, priors, sample, match,
   schedule);
4. one incremental day: one more day of events and sends landed, then the run for the next date;
5. decisions per second: our sample + match per user beside MABWiser and Vowpal Wabbit.

Plain tables on stdout and benchmarks/results/<size>.json. Every stage runs under a memory
cap and a time cap (benchmarks/guard.py); a stage past a cap is killed and reported as
"over cap" or "stopped at cap", and the stages after it as "not run". docs/benchmarks.md
says what each figure means and the targets.

Settings (environment):
  BENCH_SIZES=S,M            sizes to run (S, M, L)
  BENCH_PARTS=world,floor,first,daily,peers   what to run (world alone: generate and size it)
  BENCH_STAGE_CAP_S=1200     time cap per stage, seconds
  BENCH_MEM_CAP_GIB=16       memory cap per stage (resident, the process tree), GiB
  BENCH_DUCKDB_MEMORY_LIMIT  e.g. 2GB: DuckDB memory_limit for every database the steps open
  BENCH_DUCKDB_SETTINGS      more DuckDB settings for them, name=value;name=value (a diagnostic,
                             e.g. disabled_optimizers=join_order: not what the product runs)
  BENCH_PEER_BUDGET_S=3      predict budget per library in the decisions micro-benchmark
  BENCH_SEED=1               the world's seed
  BENCH_DAILY_RUNS=1         incremental daily runs after the first run, one more day each; the
                             last is reported as the daily run, the earlier ones before it
  BENCH_FIRST_DUCKDB_SETTINGS   the same for the first run only (to get a history measured when the
                             product's own plan cannot, and then time the daily run as it is)
  BENCH_TAG                  results go to benchmarks/results/<size>-<tag>.json (for variants)
  BENCH_STEPS=ingest,measure,priors,sample,match,schedule   the steps of each run (e.g. ingest,measure:
                             the measure step's figures at L without the long match step); the
                             others are reported "skipped" and do not stop the daily run
  BENCH_DIR=data/bench       where the homes go (removed after each size unless BENCH_KEEP=1)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import time
from pathlib import Path

import guard
import world

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
STEPS = ("ingest", "measure", "priors", "sample", "match", "schedule")
PARTS = ("world", "floor", "first", "daily", "peers")
TOP_MODELS = 10


class Settings:
    def __init__(self, env=os.environ):
        self.sizes = [s.strip().upper() for s in env.get("BENCH_SIZES", "S,M").split(",") if s.strip()]
        unknown = [s for s in self.sizes if s not in SIZES]
        if unknown:
            raise SystemExit(f"BENCH_SIZES: unknown size(s) {', '.join(unknown)}; known: {', '.join(SIZES)}")
        self.parts = [p.strip() for p in env.get("BENCH_PARTS", ",".join(PARTS)).split(",") if p.strip()]
        if set(self.parts) - set(PARTS):
            raise SystemExit(f"BENCH_PARTS: known parts are {', '.join(PARTS)}")
        self.stage_cap_s = float(env.get("BENCH_STAGE_CAP_S", 1200))
        self.mem_cap_gib = float(env.get("BENCH_MEM_CAP_GIB", 16))
        self.duckdb_settings = _pairs(env.get("BENCH_DUCKDB_SETTINGS", ""))
        if env.get("BENCH_DUCKDB_MEMORY_LIMIT"):
            self.duckdb_settings["memory_limit"] = env["BENCH_DUCKDB_MEMORY_LIMIT"]
        self.first_duckdb_settings = {**self.duckdb_settings, **_pairs(env.get("BENCH_FIRST_DUCKDB_SETTINGS", ""))}
        self.peer_budget_s = float(env.get("BENCH_PEER_BUDGET_S", 3))
        self.seed = int(env.get("BENCH_SEED", 1))
        self.dir = Path(env.get("BENCH_DIR", REPO / "data" / "bench")).resolve()
        self.keep = env.get("BENCH_KEEP", "0") not in ("", "0", "false", "no")
        self.results = HERE / "results"
        self.tag = env.get("BENCH_TAG", "").strip()
        self.daily_runs = int(env.get("BENCH_DAILY_RUNS", 1))
        if self.daily_runs < 1:
            raise SystemExit("BENCH_DAILY_RUNS must be at least 1")
        self.steps = [s.strip() for s in env.get("BENCH_STEPS", ",".join(STEPS)).split(",") if s.strip()]
        if set(self.steps) - set(STEPS) or not {"ingest", "measure"} <= set(self.steps):
            raise SystemExit(f"BENCH_STEPS: steps of {', '.join(STEPS)}, ingest and measure included")

    def results_path(self, size: str) -> Path:
        return self.results / (f"{size}-{self.tag}.json" if self.tag else f"{size}.json")

    def as_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


def _pairs(text: str) -> dict:
    """'a=1;b=2' -> {'a': '1', 'b': '2'}"""
    return dict(item.strip().split("=", 1) for item in text.split(";") if "=" in item)


# ------------------------------------------------------------------ measuring


def _guarded(cfg: Settings, home: Path, label: str, spec: dict, duckdb: dict | None = None) -> guard.Outcome:
    """One stage under the caps; ``duckdb``: settings for every DuckDB database it opens."""
    spec = {"home": str(home), "seed": cfg.seed, "duckdb_settings": duckdb or {}, **spec}
    log = cfg.dir / "logs" / home.name / f"{label}.log"
    outcome = guard.run(label, spec, mem_cap_gib=cfg.mem_cap_gib, time_cap_s=cfg.stage_cap_s, log_path=log)
    print(f"  {label}: {outcome.status}, {outcome.seconds:.1f} s, {outcome.peak_gib:.2f} GiB", flush=True)
    return outcome


def _run_day(cfg: Settings, home: Path, day: dt.date, tag: str, duckdb: dict) -> dict:
    """Every step of the run for ``day``, each in its own guarded process; after a stage that
    is not ok the others are not run."""
    stages, blocked = [], None
    for step in STEPS:
        if blocked:
            stages.append({"label": step, "status": f"not run ({blocked})", "seconds": None, "peak_gib": None})
            continue
        if step not in cfg.steps:
            stages.append({"label": step, "status": "skipped (BENCH_STEPS)", "seconds": None, "peak_gib": None})
            continue
        spec = {"kind": "step", "step": step, "day": day.isoformat()}
        outcome = _guarded(cfg, home, f"{tag}-{step}", spec, duckdb)
        stages.append({**outcome.as_dict(), "label": step})
        if not outcome.ok:
            blocked = f"{step} {outcome.status}"
    return {
        "date": day.isoformat(),
        "duckdb_settings": duckdb,
        "stages": stages,
        "dbt": _dbt_timings(home, stages[1]),
    }


def _dbt_timings(home: Path, measure: dict) -> dict:
    """Per-model seconds of the measure step: dbt's run_results.json when the step finished,
    else the models that dbt's log (HOME/.dbt/logs/dbt.log) shows finished before the step
    was stopped, and the one it was running."""
    path = home / ".dbt" / "target" / "run_results.json"
    log = home / ".dbt" / "logs" / "dbt.log"
    running = None
    if measure["status"] == "ok" and path.exists():
        results = json.loads(path.read_text())["results"]
        models = [
            {"model": r["unique_id"].split(".", 2)[-1], "seconds": r["execution_time"], "status": r["status"]}
            for r in results
            if r["unique_id"].startswith("model.")
        ]
        tests = [r["execution_time"] for r in results if r["unique_id"].startswith(("test.", "unit_test."))]
        source = "run_results.json"
    elif log.exists():
        text = _strip_ansi(log.read_text(errors="replace"))
        text = text[text.rfind("Running with dbt=") :]  # the last invocation
        done = re.findall(r"(?:OK created|ERROR creating) sql \w+ model (\S+) \.* \[\w+ in ([\d.]+)s\]", text)
        tests = [float(t) for t in re.findall(r"(?:PASS|FAIL|WARN|ERROR) \S+ \.* \[\w+ in ([\d.]+)s\]", text)]
        models = [{"model": m.split(".")[-1], "seconds": float(t), "status": "success"} for m, t in done]
        started = re.findall(r"START sql \w+ model (\S+) ", text)
        finished = {m for m, _ in done}
        running = next((m.split(".")[-1] for m in reversed(started) if m not in finished), None)
        source = "dbt.log of the stopped step: the models finished before the cap"
    else:
        return {}
    models.sort(key=lambda r: -r["seconds"])
    return {
        "source": source,
        "models": models,
        "models_seconds": sum(m["seconds"] for m in models),
        "tests": len(tests),
        "tests_seconds": sum(tests),
        "running_at_stop": running,
    }


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def bench_size(cfg: Settings, size: str) -> dict:
    n_users = SIZES[size]
    home = cfg.dir / size
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(cfg.dir / "logs" / size, ignore_errors=True)
    print(f"\n== {size}: {n_users:,} users, {world.HISTORY_DAYS} days of history ({time.strftime('%H:%M:%S')})")
    out = {"size": size, "users": n_users, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    gen = _guarded(cfg, home, "generate", {"kind": "generate", "users": n_users})
    out["generate"] = gen.as_dict()
    if not gen.ok:
        return out
    out["generate"]["disk_bytes"] = _du(home / "landing")
    if "memory_limit" in cfg.duckdb_settings:  # the product's setting: dbt's profile SETs it after connecting
        with (home / "nudgeflow.yml").open("a", encoding="utf-8") as f:
            f.write(f"duckdb_memory_limit: '{cfg.duckdb_settings['memory_limit']}'\n")
    first_day = world.START + dt.timedelta(days=world.HISTORY_DAYS)
    if "floor" in cfg.parts:
        out["floor"] = _guarded(cfg, home, "floor", {"kind": "floor"}).as_dict()
    if "first" in cfg.parts:
        out["first_run"] = _run_day(cfg, home, first_day, "first", cfg.first_duckdb_settings)
    if "daily" in cfg.parts and _all_ok(out.get("first_run", {"stages": []})):
        # BENCH_DAILY_RUNS days, one after the other: the last is the daily run reported (a
        # run after the first daily one has the warehouse in its steady state: the Decide
        # history pruned, a model changed since the first run migrated); the others are kept
        earlier = []
        for k in range(1, cfg.daily_runs + 1):
            tag = "daily" if k == cfg.daily_runs else f"daily{k}"
            extra = _guarded(cfg, home, f"extra_day{'' if k == cfg.daily_runs else k}", {"kind": "extra_day"})
            out["extra_day"] = extra.as_dict()
            if not extra.ok:
                break
            run = _run_day(cfg, home, first_day + dt.timedelta(days=k), tag, cfg.duckdb_settings)
            if k < cfg.daily_runs:
                earlier.append({**run, "extra_day": extra.as_dict()})
                if not _all_ok(run):
                    out["daily_run"] = {"skipped": f"daily run {k} of {cfg.daily_runs} did not complete"}
                    break
            else:
                out["daily_run"] = run
        if earlier:
            out["daily_runs_before"] = earlier
    elif "daily" in cfg.parts:
        out["daily_run"] = {"skipped": "the first run did not complete"}
    if "peers" in cfg.parts:
        spec = {"kind": "peers", "users": n_users, "arms": world.N_MESSAGES, "budget_seconds": cfg.peer_budget_s}
        out["peers"] = _guarded(cfg, home, "peers", spec).as_dict()
    out["warehouse_bytes"] = (home / "warehouse.duckdb").stat().st_size if (home / "warehouse.duckdb").exists() else 0
    if not cfg.keep:
        shutil.rmtree(home, ignore_errors=True)
    return out


def _all_ok(run: dict) -> bool:
    return bool(run.get("stages")) and all(
        s["status"] == "ok" or s["status"].startswith("skipped") for s in run["stages"]
    )


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------ reporting


def _table(header: list[str], rows: list[list], indent: str = "  ") -> str:
    cells = [header] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = [(str.ljust if i == 0 or not _numeric_column(cells, i) else str.rjust) for i in range(len(header))]
    lines = [indent + "  ".join(f(c, w) for f, c, w in zip(fmt, r, widths)).rstrip() for r in cells]
    lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric_column(cells, i) -> bool:
    return all(re.fullmatch(r"[-+]?[\d,.]*%?x?", r[i] or "") for r in cells[1:])


def _f(x, digits=1) -> str | None:
    return None if x is None else f"{x:,.{digits}f}"


def _events(out: dict) -> int:
    return out["generate"]["result"]["tables"]["events"]["rows"]


def report_size(out: dict) -> str:
    lines = [f"\n{out['size']}: {out['users']:,} users"]
    gen = out["generate"]
    if gen["status"] != "ok":
        return "\n".join([*lines, f"  generator {gen['status']}: {gen['detail']}"])
    tables = gen["result"]["tables"]
    lines.append(
        f"  world: {tables['events']['rows']:,} events, {tables['sends']['rows']:,} sends, "
        f"{tables['consents']['rows']:,} consents, {tables['messages']['rows']} messages; "
        f"{gen['disk_bytes'] / 1e9:.2f} GB of Parquet; generated in {gen['seconds']:.1f} s, "
        f"peak {gen['peak_gib']:.2f} GiB"
    )
    floor = out.get("floor")
    if floor:
        if floor["status"] == "ok":
            lines.append(
                f"  floor: {floor['seconds']:.2f} s, {floor['peak_gib']:.2f} GiB (select user_id, event_name, "
                f"count(*) ... group by all over {floor['result']['events']:,} events, "
                f"{floor['result']['threads']} threads)"
            )
        else:
            lines.append(f"  floor: {floor['status']} {floor['detail']}")
    floor_s = floor["seconds"] if floor and floor["status"] == "ok" else None
    floor_gib = floor["peak_gib"] if floor and floor["status"] == "ok" else None
    runs = [("first_run", "first run (the whole history)", out.get("first_run"))]
    before = out.get("daily_runs_before", [])
    n_daily = len(before) + 1
    runs += [("daily_run", f"incremental daily run {k + 1} of {n_daily}", r) for k, r in enumerate(before)]
    title = "incremental daily run" + (f" {n_daily} of {n_daily} (the one reported)" if before else "")
    runs.append(("daily_run", title, out.get("daily_run")))
    for key, title, run in runs:
        if not run:
            continue
        if "skipped" in run:
            lines.append(f"\n  {title}: not run ({run['skipped']})")
            continue
        extra = ""
        landed = run.get("extra_day") or (out.get("extra_day") if key == "daily_run" else None)
        if landed:
            extra = f"; the extra day landed in {landed['seconds']:.1f} s"
        if run.get("duckdb_settings"):
            extra += f"; DuckDB settings {run['duckdb_settings']} (not the product's own)"
        lines.append(f"\n  {title}, date {run['date']}{extra}")
        rows = []
        for s in run["stages"]:
            status = (
                s["status"]
                if s["status"] == "ok"
                else f"{s['status']}" + (f" ({s['detail']})" if s.get("detail") else "")
            )
            rows.append(
                [
                    s["label"],
                    _f(s["seconds"]),
                    _f(s["peak_gib"], 2),
                    _ratio(s["seconds"], floor_s),
                    _ratio(s["peak_gib"], floor_gib),
                    _f(s.get("process_seconds")),
                    status,
                ]
            )
        done = [s for s in run["stages"] if s["seconds"] is not None]
        total = sum(s["seconds"] for s in done)
        peak = max((s["peak_gib"] for s in done), default=None)
        complete = _all_ok(run)
        rows.append(
            [
                "total" if complete else "total (incomplete)",
                _f(total),
                _f(peak, 2),
                _ratio(total, floor_s),
                _ratio(peak, floor_gib),
                _f(sum(s.get("process_seconds") or 0 for s in done)),
                "ok" if complete else "stopped",
            ]
        )
        lines.append(_table(["stage", "seconds", "GiB", "x floor", "GiB x floor", "process s", "status"], rows))
        dbt = run.get("dbt")
        if dbt and dbt.get("models"):
            total_m = dbt["models_seconds"]
            lines.append(
                f"\n  dbt models, top {TOP_MODELS} by time ({len(dbt['models'])} models {total_m:.1f} s; "
                f"{dbt['tests']} tests {dbt['tests_seconds']:.1f} s; from {dbt['source']})"
            )
            rows = [
                [m["model"], _f(m["seconds"]), f"{100 * m['seconds'] / total_m:.0f}%" if total_m else None]
                for m in dbt["models"][:TOP_MODELS]
            ]
            lines.append(_table(["model", "seconds", "share"], rows))
            if dbt.get("running_at_stop"):
                lines.append(f"  running when the step was stopped: {dbt['running_at_stop']}")
    lines.extend(_decisions(out))
    return "\n".join(lines)


def _ratio(x, floor) -> str | None:
    return None if x is None or not floor else f"{x / floor:,.1f}x"


def _decisions(out: dict) -> list[str]:
    rows = []
    for key, title in (("first_run", "first run"), ("daily_run", "daily run")):
        run = out.get(key) or {}
        st = {s["label"]: s for s in run.get("stages", [])}
        if st.get("sample", {}).get("status") == "ok" and st.get("match", {}).get("status") == "ok":
            seconds = st["sample"]["seconds"] + st["match"]["seconds"]
            n = st["priors"]["result"]["users"]  # the users decided for (the holdout is not)
            rate = n / seconds
            rows.append(
                [f"ours: sample + match steps ({title})", f"{n:,}", _f(seconds, 2), f"{rate:,.0f}", _f(1e6 / rate)]
            )
    peers = out.get("peers")
    if peers and peers["status"] == "ok":
        for name, r in peers["result"]["libraries"].items():
            rows.append(
                [
                    f"{name} ({r['detail']})",
                    f"{r['users_predicted']:,}",
                    _f(r["predict_seconds"], 2),
                    f"{r['decisions_per_second']:,.0f}",
                    _f(r["seconds_for_1m_users"]),
                ]
            )
    elif peers:
        rows.append([f"peers: {peers['status']} {peers['detail']}", None, None, None, None])
    if not rows:
        return []
    head = f"\n  decisions per second ({out['users']:,} users, {world.N_MESSAGES} messages"
    if peers and peers["status"] == "ok":
        head += f"; peers fit on {peers['result']['fit_observations']:,} synthetic rewards, predict time-boxed"
    return [head + ")", _table(["who", "users", "seconds", "per second", "s for 1M users"], rows)]


def report_scaling(results: dict) -> list[str]:
    """M -> L cost per event of the daily run, when both ran to the end."""
    m, l = results.get("M"), results.get("L")

    def whole(run) -> bool:  # every step ran (none skipped by BENCH_STEPS)
        return _all_ok(run) and all(s["status"] == "ok" for s in run["stages"])

    if not (m and l and whole(m.get("daily_run", {})) and whole(l.get("daily_run", {}))):
        return []

    def per_event(out):
        return sum(s["seconds"] for s in out["daily_run"]["stages"]) / _events(out)

    growth = per_event(l) / per_event(m) - 1
    return [f"\nM -> L daily-run cost per event: {100 * growth:+.0f}% (target <= +30%)"]


def main() -> None:
    cfg = Settings()
    print(
        f"nudgeflow benchmark {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}: {os.cpu_count()} cores, "
        f"{_mem_gib():.0f} GiB; sizes {','.join(cfg.sizes)}; parts {','.join(cfg.parts)}; caps "
        f"{cfg.stage_cap_s:.0f} s and {cfg.mem_cap_gib:g} GiB per stage"
        + (
            f"; DuckDB settings in the first run's steps {cfg.first_duckdb_settings}"
            if cfg.first_duckdb_settings
            else ""
        )
        + (f", in the daily run's {cfg.duckdb_settings}" if cfg.duckdb_settings else "")
    )
    cfg.results.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in cfg.sizes:
        out = bench_size(cfg, size)
        out["settings"] = cfg.as_dict()
        out["code"] = _code_version()
        out["machine"] = {"cores": os.cpu_count(), "memory_gib": round(_mem_gib(), 1), "load_before": os.getloadavg()}
        results[size] = out
        cfg.results_path(size).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print("\n" + "=" * 100)
    for size in cfg.sizes:
        print(report_size(results[size]))
    for line in report_scaling(results):
        print(line)
    print(f"\nresults: {', '.join(str(cfg.results_path(s)) for s in cfg.sizes)}; logs under {cfg.dir / 'logs'}")


def _code_version() -> dict:
    """The commit measured and whether the work tree differed from it (read-only git)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "changed_files": changed}


def _mem_gib() -> float:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 1024**2


if __name__ == "__main__":
    main()
