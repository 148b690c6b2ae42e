"""The priors step fits from the cells' sums (marts.prior_statistics, aggregated by dbt) what
the per-user fit gives (decide.priors.empirical_bayes_prior on action_outcomes), for both
kinds of cells: same rows, alpha and beta to 1e-12 relative."""

import datetime as dt

import duckdb
import polars as pl
import pytest

from nudgeflow.decide.priors import empirical_bayes_prior, prior_from_statistics
from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import step_ingest, step_measure

START = dt.date(2026, 1, 5)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("prior_statistics") / "home"
    home.mkdir()
    create_world(home, users=400, history_days=10, start=START, seed=7)
    day = START + dt.timedelta(days=10)
    step_ingest(home, day)
    step_measure(home, day)
    return home


@pytest.mark.parametrize(("cells", "column"), [("behaviour", "prior_cell"), ("matching", "cell")])
def test_priors_from_the_cells_sums_equal_the_per_user_fit(home, cells, column):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        stats = con.sql(
            "select cell, action_set, action, n_users, trials, successes, sum_sq "
            f"from marts.prior_statistics where cells = '{cells}'"
        ).pl()
        outcomes = con.sql(
            "select user_id, action_set, action, weighted_successes as successes, "
            "weighted_trials as trials from marts.action_outcomes"
        ).pl()
        users = con.sql(f"select user_id, {column} as cell from marts.user_features").pl()
    finally:
        con.close()
    assert stats.height > 0 and stats["n_users"].sum() > 0
    keys = ["cell", "action_set", "action"]
    for max_strength in (10.0, 1e6):
        got = prior_from_statistics(stats, max_strength=max_strength, min_users=5).sort(keys)
        want = empirical_bayes_prior(outcomes, users, max_strength=max_strength, min_users=5).sort(keys)
        assert got.select(*keys, "source", "n_users").equals(want.select(*keys, "source", "n_users"))
        for col in ("alpha", "beta", "trials"):
            rel = ((got[col] - want[col]).abs() / want[col].abs()).max()
            assert rel < 1e-12, (col, rel)
        assert got.filter(pl.col("source") == "cell").height > 0
