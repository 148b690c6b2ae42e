"""`nudgeflow explain --user U --date D`: why the policy chose what it chose for one user and day.

Everything comes from what the run for D stored (decide.posteriors, decide.samples,
decide.choices, send_schedule) plus the eligibility rebuilt from the marts with the same code
as the run (steps/match.py's build_options, decide/eligibility.py's guardrails), so the
explanation replays the decision rather than describing it: the sampled values are the ones the run drew.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from nudgeflow.config import NudgeflowError, load_settings
from nudgeflow.decide.action_space import frequency_labels
from nudgeflow.decide.matching import combination_value, decide, message_scores, set_averages
from nudgeflow.decide.priors import NULL_ACTION
from nudgeflow.warehouse import connect, read, table_exists


def explain(home: Path, user_id: str, day: dt.date) -> dict:
    """The posterior, prior and sampled value of every action, the eligible messages with their
    scores, and the decision of the run for D (replayed and compared with the stored one)."""
    from nudgeflow.steps.match import build_options

    settings = load_settings(home)
    with connect(home, published=True) as con:
        if not table_exists(con, "decide", "samples"):
            raise NudgeflowError("no decisions in this warehouse yet: run `nudgeflow run` first")
        frame = read(
            con,
            "select s.action_set, s.action, s.theta, p.cell, p.prior_alpha, p.prior_beta, "
            "p.prior_source, p.successes, p.trials, p.alpha, p.beta "
            "from decide.samples as s join decide.posteriors as p "
            "using (schedule_date, user_id, action_set, action) "
            "where schedule_date = ? and user_id = ? order by action_set, action",
            [day, user_id],
        )
        if frame.is_empty():
            known = read(con, "select count(*) as n from decide.samples where schedule_date = ?", [day])["n"][0]
            if not known:
                latest = read(con, "select max(schedule_date) as d from decide.samples")["d"][0]
                raise NudgeflowError(
                    f"no run for {day} in the published snapshot: it holds the decisions of the latest "
                    f"planned date ({latest})"
                )
            raise NudgeflowError(f"user {user_id!r} was not a candidate on {day} (unknown, or in the global holdout)")
        stored = read(
            con,
            "select message_id, channel, send_at, actions, propensity from decide.choices "
            "where schedule_date = ? and user_id = ?",
            [day, user_id],
        )
        actions = list(zip(frame["action_set"].to_list(), frame["action"].to_list()))
        opts, catalogue, label_sets = build_options(con, day, settings, [user_id], actions)

    theta = frame["theta"].to_numpy()[None, :]
    send, hour, message = decide(theta, opts)
    hours = list(settings.send_hours)
    feasible = opts.eligible[0].any(axis=0)
    theta_hour = theta[0, opts.hour_actions]
    buckets = frequency_labels(settings.frequency_bucket_hours)
    theta_freq = theta[0, opts.frequency_actions]
    best_hour = int(np.where(feasible, theta_hour, -np.inf).argmax()) if feasible.any() else -1
    scores = message_scores(theta, opts.message_actions)[0]
    averages = set_averages(theta, opts.message_actions)[0]  # per message action set

    messages = []
    for m, row in enumerate(catalogue.iter_rows(named=True)):
        parts = {
            ("channel" if s == 0 else label_sets[s - 1]): (str(opts.action[a]), float(theta[0, a]), float(averages[s]))
            for s, a in enumerate(opts.message_actions[m])
            if a >= 0
        }
        messages.append(
            {
                "message_id": row["message_id"],
                "channel": row["channel"],
                "score": float(scores[m]),
                "eligible_at_chosen_hour": bool(best_hour >= 0 and opts.eligible[0, m, best_hour]),
                "eligible_hours": [hours[h] for h in np.nonzero(opts.eligible[0, m])[0]],
                "contributions": {
                    k: {"action": v[0], "theta": v[1], "set_average": v[2], "adds": v[1] - v[2]}
                    for k, v in parts.items()
                },
            }
        )
    messages.sort(key=lambda r: (not r["eligible_at_chosen_hour"], -r["score"]))

    result = {
        "user_id": user_id,
        "date": day.isoformat(),
        "cell": frame["cell"][0],
        "actions": frame.with_columns(
            prior_mean=pl.col("prior_alpha") / (pl.col("prior_alpha") + pl.col("prior_beta")),
            posterior_mean=pl.col("alpha") / (pl.col("alpha") + pl.col("beta")),
        ).to_dicts(),
        "hours": [
            {"hour": h, "theta": float(theta_hour[i]), "feasible": bool(feasible[i])} for i, h in enumerate(hours)
        ],
        "chosen_hour": hours[best_hour] if best_hour >= 0 else None,
        "frequency": None,
        "null": None,
        "messages": messages,
        "decision": {
            "send": bool(send[0]),
            "message_id": catalogue["message_id"][int(message[0])] if send[0] else None,
            "send_hour": hours[int(hour[0])] if send[0] else None,
        },
        "stored": stored.to_dicts()[0] if stored.height else None,
    }
    if best_hour >= 0:
        b = int(opts.gap_bucket[0, best_hour])
        result["frequency"] = {
            "bucket": buckets[b],
            "theta": float(theta_freq[b]),
            "best_longer": float(theta_freq[b:].max()),
            "buckets": {k: float(v) for k, v in zip(buckets, theta_freq)},
        }
        null_idx = actions.index(NULL_ACTION) if NULL_ACTION in actions else -1
        if null_idx >= 0:
            best_message = np.array([int(np.where(opts.eligible[0, :, best_hour], scores, -np.inf).argmax())])
            row = frame.row(null_idx, named=True)
            result["null"] = {
                "used": opts.null_action >= 0,
                "theta": float(theta[0, null_idx]),
                "value": float(
                    combination_value(theta, opts, np.array([best_hour]), theta_freq[None, b], best_message)[0]
                ),
                "placebos": float(row["trials"]),
                "successes": float(row["successes"]),
                "posterior_mean": float(row["alpha"] / (row["alpha"] + row["beta"])),
            }
    replayed = result["decision"]["message_id"]
    stored_id = result["stored"]["message_id"] if result["stored"] else None
    result["replay_matches_run"] = replayed == stored_id
    result["why"] = _why(result)
    return result


def _why(r: dict) -> list[str]:
    lines = []
    feasible = [h for h in r["hours"] if h["feasible"]]
    if not feasible:
        return [
            "no message was eligible at any allowed hour (consent, country, validity, repeat "
            "and spacing rules), so nothing could be sent"
        ]
    ranked = sorted(feasible, key=lambda h: -h["theta"])
    runner = f", ahead of {ranked[1]['hour']}:00 ({ranked[1]['theta']:.3f})" if len(ranked) > 1 else ""
    lines.append(
        f"send hour {r['chosen_hour']}:00 local had the highest sampled value "
        f"({ranked[0]['theta']:.3f}) of the {len(feasible)} hours with an eligible message{runner}"
    )
    f, null = r["frequency"], r["null"]
    if null is not None:
        verdict = ("so it sends today" if null["value"] > null["theta"] else "so it waits") if null["used"] else ""
        lines.append(
            f"measured null: today's best combination (hour, frequency bucket {f['bucket']}, the message's "
            f"channel and labels) has a mean sampled value of {null['value']:.3f}; a send that does nothing "
            f"is rewarded at a rate drawn at {null['theta']:.3f} ({null['successes']:.0f} successes in "
            f"{null['placebos']:.0f} placebos of this cell, mean {null['posterior_mean']:.3f} with the "
            f"population prior)" + (f", {verdict}" if verdict else " (send_rule 'longer': shown, not used)")
        )
    if null is None or not null["used"]:
        verdict = "so it sends today" if f["theta"] >= f["best_longer"] else "so it waits for a longer gap"
        lines.append(
            f"frequency: a send now falls in bucket {f['bucket']} with value {f['theta']:.3f}; the best "
            f"bucket waiting could still reach has {f['best_longer']:.3f}, {verdict}"
        )
    eligible = [m for m in r["messages"] if m["eligible_at_chosen_hour"]]
    if r["decision"]["send"] and eligible:
        win = eligible[0]
        detail = ", ".join(f"{k}={v['action']} ({v['adds']:+.3f})" for k, v in win["contributions"].items())
        second = (
            f"; the runner-up {eligible[1]['message_id']} scored {eligible[1]['score']:.3f}"
            if len(eligible) > 1
            else "; it was the only eligible message"
        )
        lines.append(
            f"message {win['message_id']} scored {win['score']:.3f} = sum of (theta - its set's average theta) over "
            f"its actions: {detail}{second}"
        )
    if not r["replay_matches_run"]:
        lines.append(
            "note: replaying with today's marts does not give the stored choice; the marts have "
            "moved on since that run (a later run changed consents, catalogue or send history)"
        )
    return lines


def print_explanation(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    T = Text  # every value printed literally: a label like [/y] is not markup
    stored = r["stored"]
    head = f"user {r['user_id']} on {r['date']} (cell {r['cell']}): " + (
        f"scheduled {stored['message_id']} on {stored['channel']} at {stored['send_at']} UTC, "
        f"propensity {stored['propensity']:.3f}"
        if stored
        else "nothing scheduled"
    )
    console.print(T(head), highlight=False)
    table = Table(title="Action sets: prior (empirical Bayes) + own evidence = posterior; Thompson draw")
    for col in ("set", "action", "prior a/b", "prior from", "own s/n", "posterior mean", "theta"):
        table.add_column(col, justify="right" if col not in ("set", "action", "prior from") else "left")
    for a in r["actions"]:
        table.add_row(
            T(a["action_set"]),
            T(a["action"]),
            f"{a['prior_alpha']:.2f}/{a['prior_beta']:.2f}",
            T(a["prior_source"]),
            f"{a['successes']:.0f}/{a['trials']:.0f}",
            f"{a['posterior_mean']:.3f}",
            f"{a['theta']:.3f}",
        )
    console.print(table)
    msgs = Table(title="Messages: score = sum over channel and labels of (theta - the set's average theta)")
    for col in ("message", "channel", "eligible now", "eligible hours", "score"):
        msgs.add_column(col)
    for m in r["messages"]:
        msgs.add_row(
            T(m["message_id"]),
            T(m["channel"]),
            "yes" if m["eligible_at_chosen_hour"] else "no",
            ",".join(map(str, m["eligible_hours"])) or "-",
            f"{m['score']:.3f}",
        )
    console.print(msgs)
    for line in r["why"]:
        console.print(T(f"- {line}"), highlight=False)
