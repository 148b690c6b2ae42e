"""One resolver of time zones for the whole run, so that SQL and Python agree on every name.

The match step times sends with Python's `zoneinfo`; dbt computes local hours and UTC
offsets with DuckDB's ICU zones; the guardrail check uses DuckDB again. A name only one of
them knows (DuckDB's ICU accepts abbreviations like `PST`, `IST`, `JST`, `CST` that are not
IANA zone names, with meanings of its own) would be timed in two ways. So the known zones
are the names both know *and* on which both agree: the same UTC offset at every probe
instant (the 1st and 15th of each month at 12:00 UTC, 2020-2035). `ingest` writes them to
`raw.timezones`; `base_raw__users` keeps a user's zone only if it is one of them (matched
without regard to case) and otherwise treats the user as UTC, with a note in
`marts.quarantine` naming the row. Never two meanings at once.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, available_timezones

import duckdb

PROBES = [dt.datetime(y, m, d, 12, tzinfo=dt.UTC) for y in range(2020, 2036) for m in range(1, 13) for d in (1, 15)]


def python_offsets(name: str) -> list[int] | None:
    """UTC offsets in minutes of the zone at the probe instants, None if Python cannot load it."""
    try:
        zone = ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None
    return [int(p.astimezone(zone).utcoffset().total_seconds() // 60) for p in PROBES]


def known_timezones(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The zone names DuckDB and Python both know and agree on (see the module docstring)."""
    con.execute("set TimeZone = 'UTC'")
    duck = con.execute(
        """
        select z.name, list(date_diff('minute', p.at::timestamp, timezone(z.name, p.at)) order by p.at)
        from pg_timezone_names() as z
        cross join (select unnest($probes::timestamptz[]) as at) as p
        group by z.name
        """,
        {"probes": PROBES},
    ).fetchall()
    python = available_timezones()
    return sorted(name for name, offsets in duck if name in python and python_offsets(name) == list(offsets))
