"""The reward's error by gap bucket (issue "Decisions that earn more than a rule", step 1).

Does a send soon after the user's previous send score below its true effect? A send after a
short gap has the previous send's effect in its pre-window, which would lower its measured
ΔY and teach the policy to wait too long. Measured here against the simulator's truth, on
the logs of a uniformly random policy (every eligible user gets a random message at a random
hour every day, so every gap occurs): per bucket of the gap since the user's previous send,
the sends, their mean true effect, P(reward = 1) overall, given a positive and a negative true
effect, and for the sends whose true effect is near zero (|true effect| < ``null_band``): the
reward an ineffective send gets, i.e. the measured null of that bucket.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from nudgeflow.config import Settings
from nudgeflow.decide.action_space import frequency_labels
from nudgeflow.lab.harness.loop import ensure_world, epoch_us, run_policy
from nudgeflow.lab.harness.policies import make_policy


def gap_bias(
    root: Path,
    *,
    world: str = "default",
    seeds: int = 3,
    users: int = 1000,
    history_days: int = 14,
    days: int = 28,
    null_band: float = 0.002,
    send_prob: float = 0.5,
) -> pl.DataFrame:
    """One row per (reward, gap bucket) ('first' for a user's first send), pooled over seeds:
    reward 'unadjusted' is the difference in differences alone (the production reward), 'adjusted'
    less the placebos' gap adjustment (the reward with gap_adjustment: true). Both come from the
    same logs: the random policy sends to each eligible user with probability ``send_prob``
    per day, so that every gap occurs and users messaged yesterday but not today exist (the
    placebos of short gaps)."""
    frames = []
    for seed in range(seeds):
        home = ensure_world(Path(root), world, seed, users, history_days)
        run = run_policy(home, make_policy("random", send_prob=send_prob), days, Settings(placebo_sends=5000))
        sim, rows = run["sim"], run["loop_sends"]
        sim.meas.score(epoch_us(sim.first_day + dt.timedelta(days=days)))  # every matured loop send
        scored = ~np.isnan(sim.meas.reward[rows])
        unadjusted = sim.meas.delta_y[rows] + sim.meas.gap_adjustment[rows]
        adjusted = unadjusted - sim.meas.measured_adjustment[rows]
        acts = sim.meas.send_actions()
        labels = np.array(frequency_labels(sim.s.frequency_bucket_hours), dtype=object)[acts["bucket"][rows]]
        labels = np.where(np.isnan(acts["gap"][rows]), "first", labels)
        for name, r in (("unadjusted", (unadjusted > 0).astype(float)), ("adjusted", (adjusted > 0).astype(float))):
            frames.append(
                pl.DataFrame(
                    {
                        "reward": name,
                        "bucket": labels[scored].tolist(),
                        "r": r[scored],
                        "true_effect": sim.true_effect[rows][scored],
                    }
                )
            )
    data = pl.concat(frames)
    te, r = pl.col("true_effect"), pl.col("r")
    return (
        data.group_by("reward", "bucket")
        .agg(
            sends=pl.len(),
            mean_true_effect=te.mean(),
            p_reward=r.mean(),
            p_reward_if_positive=r.filter(te > 0).mean(),
            p_reward_if_negative=r.filter(te < 0).mean(),
            null_sends=(te.abs() < null_band).sum(),
            p_reward_null=r.filter(te.abs() < null_band).mean(),
        )
        .with_columns(
            discrimination=pl.col("p_reward_if_positive") - pl.col("p_reward_if_negative"),
            se_null=(pl.col("p_reward_null") * (1 - pl.col("p_reward_null")) / pl.col("null_sends")).sqrt(),
        )
        .sort("reward", "bucket", descending=[True, False])
    )
