"""Faults: a run killed (SIGKILL) at any step leaves the previous exports whole and the lock
free, and the next run gives exactly the schedule an uninterrupted run gives; reruns are
byte-identical."""

import datetime as dt
import hashlib
import shutil
import subprocess
import sys

import pytest

from nudgeflow.lab.simulate import create_world, deliver
from nudgeflow.steps import run
from nudgeflow.steps.schedule import export_path

START = dt.date(2026, 1, 5)
FIRST = START + dt.timedelta(days=7)
NEXT = FIRST + dt.timedelta(days=1)

# A child that runs the day and kills itself (SIGKILL, no cleanup) at one point of one step.
CHILD = """
import datetime as dt, os, signal, sys, threading
import nudgeflow.steps as steps, nudgeflow.warehouse as wh, nudgeflow.steps.schedule as sched
home, day, point = sys.argv[1], dt.date.fromisoformat(sys.argv[2]), sys.argv[3]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point in ("ingest", "priors", "sample", "match"):
    steps._FUNCTIONS[point] = die
elif point == "measure":  # in the middle of dbt build
    original = steps._FUNCTIONS["measure"]
    def measure(*a, **k):
        threading.Timer(1.5, die).start()
        return original(*a, **k)
    steps._FUNCTIONS["measure"] = measure
elif point == "export":  # the new Parquet file half written, not yet renamed
    def write(frame, path):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"PAR1 half")
        die()
    sched.write_parquet_atomically = write
elif point == "publish":
    sched.publish = die
steps.run(home, day)
"""
# killed before ingest, inside dbt build, before match (priors and sample done: a kill at the
# start of priors or sample is the same case, a step boundary after warehouse writes), while
# the export is half written, and before publishing
POINTS = ["ingest", "measure", "match", "export", "publish"]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def before(tmp_path_factory):
    """A home after one day (planned and delivered), and the reference schedule of the next
    day from an uninterrupted run."""
    home = tmp_path_factory.mktemp("faults") / "home"
    home.mkdir()
    create_world(home, users=250, history_days=7, start=START, seed=6)
    run(home, FIRST)
    deliver(home, FIRST)
    reference = home.with_name("reference")
    shutil.copytree(home, reference)
    run(reference, NEXT)
    again = run(reference, NEXT)  # a rerun replaces the day with the same bytes
    assert again["rows"] > 0
    return home, _digest(export_path(reference, NEXT))


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_run_leaves_exports_whole_and_the_next_run_correct(before, tmp_path, point):
    home, reference = before
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    first_export = _digest(export_path(copy, FIRST))
    done = subprocess.run([sys.executable, "-c", CHILD, str(copy), NEXT.isoformat(), point], timeout=300)
    assert done.returncode == -9  # killed, not failed
    assert _digest(export_path(copy, FIRST)) == first_export
    assert not export_path(copy, NEXT).exists() or point == "publish"
    run(copy, NEXT)  # takes the lock the dead run held, recovers the warehouse
    assert _digest(export_path(copy, NEXT)) == reference
    assert not list(export_path(copy, NEXT).parent.glob(".*.tmp"))
