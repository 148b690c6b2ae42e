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
from nudgeflow.warehouse import connect, read, replace_partition


def step_sample(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """One keyed draw per (user, action) of D's posteriors, written to decide.samples."""
    settings = load_settings(home)
    with connect(home) as con:
        post = read(
            con,
            "select user_id, action_set, action, alpha, beta from decide.posteriors "
            "where schedule_date = ? order by user_id, action_set, action",
            [day],
        )
        alpha, beta, user_ids, actions = dense(post)
        # the same keyed draws as decide/shard.py's decide_shard makes when given no logged draws
        keys = day_keys(settings.seed, day, user_ids, actions)
        theta = thompson_sample(alpha, beta, keys(0), settings.sampling_sharpness)
        samples = post.select("user_id", "action_set", "action").with_columns(
            theta=pl.Series(theta.reshape(-1)), schedule_date=pl.lit(day)
        )
        replace_partition(con, "decide.samples", day, samples)
    say(progress, f"sample: {theta.size} draws for {len(user_ids)} users x {len(actions)} actions")
    return {"draws": int(theta.size)}
