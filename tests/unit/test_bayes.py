"""The decision math: empirical-Bayes priors, posteriors and keyed Thompson draws."""

import numpy as np
import polars as pl
import pytest

from nudgeflow.config import Settings
from nudgeflow.decide.priors import POPULATION, empirical_bayes_prior, fit_beta_binomial, posterior
from nudgeflow.decide.sampling import beta_sample, draw_keys, thompson_sample


def _beta_binomial(rng, a, b, users, lo=2, hi=30):
    p = rng.beta(a, b, size=users)
    n = rng.integers(lo, hi, size=users)
    return rng.binomial(n, p), n


def test_method_of_moments_recovers_known_beta_parameters():
    rng = np.random.default_rng(7)
    s, n = _beta_binomial(rng, 3.0, 7.0, 5_000)
    fit = fit_beta_binomial(pl.DataFrame({"g": "x", "successes": s, "trials": n}), ["g"], max_strength=1e9)
    assert fit["alpha"][0] == pytest.approx(3.0, rel=0.15)
    assert fit["beta"][0] == pytest.approx(7.0, rel=0.15)


def test_strength_is_capped_and_binomial_data_hits_the_cap():
    rng = np.random.default_rng(1)
    n = rng.integers(5, 20, size=2_000)
    s = rng.binomial(n, 0.3)  # no overdispersion: rho ~ 0, strength would be infinite
    fit = fit_beta_binomial(pl.DataFrame({"g": "x", "successes": s, "trials": n}), ["g"], max_strength=10)
    assert fit["strength"][0] == pytest.approx(10)
    assert fit["alpha"][0] / 10 == pytest.approx(0.3, abs=0.02)


def test_hand_computed_moments():
    # two users: 1/2 and 3/4; mu = (4 + .5) / (6 + 1) = 0.642857
    fit = fit_beta_binomial(pl.DataFrame({"g": ["x", "x"], "successes": [1, 3], "trials": [2, 4]}), ["g"], 100.0)
    mu = 4.5 / 7
    ss = 2 * (0.5 - mu) ** 2 + 4 * (0.75 - mu) ** 2
    rho = (ss / (mu * (1 - mu)) - 1) / 4
    strength = min(100.0, 1 / rho - 1) if rho > 1 / 101 else 100.0
    assert fit["mean"][0] == pytest.approx(mu)
    assert fit["strength"][0] == pytest.approx(strength)


def _outcomes():
    rng = np.random.default_rng(3)
    rows = []
    for cell, p in (("a", 0.8), ("b", 0.2)):
        for i in range(100):
            n = 5
            rows.append(
                {
                    "user_id": f"{cell}{i}",
                    "cell": cell,
                    "action_set": "channel",
                    "action": "push",
                    "successes": int(rng.binomial(n, p)),
                    "trials": n,
                }
            )
    return pl.DataFrame(rows)


def test_cold_start_user_gets_the_prior_of_their_cell():
    out = _outcomes()
    prior = empirical_bayes_prior(out.drop("cell"), out.select("user_id", "cell"), max_strength=10, min_users=20)
    users = pl.DataFrame({"user_id": ["new_a", "new_b", "new_c"], "cell": ["a", "b", "thin"]})
    actions = pl.DataFrame({"action_set": ["channel", "channel"], "action": ["push", "email"]})
    post = posterior(users, actions, prior, out.drop("cell")).with_columns(
        mean=pl.col("alpha") / (pl.col("alpha") + pl.col("beta"))
    )
    push = {r["user_id"]: r for r in post.filter(pl.col("action") == "push").iter_rows(named=True)}
    assert push["new_a"]["mean"] > 0.7 and push["new_a"]["prior_source"] == "cell"
    assert push["new_b"]["mean"] < 0.3
    assert push["new_c"]["prior_source"] == "population"
    assert 0.4 < push["new_c"]["mean"] < 0.6
    email = post.filter(pl.col("action") == "email")
    assert email["prior_source"].unique().to_list() == ["uniform"]
    assert (email["alpha"] == 1).all() and (email["beta"] == 1).all()
    assert POPULATION in prior["cell"].to_list()


def test_cells_that_differ_only_by_noise_share_the_population_mean():
    # 8 cells of 60 users with the same true rate 0.35: their raw means differ by sampling noise
    rng = np.random.default_rng(11)
    rows = [
        {
            "user_id": f"c{c}u{i}",
            "cell": f"c{c}",
            "action_set": "send_hour",
            "action": "9",
            "successes": int(rng.binomial(4, 0.35)),
            "trials": 4,
        }
        for c in range(8)
        for i in range(60)
    ]
    out = pl.DataFrame(rows)
    raw = out.group_by("cell").agg((pl.col("successes").sum() / pl.col("trials").sum()).alias("m"))["m"]
    assert raw.max() - raw.min() > 0.05
    prior = empirical_bayes_prior(out.drop("cell"), out.select("user_id", "cell"), max_strength=10, min_users=20)
    cell = prior.filter(pl.col("source") == "cell")
    assert cell.height == 8
    means = cell["alpha"] / (cell["alpha"] + cell["beta"])
    pop = prior.filter(pl.col("cell") == POPULATION)
    pop_mean = pop["alpha"][0] / (pop["alpha"][0] + pop["beta"][0])
    assert (means - pop_mean).abs().max() < 0.01


def test_cells_that_really_differ_keep_their_means():
    out = _outcomes()  # cells a and b at 0.8 and 0.2
    prior = empirical_bayes_prior(out.drop("cell"), out.select("user_id", "cell"), max_strength=10, min_users=20)
    raw = dict(out.group_by("cell").agg((pl.col("successes").sum() / pl.col("trials").sum()).alias("m")).iter_rows())
    for r in prior.filter(pl.col("source") == "cell").iter_rows(named=True):
        assert r["alpha"] / (r["alpha"] + r["beta"]) == pytest.approx(raw[r["cell"]], abs=0.01)


def test_a_user_with_much_evidence_is_dominated_by_it():
    # with the production cap: cell a's users all respond at 80 %, so the fitted strength
    # is the cap, and a user needs many more sends than the cap to outweigh it
    cap = Settings().prior_max_strength
    out = _outcomes()
    own = pl.DataFrame(
        {
            "user_id": ["veteran"],
            "action_set": ["channel"],
            "action": ["push"],
            "successes": [0.05 * 10 * cap],
            "trials": [10 * cap],
        }
    )
    prior = empirical_bayes_prior(out.drop("cell"), out.select("user_id", "cell"), max_strength=cap, min_users=20)
    post = posterior(
        pl.DataFrame({"user_id": ["veteran"], "cell": ["a"]}),
        pl.DataFrame({"action_set": ["channel"], "action": ["push"]}),
        prior,
        own,
    )
    mean = post["alpha"][0] / (post["alpha"][0] + post["beta"][0])
    assert mean < 0.15  # own 5% dominates the cell's 80%
    assert post["prior_alpha"][0] + post["prior_beta"][0] <= cap + 1e-9


def test_posterior_takes_the_cells_prior_else_the_populations_else_uniform():
    """Rows by hand: one row per user and action, in the users' and the actions' order; own
    evidence added (none: 0); evidence of an unknown user or action is ignored."""
    users = pl.DataFrame(
        {"user_id": ["u2", "u1", "u3"], "cell": ["a", "b", None]}, schema={"user_id": pl.String, "cell": pl.String}
    )
    actions = pl.DataFrame({"action_set": ["channel", "channel"], "action": ["push", "email"]})
    prior = pl.DataFrame(
        {
            "cell": ["a", "a", POPULATION],
            "action_set": ["channel"] * 3,
            "action": ["push", "email", "push"],
            "alpha": [2.0, 3.0, 5.0],
            "beta": [8.0, 7.0, 15.0],
            "source": ["cell", "cell", "population"],
        }
    )
    own = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "nobody", "u3"],
            "action_set": ["channel", "channel", "channel", "label_tone"],
            "action": ["push", "email", "push", "warm"],
            "successes": [1.5, 0.5, 9.0, 9.0],
            "trials": [2.0, 4.0, 9.0, 9.0],
        }
    )
    got = posterior(users, actions, prior, own).select(
        "user_id", "action", "prior_alpha", "prior_beta", "prior_source", "alpha", "beta"
    )
    assert got.rows() == [
        ("u2", "push", 2.0, 8.0, "cell", 2.0, 8.0),
        ("u2", "email", 3.0, 7.0, "cell", 3.5, 10.5),
        ("u1", "push", 5.0, 15.0, "population", 6.5, 15.5),  # cell b has no prior
        ("u1", "email", 1.0, 1.0, "uniform", 1.0, 1.0),  # nor the population for email
        ("u3", "push", 5.0, 15.0, "population", 5.0, 15.0),  # no cell
        ("u3", "email", 1.0, 1.0, "uniform", 1.0, 1.0),
    ]


@pytest.mark.parametrize("a,b", [(0.4, 0.6), (1.0, 1.0), (2.0, 9.0), (40.0, 12.0)])
def test_keyed_beta_draws_have_the_beta_moments(a, b):
    n = 100_000
    x = beta_sample(np.full(n, a), np.full(n, b), np.arange(n, dtype=np.uint64) * np.uint64(2654435761))
    assert x.min() > 0 and x.max() < 1
    assert x.mean() == pytest.approx(a / (a + b), abs=0.005)
    assert x.var() == pytest.approx(a * b / ((a + b) ** 2 * (a + b + 1)), rel=0.05)


def test_sharpened_draws_keep_the_mean_and_divide_the_variance():
    n, a, b, k = 100_000, 3.0, 5.0, 4.0
    keys = np.arange(n, dtype=np.uint64) * np.uint64(2654435761)
    x = thompson_sample(np.full(n, a), np.full(n, b), keys, sharpness=k)
    assert x.mean() == pytest.approx(a / (a + b), abs=0.003)
    assert x.var() == pytest.approx(a * b / ((a + b) ** 2 * (k * (a + b) + 1)), rel=0.05)  # Beta(ka, kb)
    assert np.array_equal(
        thompson_sample(np.full(n, a), np.full(n, b), keys), beta_sample(np.full(n, a), np.full(n, b), keys)
    )


def test_draws_repeat_for_the_same_key_and_do_not_depend_on_other_users():
    alpha, beta = np.full((3, 2), 2.0), np.full((3, 2), 3.0)
    k1 = draw_keys(0, 740000, ["u1", "u2", "u3"], ["channel=push", "channel=email"])
    k2 = draw_keys(0, 740000, ["u3", "u1"], ["channel=push", "channel=email"])
    t1, t2 = thompson_sample(alpha, beta, k1), thompson_sample(alpha[:2], beta[:2], k2)
    assert np.array_equal(t1, thompson_sample(alpha, beta, k1))
    assert np.array_equal(t1[2], t2[0]) and np.array_equal(t1[0], t2[1])
    other_day = thompson_sample(
        alpha, beta, draw_keys(0, 740001, ["u1", "u2", "u3"], ["channel=push", "channel=email"])
    )
    assert not np.array_equal(t1, other_day)


def _reference_beta(alpha, beta, key):
    """The keyed Beta sampler as first written (sampling.py before it was made faster), one
    formula per line, every try on every pending element: the draws must stay bitwise these."""
    from nudgeflow.decide.sampling import _splitmix64

    def uniform(k, stream):
        bits = _splitmix64(k ^ _splitmix64(np.array(stream, dtype=np.uint64)))
        return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0

    def gamma(shape, k, stream, max_tries=64):
        boost = shape < 1
        a = np.where(boost, shape + 1.0, shape)
        d = a - 1.0 / 3.0
        c = 1.0 / np.sqrt(9.0 * d)
        out = d.copy()
        pending = np.ones(shape.shape, dtype=bool)
        for attempt in range(max_tries):
            idx = np.nonzero(pending)[0]
            if idx.size == 0:
                break
            s = stream + 4 * attempt
            u1, u2, u3 = uniform(k[idx], s), uniform(k[idx], s + 1), uniform(k[idx], s + 2)
            x = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
            v = (1.0 + c[idx] * x) ** 3
            ok = v > 0
            logv = np.log(np.where(ok, v, 1.0))
            accept = ok & (np.log(u3) < 0.5 * x * x + d[idx] - d[idx] * v + d[idx] * logv)
            out[idx[accept]] = d[idx[accept]] * v[accept]
            pending[idx[accept]] = False
        u = uniform(k, stream + 4 * max_tries)
        return np.where(boost, out * u ** (1.0 / np.where(boost, shape, 1.0)), out)

    x = gamma(alpha, key, 0)
    total = x + gamma(beta, key, 1_000)
    return np.where(total > 0, x / np.where(total > 0, total, 1.0), alpha / (alpha + beta))


def test_keyed_beta_draws_are_bitwise_the_reference_and_do_not_depend_on_the_batch():
    rng = np.random.default_rng(5)
    n = 60_000
    # shapes below 1 (boosted), tiny ones (gammas that underflow), the posteriors' range, large
    alpha = np.concatenate([rng.uniform(0.01, 1, n // 4), rng.uniform(1e-4, 0.02, n // 4), rng.uniform(1, 40, n // 2)])
    beta = rng.permutation(alpha) * rng.uniform(0.5, 50, n)
    key = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    x = beta_sample(alpha, beta, key)
    assert np.array_equal(x.view(np.uint64), _reference_beta(alpha, beta, key).view(np.uint64))
    alone = np.concatenate([beta_sample(alpha[i : i + 1], beta[i : i + 1], key[i : i + 1]) for i in range(0, n, 997)])
    assert np.array_equal(alone.view(np.uint64), x[::997].view(np.uint64))  # a draw is a function of its element
    assert np.array_equal(beta_sample(alpha, beta, key, block=1000).view(np.uint64), x.view(np.uint64))


def test_priors_from_shards_sums_equal_the_global_fit():
    """Sharding users (4 shards by md5 of user_id): each shard's sufficient statistics, summed,
    give the global priors; fitting per shard would not (it changes the priors)."""
    import hashlib

    from nudgeflow.decide.priors import prior_from_statistics, sufficient_statistics

    out = _outcomes()
    keys = ["cell", "action_set", "action"]
    shard = pl.Series([int(hashlib.md5(u.encode()).hexdigest()[:8], 16) % 4 for u in out["user_id"]])
    parts = [sufficient_statistics(out.filter(shard == i), keys) for i in range(4)]
    summed = pl.concat(parts).group_by(keys).agg(pl.col("n_users", "trials", "successes", "sum_sq").sum())
    got = prior_from_statistics(summed, max_strength=1e6, min_users=20).sort(keys)
    want = empirical_bayes_prior(out.drop("cell"), out.select("user_id", "cell"), max_strength=1e6, min_users=20)
    want = want.sort(keys)
    assert got.select(*keys, "source", "n_users").equals(want.select(*keys, "source", "n_users"))
    assert ((got["alpha"] - want["alpha"]).abs() / want["alpha"]).max() < 1e-12
    one_shard = prior_from_statistics(parts[0], max_strength=1e6, min_users=5)
    both = one_shard.join(want, on=keys, suffix="_global")
    assert both.height > 0 and ((both["alpha"] - both["alpha_global"]).abs() > 1e-6).any()
