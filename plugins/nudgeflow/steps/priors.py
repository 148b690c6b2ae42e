"""Step 3, priors: an empirical-Bayes Beta prior per (behaviour cell, action), fitted from the
cells' sums in `marts.prior_statistics`, and the Beta posterior of every (user, action), from
`marts.action_outcomes` (see decide/priors.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from nudgeflow.config import load_settings
from nudgeflow.decide.action_space import action_space
from nudgeflow.decide.priors import null_posterior, posterior, prior_from_statistics
from nudgeflow.steps.progress import Progress, say
from nudgeflow.warehouse import PATH_USERS, connect, prune_history, read, replace_partition

CHUNK_USERS = 100_000  # users whose posteriors are made together


def run_actions(con, settings) -> pl.DataFrame:
    """The action space of this run: the catalogue's channels and labels, the allowed send
    hours and the frequency buckets."""
    channels = read(con, "select distinct channel from marts.catalogue")["channel"].to_list()
    labels = read(con, "select distinct action_set, action from marts.catalogue_labels")
    return action_space(channels, labels, settings.send_hours, settings.frequency_bucket_hours)


def step_priors(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Empirical-Bayes prior per (cell, action) and the Beta posterior of every (user, action)."""
    settings = load_settings(home)
    with connect(home) as con:
        # the priors' cells: the behaviour that predicts preferences, or the matching cells
        cell = "prior_cell" if settings.prior_cells == "behaviour" else "cell"
        users = read(
            con,
            f"select user_id, {cell} as cell, cell as matching_cell from marts.user_features "
            "where not is_holdout order by user_id",
        )
        actions = run_actions(con, settings)
        # the fit reads the cells' sums (a cells x actions table), not the users, in a fixed
        # order: the fit's float sums then give the same bits on every rerun
        stats = read(
            con,
            "select cell, action_set, action, n_users, trials, successes, sum_sq "
            "from marts.prior_statistics where cells = ? order by cell, action_set, action",
            [settings.prior_cells],
        )
        prior = prior_from_statistics(
            stats, max_strength=settings.prior_max_strength, min_users=settings.prior_min_users
        )
        # the measured null (placebos of the user's cell): send-or-wait's reference
        nulls = read(
            con,
            "select cell, sum(successes) as successes, sum(placebos) as placebos from marts.null_rewards "
            "where sent_date >= cast(? as date) - ? * interval 1 day group by cell",
            [day, settings.null_window_days],
        )

        # the users whose posteriors are kept for every date (the report's posterior paths)
        con.register("candidates", users.select("user_id"))
        path_users = con.sql(f"select user_id from candidates order by md5(user_id) limit {PATH_USERS}").pl()
        con.unregister("candidates")
        paths = []

        def chunks():
            """The posteriors of CHUNK_USERS users at a time (the step's memory is bound by a
            chunk, not by users x actions), with their evidence read for those users only."""
            for lo in range(0, max(users.height, 1), CHUNK_USERS):  # one (empty) chunk when no users
                part = users.slice(lo, CHUNK_USERS)
                # the evidence with forgetting (older sends weigh less; see action_outcomes)
                outcomes = read(
                    con,
                    "select user_id, action_set, action, weighted_successes as successes, "
                    "weighted_trials as trials from marts.action_outcomes where user_id between ? and ?",
                    [part["user_id"].min(), part["user_id"].max()],
                )
                post = posterior(part.drop("matching_cell"), actions, prior, outcomes)
                null = null_posterior(
                    part.select("user_id", cell="matching_cell"), nulls, strength=settings.prior_max_strength
                )
                rows = pl.concat([post, null], how="vertical_relaxed").with_columns(schedule_date=pl.lit(day))
                paths.append(rows.join(path_users, on="user_id", how="semi"))
                yield rows

        replace_partition(con, "decide.priors", day, prior.with_columns(schedule_date=pl.lit(day)))
        replace_partition(con, "decide.posteriors", day, chunks())
        prune_history(con, "decide.posteriors", day, settings.decide_history_days)
        replace_partition(con, "decide.posterior_paths", day, pl.concat(paths))
    say(
        progress,
        f"priors: {prior.height} (cell, action) priors; posteriors for {users.height} users x {actions.height} actions",
    )
    return {"users": users.height, "actions": actions.height, "priors": prior.height}
