"""Step 4a, sample: Thompson sampling, one theta ~ Beta(k alpha, k beta) per (user, action),
keyed by (seed, D, user, action); k = sampling_sharpness (see decide/sampling.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from nudgeflow.config import load_settings
from nudgeflow.decide.action_space import dense
from nudgeflow.decide.sampling import thompson_sample
from nudgeflow.decide.shard import day_keys
from nudgeflow.steps.progress import Progress, say
from nudgeflow.warehouse import connect, prune_history, read, replace_partition, require_partition

CHUNK_USERS = 100_000  # users sampled together: the step's memory is bound by a chunk
SAMPLES_SCHEMA = {
    "user_id": pl.String,
    "action_set": pl.String,
    "action": pl.String,
    "theta": pl.Float64,
    "schedule_date": pl.Date,
}


def step_sample(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """One keyed draw per (user, action) of D's posteriors, written to decide.samples, users
    in chunks of CHUNK_USERS (the draws are keyed, so the chunks do not change them)."""
    settings = load_settings(home)
    with connect(home) as con:
        user_ids = read(
            con, "select distinct user_id from decide.posteriors where schedule_date = ? order by user_id", [day]
        )["user_id"].to_list()
        if not user_ids:
            require_partition(con, "decide.posteriors", day, "sample")
        counts = {"draws": 0, "actions": 0}

        def chunks():
            if not user_ids:  # an empty home: the table, with no rows for D
                yield pl.DataFrame(schema=SAMPLES_SCHEMA)
            for lo in range(0, len(user_ids), CHUNK_USERS):
                hi = min(lo + CHUNK_USERS, len(user_ids))
                post = read(
                    con,
                    "select user_id, action_set, action, alpha, beta from decide.posteriors "
                    "where schedule_date = ? and user_id between ? and ? order by user_id, action_set, action",
                    [day, user_ids[lo], user_ids[hi - 1]],
                )
                alpha, beta, ids, actions = dense(post)
                # the same keyed draws as decide/shard.py's decide_shard makes when given no logged draws
                keys = day_keys(settings.seed, day, ids, actions)
                theta = thompson_sample(alpha, beta, keys(0), settings.sampling_sharpness)
                counts["draws"] += int(theta.size)
                counts["actions"] = len(actions)
                yield post.select("user_id", "action_set", "action").with_columns(
                    theta=pl.Series(theta.reshape(-1)), schedule_date=pl.lit(day)
                )

        replace_partition(con, "decide.samples", day, chunks())
        prune_history(con, "decide.samples", day, settings.decide_history_days)
    say(progress, f"sample: {counts['draws']} draws for {len(user_ids)} users x {counts['actions']} actions")
    return {"draws": counts["draws"]}
