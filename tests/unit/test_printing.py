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
