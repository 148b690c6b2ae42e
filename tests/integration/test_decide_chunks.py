"""The priors and sample steps make users' posteriors and draws a chunk of users at a time:
any chunk size gives the same tables as one chunk of every user."""

from __future__ import annotations

import datetime as dt

from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import priors, run, sample
from nudgeflow.warehouse import connect

START = dt.date(2026, 1, 5)


def tables(home, day):
    with connect(home) as con:
        return {
            t: con.sql(
                f"select * exclude (schedule_date) from decide.{t} where schedule_date = ? order by all", params=[day]
            ).fetchall()
            for t in ("posteriors", "samples")
        }


def test_any_chunk_of_users_gives_the_same_posteriors_and_draws(tmp_path, monkeypatch):
    home = tmp_path / "home"
    create_world(home, users=120, history_days=7, start=START, seed=5)
    day = START + dt.timedelta(days=7)
    run(home, day)  # one chunk: 100,000 users a chunk
    whole = tables(home, day)
    assert len(whole["posteriors"]) > 120 and len(whole["samples"]) > 120
    monkeypatch.setattr(priors, "CHUNK_USERS", 7)
    monkeypatch.setattr(sample, "CHUNK_USERS", 11)
    priors.step_priors(home, day)
    sample.step_sample(home, day)
    assert tables(home, day) == whole
