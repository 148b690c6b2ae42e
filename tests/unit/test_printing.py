"""Every value is printed literally: labels, paths and dates that look like rich markup."""

import pytest

from nudgeflow.cli import _fail
from nudgeflow.config import NudgeflowError, load_settings
from nudgeflow.explain import print_explanation


def test_explain_prints_markup_like_labels_literally(capsys):
    action = {
        "action_set": "label_tone",
        "action": "[/y]",
        "prior_alpha": 1.0,
        "prior_beta": 1.0,
        "prior_source": "cell",
        "successes": 0.0,
        "trials": 0.0,
        "posterior_mean": 0.5,
        "theta": 0.4,
    }
    message = {
        "message_id": "[bold]m1",
        "channel": "push",
        "eligible_at_chosen_hour": True,
        "eligible_hours": [9],
        "score": 0.1,
    }
    print_explanation(
        {
            "user_id": "[/u]",
            "date": "2026-01-10",
            "cell": "c",
            "stored": None,
            "actions": [action],
            "messages": [message],
            "why": ["because [/x]"],
        }
    )
    out = capsys.readouterr().out
    assert "[/y]" in out and "[bold]m1" in out and "user [/u]" in out and "because [/x]" in out


def test_the_error_line_prints_markup_literally(capsys):
    with pytest.raises(SystemExit) as done:
        _fail("home folder /tmp/[/x] does not exist")
    assert done.value.code == 1
    assert "error: home folder /tmp/[/x] does not exist" in capsys.readouterr().err


def test_non_utf8_settings_are_one_line_errors(tmp_path):
    (tmp_path / "nudgeflow.yml").write_bytes(b"goal_event: caf\xe9\n")
    with pytest.raises(NudgeflowError, match="not UTF-8 text"):
        load_settings(tmp_path)


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere():
    """dbt's nodes are counted: a live bar on a terminal (gone when done), plain lines in a log."""
    import io

    from rich.console import Console

    from nudgeflow.steps.progress import TerminalProgress, count

    piped = io.StringIO()
    plain = TerminalProgress(Console(file=piped, force_terminal=False, width=100))
    for i in range(1, 6):
        plain.count("dbt build", i, 5)
    plain("dbt build: 5 nodes ok")
    lines = piped.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "dbt build: 1/5 nodes",
        "dbt build: 5/5 nodes",
        "dbt build: 5 nodes ok",
    ]
    assert "\x1b" not in piped.getvalue()  # no colour codes when not a terminal

    tty = io.StringIO()
    live = TerminalProgress(Console(file=tty, force_terminal=True, width=100))
    for i in range(1, 6):
        live.count("dbt build", i, 5)
    assert "━" in tty.getvalue() and not live._bars  # a bar was drawn and is finished

    said: list[str] = []
    last: dict = {}
    count(said.append, "dbt build", 1, 3, last=last)
    count(said.append, "dbt build", 2, 3, last=last)  # within 10 s: not repeated
    count(said.append, "dbt build", 3, 3, last=last)  # the end is always said
    count(None, "dbt build", 3, 3, last=last)  # silence stays silent
    assert said == ["dbt build: 1/3 nodes", "dbt build: 3/3 nodes"]
