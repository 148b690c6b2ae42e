"""Run one measured stage in its own process, under a memory cap and a time cap.

The child (benchmarks/child.py) does the work and writes its result as JSON; the parent
samples the resident memory of the child's whole process tree from /proc every 0.1 s and
kills the tree (its own process group, by id) when the sum passes the memory cap or the
stage passes the time cap. The reported peak is the larger of the sampled peak and the
child's own high-water mark (getrusage), so a short spike between two samples still counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3
POLL_SECONDS = 0.1


@dataclass
class Outcome:
    """What one guarded stage did: status is ok, failed, over cap (memory) or stopped at cap (time)."""

    label: str
    status: str
    seconds: float  # the work itself, as the child timed it (wall of the process when stopped)
    process_seconds: float  # the whole child process: interpreter start, imports, work, exit
    peak_bytes: int
    result: dict = field(default_factory=dict)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_gib": round(self.peak_gib, 3)}


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Resident bytes of pid and all its descendants."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _status_kib(p, "VmRSS") * 1024
        stack.extend(_children(p))
    return total


def run(label: str, spec: dict, *, mem_cap_gib: float, time_cap_s: float, log_path: Path) -> Outcome:
    """Run child.py with ``spec`` (a JSON-able dict; ``kind`` says what to do) under the caps;
    the child's output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cap = int(mem_cap_gib * GIB)
    with tempfile.TemporaryDirectory(prefix="nudgeflow-bench-") as tmp, open(log_path, "w") as log:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(HERE / "child.py"), json.dumps({**spec, "out": str(out)})]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=HERE.parent)
        peak, stopped = 0, None
        while proc.poll() is None:
            rss = tree_rss(proc.pid)
            peak = max(peak, rss, _status_kib(proc.pid, "VmHWM") * 1024)
            if rss > cap:
                stopped = "over cap"
            elif time.perf_counter() - started > time_cap_s:
                stopped = "stopped at cap"
            if stopped:
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own group: it and its descendants
                proc.wait()
                break
            time.sleep(POLL_SECONDS)
        wall = time.perf_counter() - started
        if stopped:
            detail = f"killed at {peak / GIB:.1f} GiB" if stopped == "over cap" else f"killed after {wall:.0f} s"
            return Outcome(label, stopped, wall, wall, peak, detail=detail)
        if proc.returncode != 0 or not out.exists():
            return Outcome(label, "failed", wall, wall, peak, detail=f"exit {proc.returncode}: {_tail(log_path)}")
        data = json.loads(out.read_text())
    return Outcome(label, "ok", data["seconds"], wall, max(peak, int(data["max_rss_bytes"])), data.get("result", {}))


def _tail(log_path: Path, lines: int = 3) -> str:
    text = log_path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])[-600:]
