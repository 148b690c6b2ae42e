"""One source of settings: config.py's Settings agree with dbt_project.yml and docs/settings.md,
every var the SQL uses is declared, and a bad setting is refused with its bounds."""

import re
from pathlib import Path

import pytest
import yaml

from nudgeflow.config import NudgeflowError, Settings, load_settings, settings_table

ROOT = Path(__file__).resolve().parents[2]
DBT = ROOT / "dbt_project"


def _dbt_vars() -> dict:
    return yaml.safe_load((DBT / "dbt_project.yml").read_text())["vars"]


def test_dbt_project_vars_are_the_settings_defaults():
    declared = {k: v for k, v in _dbt_vars().items() if k != "as_of"}
    defaults = Settings().as_dict()
    assert declared == {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items() if k in declared}
    assert sorted(declared) == sorted(Settings.dbt_names())  # same names, same defaults (72 == 72.0)


def test_text_settings_reach_dbt_as_raw_text():
    """dbt renders --vars as Jinja: a text setting travels inside raw blocks (and the SQL
    quotes it with the macro sql_text), so it is data, never template or SQL."""
    import jinja2

    for text in ("purchase", "{{ 7*7 }}", "app'open", "{% if x %}y{% endif %}", "a{%b", "{% endraw %}"):
        wrapped = Settings(goal_event=text).dbt_vars()["goal_event"]
        assert jinja2.Environment().from_string(wrapped).render() == text


def test_every_var_used_in_sql_is_declared():
    used = set()
    for path in [*DBT.rglob("*.sql"), *DBT.rglob("*.yml")]:
        if "target" in path.parts or "dbt_packages" in path.parts:
            continue
        used |= set(re.findall(r"""(?<![\w.])var\(\s*['"](\w+)['"]""", path.read_text()))
    assert used, "no var found: the pattern is wrong"
    assert used - set(_dbt_vars()) == set()


def test_docs_settings_is_generated_from_config():
    text = (ROOT / "docs" / "settings.md").read_text()
    assert settings_table() in text, "regenerate it: python -m nudgeflow.config > docs/settings.md"


def _load(tmp_path, text: str):
    (tmp_path / "nudgeflow.yml").write_text(text)
    return load_settings(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prior_max_strength: 0", "'prior_max_strength' out of bounds (>= 1), got 0.0"),
        ("window_hours: .inf", "'window_hours' must be number (> 0)"),
        ("max_sends_per_day: 2", "'max_sends_per_day' out of bounds (>= 0 and <= 1), got 2"),
        ("send_hours: [8, 24]", "'send_hours' out of bounds (>= 0 and <= 23), got [8, 24]"),
        ("neighbours: 2.5", "'neighbours' must be integer (>= 1), got 2.5"),
        ("holdout_fraction: 1", "'holdout_fraction' out of bounds (>= 0 and < 1), got 1.0"),
        ("control_pool: street", "'control_pool' out of bounds (one of cell, group), got 'street'"),
        ("weight_horizon_days: 2", "'weight_horizon_days' must be longer than 'weight_window_hours'"),
        ("goal_event: ''", "'goal_event' must be text"),
        ("gap_adjustment: 1", "'gap_adjustment' must be true or false, got 1"),
        ("prior_cells: users", "'prior_cells' out of bounds (one of behaviour, matching), got 'users'"),
        ("duckdb_memory_limit: '8'", "'duckdb_memory_limit' must be a share like '50%' or a size like '8GiB', got '8'"),
        ('duckdb_memory_limit: "2GB\'; drop"', "'duckdb_memory_limit' must be a share like '50%'"),
    ],
)
def test_bad_settings_are_refused_with_their_bounds(tmp_path, text, message):
    with pytest.raises(NudgeflowError) as err:
        _load(tmp_path, text)
    assert message in str(err.value)


def test_fractional_hours_are_accepted(tmp_path):
    s = _load(tmp_path, "window_hours: 36.5\nmin_hours_between_sends: 12.5\ngoal_weight: 2")
    assert (s.window_hours, s.min_hours_between_sends, s.goal_weight) == (36.5, 12.5, 2.0)


def test_duckdb_memory_limit_reaches_the_warehouse(tmp_path):
    from nudgeflow.warehouse import connect

    _load(tmp_path, "duckdb_memory_limit: 2GiB")
    with connect(tmp_path) as con:
        assert con.sql("select current_setting('memory_limit')").fetchall() == [("2.0 GiB",)]


def test_stale_data_is_refused_with_its_age():
    import datetime as dt

    from nudgeflow.steps.measure import check_freshness

    as_of = dt.datetime(2026, 3, 10)
    check_freshness(as_of - dt.timedelta(hours=71), as_of, 72)  # fresh enough
    check_freshness(as_of - dt.timedelta(days=300), as_of, 0)  # check off
    with pytest.raises(NudgeflowError, match=r"stale data: .* is 73 h before .* max_data_age_hours \(72\)"):
        check_freshness(as_of - dt.timedelta(hours=73), as_of, 72)
    with pytest.raises(NudgeflowError, match="no events landed"):
        check_freshness(None, as_of, 72)
