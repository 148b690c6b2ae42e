"""The SQL of the dbt project is portable outside macros/portable.sql (static: needs no Spark).

Every dispatched macro of macros/portable.sql has a duckdb__, a spark__ and a default__
implementation, the default__ one a compile error; and no model, test or other macro uses a
DuckDB-only construct directly (with Jinja and comments taken out of the text), so a new model
that needs one goes through a portable macro.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
PORTABLE = DBT_PROJECT / "macros" / "portable.sql"
# DuckDB-only SQL (each has a Spark text in macros/portable.sql)
DUCKDB_ONLY = {
    r"\bepoch_us\s*\(": "epoch_us",
    r"\bdate_diff\s*\(": "hours_between",
    r"\bto_microseconds\s*\(": "hours",
    r"\btimestamptz\b": "utc_timestamp / local_time",
    r"\bregexp_full_match\s*\(": "utc_timestamp",
    r"\bisfinite\s*\(": "to_double",
    r"\blist\s*\(": "list_agg",
    r"\blist_\w+\s*\(": "any_in_window / max_in_window / country_list",
    r"\bstruct_pack\s*\(": "ordering_key",
    r"\bunnest\s*\(": "unnest_range",
    r"\bfrom\s+range\s*\(": "day_series",
    r"\basof\b": "next_goal",
    r"\bas\s+materialized\b": "materialized_cte",
    r"\*\s*exclude\b": "star_except",
    r"::": "cast(.. as ..)",
    r"//": "int_div",
    r"\blambda\b": "a portable list macro",
    r"\bvarchar\b": "cast(.. as string)",
    r"\bubigint\b": "is_holdout",
}


def _sql_only(text: str) -> str:
    text = re.sub(r"\{#.*?#\}", " ", text, flags=re.S)
    text = re.sub(r"\{\{.*?\}\}", " 0 ", text, flags=re.S)
    text = re.sub(r"\{%.*?%\}", " ", text, flags=re.S)
    text = re.sub(r"--[^\n]*", " ", text)
    return re.sub(r"'(?:[^'\n]|'')*'", "''", text)  # string literals


def test_every_dispatched_macro_has_duckdb_spark_and_default():
    text = PORTABLE.read_text()
    dispatched = re.findall(r"adapter\.dispatch\('(\w+)'\)", text)
    assert len(dispatched) >= 10
    defined = set(re.findall(r"\{%-?\s*macro\s+(\w+)\s*\(", text))
    for name in dispatched:
        missing = [f"{p}__{name}" for p in ("duckdb", "spark", "default") if f"{p}__{name}" not in defined]
        assert not missing, missing
        body = text.split(f"macro default__{name}(", 1)[1].split("endmacro", 1)[0]
        assert f"_not_portable('{name}')" in body, f"default__{name} does not stop the compile"


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(DBT_PROJECT)
        for p in [
            *DBT_PROJECT.glob("models/**/*.sql"),
            *DBT_PROJECT.glob("tests/**/*.sql"),
            *DBT_PROJECT.glob("macros/*.sql"),
        ]
        if p != PORTABLE
    ),
    ids=str,
)
def test_no_duckdb_only_sql_outside_portable_macros(path):
    sql = _sql_only((DBT_PROJECT / path).read_text()).lower()
    found = [
        f"{m.group(0)!r} (use {use})" for pattern, use in DUCKDB_ONLY.items() if use for m in re.finditer(pattern, sql)
    ]
    assert not found, found
