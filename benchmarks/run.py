"""`make bench`: speed and memory figures of the simulator and of one daily run.

Prints, does not assert: the figures go into issue notes. Sizes can be set with
BENCH_USERS (default 20000) and BENCH_SIM_USERS (default 100000).
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from nudgeflow.lab.simulate import create_world, deliver
from nudgeflow.steps import run


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    sim_users = int(os.environ.get("BENCH_SIM_USERS", 100_000))
    users = int(os.environ.get("BENCH_USERS", 20_000))
    root = Path(tempfile.mkdtemp(prefix="nudgeflow-bench-"))
    try:
        t = time.perf_counter()
        create_world(root / "sim", users=sim_users, history_days=28, seed=1)
        print(
            f"simulate: {sim_users} users x 28 days in {time.perf_counter() - t:.1f}s "
            f"(peak RSS so far {peak_mib():.0f} MiB)"
        )

        home = root / "loop"
        start = dt.date(2026, 1, 5)
        create_world(home, users=users, history_days=14, start=start, seed=2)
        first = start + dt.timedelta(days=14)
        for i in range(3):
            day = first + dt.timedelta(days=i)
            t = time.perf_counter()
            result = run(home, day)
            total = time.perf_counter() - t
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in result["timings"].items())
            kind = "first run (whole history)" if i == 0 else "incremental"
            print(f"daily run {day} at {users} users, {kind}: {total:.1f}s, {result['rows']} sends ({steps})")
            t = time.perf_counter()
            deliver(home, day)
            print(f"deliver {day}: {time.perf_counter() - t:.1f}s")
        print(f"peak RSS {peak_mib():.0f} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
