"""A fixed simulated world gives the same schedules and measurement tables as the stored
digest (taken before the product/lab re-layout): byte-identical Parquet exports and identical
send_outcomes / action_outcomes rows.

Doubles are compared to 10 significant digits: DuckDB's parallel sums add in a varying order,
so two runs of the same code differ at about 1e-14 (measured); everything else is exact. A
change that means to alter these results updates data/fixed_world_digest.json and says why.
"""

import datetime as dt
import hashlib
import json
from pathlib import Path

import duckdb

from nudgeflow.lab.simulate import create_world, deliver
from nudgeflow.steps import run

STORED = Path(__file__).parent / "data" / "fixed_world_digest.json"
START = dt.date(2026, 1, 5)


def digest(home: Path, days) -> dict:
    out = {}
    for day in days:
        p = home / "exports" / "send_schedule" / f"date={day.isoformat()}" / "part-0.parquet"
        out[f"export {day}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        for table, key in (
            ("marts.send_outcomes", "send_id"),
            ("marts.action_outcomes", "user_id, action_set, action"),
        ):
            rows = con.sql(f"select * from {table} order by {key}").fetchall()
            cols = [c[0] for c in con.sql(f"select * from {table} limit 0").description]
            h = hashlib.sha256(json.dumps(cols).encode())
            for r in rows:
                h.update(repr(tuple(f"{v:.10g}" if isinstance(v, float) else v for v in r)).encode())
            out[table] = f"{len(rows)}:{h.hexdigest()}"
    finally:
        con.close()
    return out


def test_fixed_world_matches_the_stored_digest(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    create_world(home, users=300, history_days=7, start=START, seed=3)
    first = START + dt.timedelta(days=7)
    days = [first, first + dt.timedelta(days=1)]
    for i, day in enumerate(days):
        run(home, day, run_id=f"digest-{i}")
        deliver(home, day)
    assert digest(home, days) == json.loads(STORED.read_text())
