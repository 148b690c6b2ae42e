"""A tiny simulated world through a few days of closed loop: schedule, deliver, measure, learn."""

import datetime as dt

import duckdb
import pytest

from nudgeflow.lab.simulate import create_world, deliver
from nudgeflow.report import lift_figures
from nudgeflow.steps import run, step_ingest, step_measure
from nudgeflow.warehouse import publish

START = dt.date(2026, 1, 5)
HISTORY = 7
LOOP = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("loop")
    create_world(home, users=600, history_days=HISTORY, start=START, seed=3)
    first = START + dt.timedelta(days=HISTORY)
    results = []
    for i in range(LOOP):
        day = first + dt.timedelta(days=i)
        results.append(run(home, day, run_id=f"test-{i}"))
        deliver(home, day)
    end = first + dt.timedelta(days=LOOP)
    step_ingest(home, end)
    step_measure(home, end)
    publish(home)
    return home, first, results


def test_every_day_is_scheduled_and_delivered(world):
    home, first, results = world
    assert all(r["rows"] > 0 for r in results)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    sched = con.sql("select schedule_date, user_id, message_id, send_at from send_schedule").pl()
    landed = con.sql("select user_id, message_id, sent_ts from staging.stg_raw__sends").pl()
    holdout = con.sql("select user_id from marts.user_features where is_holdout").pl()
    con.close()
    assert sched["schedule_date"].n_unique() == LOOP
    delivered = sched.join(
        landed, left_on=["user_id", "message_id", "send_at"], right_on=["user_id", "message_id", "sent_ts"], how="inner"
    )
    assert delivered.height == sched.height
    assert sched.join(holdout, on="user_id").height == 0


def test_the_loop_learns_from_its_own_sends(world):
    home, first, _ = world
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    scored = con.execute(
        "select count(*) from marts.send_outcomes where is_scored and sent_ts >= ?", [first]
    ).fetchall()[0][0]
    outcomes = con.sql("select action_set, sum(trials) as trials from marts.action_outcomes group by action_set").pl()
    weights = con.sql("select event_name, weight from marts.event_weights").pl()
    con.close()
    assert scored > 0  # the first loop day's sends matured after 48h
    assert {"channel", "send_hour", "frequency"} <= set(outcomes["action_set"])
    assert any(s.startswith("label_") for s in outcomes["action_set"])
    w = dict(zip(weights["event_name"], weights["weight"]))
    assert w["purchase"] == max(w.values()) == w["add_to_cart"] > 0  # the goal weighs its best proxy
    assert abs(w.get("help_view", 0.0)) < w["add_to_cart"]  # an unrelated event weighs less


def test_report_figures(world):
    home, _, _ = world
    f = lift_figures(home, days=LOOP)
    assert f["users_agentic"] > f["users_holdout"] > 0
    for metric in ("goal_events", "gmv"):
        mean, lo, hi = f[metric]["difference"]
        assert lo <= mean <= hi
    from nudgeflow.lab.truth import truth_figures

    truth = truth_figures(home, days=LOOP)
    assert 0 <= truth["sign_agreement"]["share"] <= 1
    assert 0 <= truth["reward"]["p_if_negative"] <= 1 and 0 <= truth["reward"]["p_if_positive"] <= 1
    lift = truth["true_lift"]
    assert lift["holdout"][0] == 0  # the holdout gets no sends, so no true increment
    assert lift["agentic"][1] <= lift["agentic"][0] <= lift["agentic"][2]


def test_explain_replays_a_scheduled_decision(world):
    from nudgeflow.explain import explain

    home, first, _ = world
    day = first + dt.timedelta(days=LOOP - 1)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        "select user_id, message_id from send_schedule where schedule_date = ? order by user_id limit 3", [day]
    ).fetchall()
    con.close()
    assert rows
    for user_id, message_id in rows:
        r = explain(home, user_id, day)
        assert r["stored"]["message_id"] == message_id
        assert r["replay_matches_run"] and r["decision"]["message_id"] == message_id
        winner = [m for m in r["messages"] if m["eligible_at_chosen_hour"]][0]
        assert winner["message_id"] == message_id
        # the score is the sum of (theta - the set's average) over the message's actions, as listed
        assert winner["score"] == pytest.approx(sum(c["adds"] for c in winner["contributions"].values()))
        sets = {a["action_set"] for a in r["actions"]}
        assert {"channel", "send_hour", "frequency"} <= sets
        assert all(a["prior_alpha"] > 0 and a["alpha"] >= a["prior_alpha"] for a in r["actions"])
        assert any(line.startswith("message ") for line in r["why"])


def test_remeasure_rebuilds_a_warehouse_of_an_older_version(world, tmp_path):
    """An incremental mart built by an older version (here: event_weights_history without the
    within-user columns) stops the daily build with a hint; `nudgeflow remeasure` rebuilds it
    and rescores the same sends."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from nudgeflow.config import NudgeflowError

    home, first, _ = world
    copy = tmp_path / "home"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns(".dbt", ".airflow"))
    end = first + dt.timedelta(days=LOOP)
    con = duckdb.connect(str(copy / "warehouse.duckdb"))
    n_scored = con.sql("select count(*) from marts.send_outcomes").fetchall()[0][0]
    con.execute("alter table marts.event_weights_history drop column llr")
    con.close()
    with pytest.raises(NudgeflowError, match="remeasure"):
        step_measure(copy, end)
    cli = Path(sys.executable).with_name("nudgeflow")
    done = subprocess.run(
        [str(cli), "remeasure", "--home", str(copy), "--date", end.isoformat()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "remeasured as of" in done.stdout + done.stderr
    con = duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True)
    assert con.sql("select count(*) from marts.send_outcomes").fetchall()[0][0] == n_scored
    assert "llr" in [c[0] for c in con.sql("describe marts.event_weights_history").fetchall()]
    con.close()


def test_the_html_report_and_the_airflow_ui_pages(world, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from nudgeflow.html_report import write_html_report
    from nudgeflow.ui import app

    home, _, _ = world
    page = write_html_report(home, tmp_path / "report.html").read_text()
    assert page.count("<svg") >= 6  # over time, per channel, weights, effects, posteriors, messages, hours
    for row in ("Intent (add_to_cart)", "Conversion (purchase)", "GMV (relative increase per user)"):
        assert row in page
    monkeypatch.setenv("NUDGEFLOW_HOME", str(home))
    client = TestClient(app)
    assert client.get("/report").text.count("<svg") >= 6
    docs = client.get("/dbt-docs/index.html")
    assert docs.status_code == 200 and b"dbt" in docs.content
    assert client.get("/dbt-docs/secrets.txt").text.endswith("not found: secrets.txt</p>")
