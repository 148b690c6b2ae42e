"""Step 3, priors and posteriors: a Beta-Bernoulli model of "did a send with this action work?".

For every user u, action set s and action a, the reward of a matured send is 1 when its
difference-in-differences effect was positive. The posterior is

    theta_{u,s,a} ~ Beta(alpha0_{c(u),s,a} + successes_{u,s,a}, beta0_{c(u),s,a} + failures_{u,s,a})

where (alpha0, beta0) is an empirical-Bayes prior fitted on the users of u's behaviour cell
c(u) (user-based collaborative filtering: marts.user_features.prior_cell, the local activity
hour's bin x the half by activity, or the matching cell with prior_cells 'matching'), or on
all users when the cell is thin. The cell's
mean is shrunk to the population's as far as cells do not differ, and the strength
alpha0 + beta0 is the fitted one, capped (``prior_max_strength``) for when the data show no
difference between users: then a user's own evidence outweighs the prior after that many sends.
"""

from __future__ import annotations

import numpy as np
import polars as pl

POPULATION = "__population__"
# cap on the strength of the cells' Beta around the population mean: at the cap, a cell needs
# about a million trials before its own mean moves its prior
CELL_MAX_STRENGTH = 1e6


def sufficient_statistics(outcomes: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """What a beta-binomial fit needs of the users with trials (n_i > 0) of each group:
    n_users, trials = sum n_i, successes = sum s_i and sum_sq = sum s_i^2 / n_i. Sums, so
    shards or engines can add them up (marts.prior_statistics computes them in SQL)."""
    return (
        outcomes.filter(pl.col("trials") > 0)
        .group_by(by)
        .agg(
            pl.len().alias("n_users"),
            pl.col("trials").sum(),
            pl.col("successes").sum(),
            (pl.col("successes") ** 2 / pl.col("trials")).sum().alias("sum_sq"),
        )
    )


def fit_beta_binomial(outcomes: pl.DataFrame, by: list[str], max_strength: float) -> pl.DataFrame:
    """Method-of-moments Beta(alpha, beta) per group from per-user (successes, trials): see
    :func:`fit_from_statistics`."""
    return fit_from_statistics(sufficient_statistics(outcomes, by), by, max_strength)


def fit_from_statistics(stats: pl.DataFrame, by: list[str], max_strength: float) -> pl.DataFrame:
    """Method-of-moments Beta(alpha, beta) per group from its :func:`sufficient_statistics`.

    With p_i = s_i / n_i and mu = (sum s + 1/2) / (sum n + 1), a beta-binomial gives
    E[sum n_i (p_i - mu)^2] = mu (1 - mu) sum [1 + (n_i - 1) rho], rho = 1 / (alpha + beta + 1),
    so rho = (sum n_i (p_i - mu)^2 / (mu (1 - mu)) - (G - 1)) / sum (n_i - 1) over the G users,
    where sum n_i (p_i - mu)^2 = sum s_i^2 / n_i - 2 mu sum s_i + mu^2 sum n_i.
    The strength M = alpha + beta = 1/rho - 1 is capped at max_strength (also when rho <= 0 or
    is not identified, i.e. every user has one trial) and floored at 1 (no U-shaped priors
    that would make a cold-start user's first draws all-or-nothing); alpha = mu M, beta = (1 - mu) M.
    Returns the groups with alpha, beta, mean, strength, n_users, trials.
    """
    fitted = (
        stats.with_columns(mean=(pl.col("successes") + 0.5) / (pl.col("trials") + 1.0))
        .with_columns(
            ss=pl.col("sum_sq") - 2 * pl.col("mean") * pl.col("successes") + pl.col("mean") ** 2 * pl.col("trials"),
            extra_trials=pl.col("trials") - pl.col("n_users"),
        )
        .with_columns(
            rho=pl.when(pl.col("extra_trials") > 0)
            .then(
                (pl.col("ss") / (pl.col("mean") * (1 - pl.col("mean"))) - (pl.col("n_users") - 1))
                / pl.col("extra_trials")
            )
            .otherwise(None)
        )
        .with_columns(
            strength=pl.when(pl.col("rho") > 1.0 / (max_strength + 1.0))
            .then(1.0 / pl.col("rho").clip(upper_bound=1.0 - 1e-9) - 1.0)
            .otherwise(max_strength)
            .clip(lower_bound=min(1.0, max_strength), upper_bound=max_strength)
        )
        .with_columns(
            alpha=pl.col("mean") * pl.col("strength"),
            beta=(1 - pl.col("mean")) * pl.col("strength"),
        )
    )
    return fitted.select(*by, "alpha", "beta", "mean", "strength", "n_users", "trials")


def empirical_bayes_prior(
    outcomes: pl.DataFrame, cells: pl.DataFrame, *, max_strength: float, min_users: int
) -> pl.DataFrame:
    """Prior per (cell, action_set, action) from the users of the cell, else from all users:
    :func:`prior_from_statistics` of the per-user outcomes (user_id, action_set, action,
    successes, trials) of the users of ``cells`` (user_id, cell)."""
    with_cell = outcomes.join(cells.select("user_id", "cell"), on="user_id", how="inner")
    stats = sufficient_statistics(with_cell, ["cell", "action_set", "action"])
    return prior_from_statistics(stats, max_strength=max_strength, min_users=min_users)


def prior_from_statistics(stats: pl.DataFrame, *, max_strength: float, min_users: int) -> pl.DataFrame:
    """Prior per (cell, action_set, action) from the cells' :func:`sufficient_statistics`
    (one row per cell and action: the table of cells x actions, small at any number of users).

    A (cell, action) fitted on fewer than `min_users` users with evidence takes the population
    prior of the action; an action nobody has tried takes Beta(1, 1) (filled by `posterior`).

    A cell's mean is itself shrunk towards the population mean, by as much as the cells
    differ (a second, cell-level beta-binomial): with the cell's pooled S_c successes in T_c
    trials and K the strength of the cells' own Beta (method of moments over the cells,
    capped at CELL_MAX_STRENGTH), the cell's prior mean is (S_c + K mu) / (T_c + K). Cells
    whose differences are within sampling noise (K large) all get the population mean, so
    noise in a thin cell does not become a prior; cells that really differ keep their means.
    The strength alpha + beta of a cell's prior is its users' own (capped at max_strength).
    """
    actions = ["action_set", "action"]
    by_cell = fit_from_statistics(stats, ["cell", *actions], max_strength)
    population = fit_from_statistics(
        stats.group_by(actions).agg(pl.col("n_users", "trials", "successes", "sum_sq").sum()), actions, max_strength
    )
    cell_totals = stats.select("cell", *actions, "successes", "trials")
    between = fit_beta_binomial(cell_totals, actions, CELL_MAX_STRENGTH)
    keep = (
        by_cell.filter(pl.col("n_users") >= min_users)
        .join(
            cell_totals.rename({"successes": "cell_successes", "trials": "cell_trials"}),
            on=["cell", *actions],
        )
        .join(
            between.select(*actions, pl.col("mean").alias("mu"), pl.col("strength").alias("k")),
            on=actions,
        )
        .with_columns(
            mean=(pl.col("cell_successes") + pl.col("k") * pl.col("mu")) / (pl.col("cell_trials") + pl.col("k"))
        )
        .with_columns(
            alpha=pl.col("mean") * pl.col("strength"),
            beta=(1 - pl.col("mean")) * pl.col("strength"),
            source=pl.lit("cell"),
        )
    )
    return pl.concat(
        [keep, population.with_columns(cell=pl.lit(POPULATION), source=pl.lit("population"))],
        how="diagonal_relaxed",
    ).select("cell", "action_set", "action", "alpha", "beta", "n_users", "trials", "source")


def posterior(users: pl.DataFrame, actions: pl.DataFrame, prior: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """Beta posterior of every (user, action) pair: prior of the user's cell plus own evidence.

    users: user_id, cell. actions: action_set, action (the options of this run).
    Returns user_id, action_set, action, prior_alpha, prior_beta, prior_source,
    successes, trials, alpha, beta: one row per user and action, users in their order and
    actions in theirs. The prior is the cell's, else the population's, else Beta(1, 1).

    Made as users x actions arrays: the cells, the actions and the outcomes' users are coded
    once as integers (the users x actions grid joined on string keys took 0.35 s against 0.17 s
    at 100,000 users x 33 actions; docs/benchmarks.md, 2026-12-04).
    """
    n_u, n_a = users.height, actions.height
    action_keys = actions.select("action_set", "action").with_row_index("a")
    cells = users.select(pl.col("cell").unique(maintain_order=True)).with_row_index("row")
    user_cell = users.select("cell").join(cells, on="cell", how="left", nulls_equal=True)["row"].to_numpy()

    def place(rows: pl.DataFrame, size: int, columns: list[str]) -> list[np.ndarray]:
        """(size, n_a) arrays of ``columns`` of ``rows`` placed by their integer ``row`` and
        their action (NaN where none is)."""
        coded = rows.join(action_keys, on=["action_set", "action"], how="inner")
        at = coded["row"].cast(pl.Int64).to_numpy() * n_a + coded["a"].cast(pl.Int64).to_numpy()
        out = []
        for column in columns:
            values = np.full(size * n_a, np.nan)
            values[at] = coded[column].cast(pl.Float64).to_numpy()
            out.append(values.reshape(size, n_a))
        return out

    cell_prior = prior.filter(pl.col("cell") != POPULATION).join(cells, on="cell")
    cell_alpha, cell_beta = place(cell_prior, cells.height, ["alpha", "beta"])
    pop_prior = prior.filter(pl.col("cell") == POPULATION).with_columns(row=pl.lit(0))
    pop_alpha, pop_beta = place(pop_prior, 1, ["alpha", "beta"])
    own = outcomes.join(users.select("user_id").with_row_index("row"), on="user_id")
    successes, trials = place(own, n_u, ["successes", "trials"])

    alpha_c, beta_c = cell_alpha[user_cell], cell_beta[user_cell]  # (U, A): the user's cell's prior
    has_cell, has_pop = ~np.isnan(alpha_c), np.broadcast_to(~np.isnan(pop_alpha), (n_u, n_a))
    prior_alpha = np.where(has_cell, alpha_c, np.where(has_pop, pop_alpha, 1.0)).reshape(-1)
    prior_beta = np.where(has_cell, beta_c, np.where(has_pop, pop_beta, 1.0)).reshape(-1)
    successes, trials = np.nan_to_num(successes, nan=0.0).reshape(-1), np.nan_to_num(trials, nan=0.0).reshape(-1)
    rows_u, rows_a = np.repeat(np.arange(n_u), n_a), np.tile(np.arange(n_a), n_u)
    source = pl.Series(np.where(has_cell, 0, np.where(has_pop, 1, 2)).reshape(-1).astype(np.uint32))
    return pl.DataFrame(
        {
            "user_id": users["user_id"].gather(rows_u),
            "cell": users["cell"].gather(rows_u),
            "action_set": actions["action_set"].gather(rows_a),
            "action": actions["action"].gather(rows_a),
            "prior_alpha": prior_alpha,
            "prior_beta": prior_beta,
            "prior_source": pl.Series(["cell", "population", "uniform"]).gather(source),
            "successes": successes,
            "trials": trials,
            "alpha": prior_alpha + successes,
            "beta": prior_beta + trials - successes,
        }
    )


NULL_ACTION = ("null", "placebo")


def null_posterior(users: pl.DataFrame, nulls: pl.DataFrame, *, strength: float) -> pl.DataFrame:
    """The measured null of every user as one more (action_set, action) = NULL_ACTION row of
    the posteriors: the reward rate of a send that does nothing, from the placebos of the
    user's cell (marts.null_rewards over the last null_window_days).

    users: user_id, cell. nulls: cell, successes, placebos. The population's rate p0 = (S + 1)
    / (N + 2) over all placebos is the prior, with strength ``strength`` (the EB priors' cap):
    Beta(strength p0 + S_c, strength (1 - p0) + N_c - S_c) for a cell with S_c successes in
    N_c placebos. Same columns as :func:`posterior`; empty when there are no placebos at all
    (then send-or-wait falls back to comparing frequency buckets).
    """
    total = float(nulls["placebos"].sum()) if nulls.height else 0.0
    if total == 0:
        return pl.DataFrame(schema=_POSTERIOR_SCHEMA)
    p0 = (float(nulls["successes"].sum()) + 1.0) / (total + 2.0)
    return (
        users.select("user_id", "cell")
        .join(nulls.select("cell", "successes", "placebos"), on="cell", how="left")
        .with_columns(
            action_set=pl.lit(NULL_ACTION[0]),
            action=pl.lit(NULL_ACTION[1]),
            prior_alpha=pl.lit(strength * p0),
            prior_beta=pl.lit(strength * (1.0 - p0)),
            prior_source=pl.lit("placebos"),
            successes=pl.col("successes").fill_null(0).cast(pl.Float64),
            trials=pl.col("placebos").fill_null(0).cast(pl.Float64),
        )
        .with_columns(
            alpha=pl.col("prior_alpha") + pl.col("successes"),
            beta=pl.col("prior_beta") + pl.col("trials") - pl.col("successes"),
        )
        .select(list(_POSTERIOR_SCHEMA))
    )


_POSTERIOR_SCHEMA = {
    "user_id": pl.String,
    "cell": pl.String,
    "action_set": pl.String,
    "action": pl.String,
    "prior_alpha": pl.Float64,
    "prior_beta": pl.Float64,
    "prior_source": pl.String,
    "successes": pl.Float64,
    "trials": pl.Float64,
    "alpha": pl.Float64,
    "beta": pl.Float64,
}
