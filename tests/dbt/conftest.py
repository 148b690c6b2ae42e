"""Shared by the dbt tests that compare two ways of building the same warehouse."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest


@pytest.fixture(scope="session")
def read_tables():
    """read_tables(home, {table: order by}) -> {table: rows in that order}, read-only."""

    def read(home, tables: dict[str, str]) -> dict[str, pl.DataFrame]:
        con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        try:
            return {t: con.sql(f"select * from {t} order by {key}").pl() for t, key in tables.items()}
        finally:
            con.close()

    return read
