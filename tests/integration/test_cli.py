"""The CLI fails with one clear line, never a traceback, on the mistakes users make."""

import subprocess
import sys

import pytest

from nudgeflow.config import NudgeflowError, Settings, load_settings, parse_date


def nudgeflow(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "nudgeflow.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _assert_one_line_error(done, fragment, code=1):
    assert done.returncode == code
    assert "Traceback" not in done.stderr
    lines = [l for l in done.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:") and fragment in lines[0]


def test_missing_home(tmp_path):
    _assert_one_line_error(nudgeflow("run", "--home", str(tmp_path / "nope"), "--date", "2026-01-19"), "does not exist")


def test_malformed_settings(tmp_path):
    (tmp_path / "nudgeflow.yml").write_text("neighbours: [1, 2\n")
    _assert_one_line_error(nudgeflow("run", "--home", str(tmp_path), "--date", "2026-01-19"), "not valid YAML")
    (tmp_path / "nudgeflow.yml").write_text("neighbours: many\n")
    _assert_one_line_error(nudgeflow("run", "--home", str(tmp_path), "--date", "2026-01-19"), "neighbours")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--home", "."], "Missing option '--date'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["run", "--bogus"], "No such option: --bogus"),
        (["simulate", "--users", "abc"], "Invalid value for '--users'"),
    ],
)
def test_usage_errors_are_one_line(args, fragment):
    _assert_one_line_error(nudgeflow(*args), fragment, code=2)


def test_markup_like_values_are_printed_literally(tmp_path):
    _assert_one_line_error(nudgeflow("run", "--home", str(tmp_path / "[/x]"), "--date", "2026-01-19"), "/[/x]")
    _assert_one_line_error(nudgeflow("run", "--home", str(tmp_path), "--date", "[/x]"), "'[/x]'")


def test_unknown_date_format(tmp_path):
    _assert_one_line_error(nudgeflow("run", "--home", str(tmp_path), "--date", "19/01/2026"), "YYYY-MM-DD")


def test_settings_defaults_and_overrides(tmp_path):
    assert load_settings(tmp_path) == Settings()
    (tmp_path / "nudgeflow.yml").write_text("goal_event: signup\nsend_hours: [9, 10]\nhalf_life_hours: 12\n")
    s = load_settings(tmp_path)
    assert (s.goal_event, s.send_hours, s.half_life_hours, s.window_hours) == ("signup", (9, 10), 12.0, 48.0)
    assert "as_of" not in s.dbt_vars()  # the as-of time travels in $NUDGEFLOW_AS_OF


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("holdout_fraction: 1.5\n", "holdout_fraction"),
        ("send_hours: [25]\n", "send_hours"),
        ("colour: blue\n", "unknown setting"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_invalid_settings_are_named(tmp_path, text, fragment):
    (tmp_path / "nudgeflow.yml").write_text(text)
    with pytest.raises(NudgeflowError, match=fragment):
        load_settings(tmp_path)


def test_parse_date():
    assert str(parse_date("2026-01-19")) == "2026-01-19"
    for bad in ("2026-1-9", "tomorrow", "2026-13-01"):
        with pytest.raises(NudgeflowError):
            parse_date(bad)


def test_an_empty_home_is_a_one_line_message(tmp_path):
    """No landed data at all: the run says there is nothing to plan from (the freshness check),
    no traceback."""
    done = nudgeflow("run", "--home", str(tmp_path), "--date", "2026-01-19")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # after the progress lines: the error, one line
    assert last.startswith("error: no events landed before 2026-01-19 00:00 UTC"), done.stderr
