"""The publish step, another commit's against this checkout's, on one home, alternating.

    .venv/bin/python benchmarks/publish_compare.py HOME [COMMIT]

HOME: a home after a run (e.g. a bench home kept with BENCH_KEEP=1); COMMIT (default 6a555b4,
the whole-file copy): the other `nudgeflow/warehouse.py`, read with `git show`. Runs old, new,
old, new; before each new publish the last two days of published events are marked changed
(as a daily run's landed day and a late event would). Prints seconds, the seconds in Parquet
files and in the events, and the size of HOME/published/ (docs/benchmarks.md, "L end to end").
It rewrites HOME/published/.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nudgeflow.warehouse as new

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    home = Path(sys.argv[1])
    commit = sys.argv[2] if len(sys.argv) > 2 else "6a555b4"
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:plugins/nudgeflow/warehouse.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("old_warehouse", f.name)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)

    parts: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    new._publish_events = timed("events", new._publish_events)
    new._copy_atomically = timed("parquet files", new._copy_atomically)

    def mark_changed(n: int) -> None:
        manifest = home / "published" / "events" / "_days.json"
        if manifest.exists():
            days = json.loads(manifest.read_text())
            for day in sorted(days["days"])[-n:]:
                days["days"][day] = [0, 0]
            manifest.write_text(json.dumps(days))

    def run(label: str, publish) -> None:
        parts.clear()
        started = time.perf_counter()
        publish(home)
        seconds = time.perf_counter() - started
        size = sum(
            p.stat().st_size for p in (home / "published").rglob("*") if p.is_file() and "dbt-docs" not in p.parts
        )
        shares = json.dumps({k: round(v, 1) for k, v in parts.items()})
        print(f"{label}: {seconds:.1f} s {shares}, published {size / 1e9:.2f} GB", flush=True)

    for round_ in (1, 2):
        run(f"old ({commit}), round {round_}", old.publish)
        (home / "published" / "warehouse.duckdb").unlink()
        mark_changed(2)
        run(f"new, round {round_}", new.publish)


if __name__ == "__main__":
    main()
