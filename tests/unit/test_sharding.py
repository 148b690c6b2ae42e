"""Deciding users in shards: decide/shard.py's decide_shard gives the same draws, sends (every
column) and propensities with 1 shard and with 4 (md5 of user_id), in chunks of any size or
on a shuffled subset; the factored guardrails equal the rules checked one (user, message,
hour) at a time. Backend-free: synthetic rows of SHARD_USERS, no warehouse."""

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from nudgeflow.decide.action_space import dense
from nudgeflow.decide.eligibility import Rules, local_send_times
from nudgeflow.decide.matching import decide, propensity
from nudgeflow.decide.priors import NULL_ACTION, empirical_bayes_prior, null_posterior, posterior
from nudgeflow.decide.sampling import DrawKeys, draw_keys, thompson_sample
from nudgeflow.decide.shard import (
    SHARD_USERS,
    Plan,
    Priors,
    choices,
    decide_in_shards,
    decide_shard,
    shard_of,
    shard_options,
)

DAY = dt.date(2026, 1, 10)
D0 = dt.datetime(2026, 1, 10, tzinfo=dt.UTC).timestamp()
SETTINGS = SimpleNamespace(
    send_hours=[8, 9, 12, 18, 21],
    frequency_bucket_hours=[36, 84, 180],
    send_rule="longer",
    min_hours_between_sends=20.0,
    min_days_before_repeat=7.0,
    max_sends_per_day=1,
    seed=5,
    sampling_sharpness=1.0,
    propensity_draws=30,
)
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
COUNTRIES = ["DE", "US", "FR"]
CHANNELS, TONES = ["email", "push"], ["a", "b", "c"]


def world(n_u: int = 240, n_m: int = 12, seed: int = 0, send_rule: str = "longer"):
    """Synthetic inputs of a run for n_u users: the plan of D and the users' rows (SHARD_USERS)
    with their posteriors, plus the raw arrays the rows were made of (``raw``)."""
    rng = np.random.default_rng(seed)
    actions = sorted(
        [("channel", c) for c in CHANNELS]
        + [("label_tone", t) for t in TONES]
        + [("send_hour", str(h)) for h in SETTINGS.send_hours]
        + [("frequency", f) for f in ("<36h", "36-84h", "84-180h", ">=180h")]
        + ([NULL_ACTION] if send_rule == "null" else [])
    )
    ch, tone = rng.integers(0, 2, n_m), rng.integers(0, 3, n_m)
    tone[0] = -1  # a message without a tone
    valid_from = np.full(n_m, np.nan)
    valid_from[1] = D0 + 11 * 3600  # from 11:00 UTC on D
    valid_to = np.full(n_m, np.nan)
    valid_to[2] = D0 + 14 * 3600
    m_ids = [f"m{i:02d}" for i in range(n_m)]
    catalogue = pl.DataFrame(
        {
            "message_id": m_ids,
            "channel": [CHANNELS[c] for c in ch],
            "active": [i != 3 for i in range(n_m)],
            "valid_from": pl.Series(valid_from * 1e6).fill_nan(None).cast(pl.Int64).cast(pl.Datetime("us")),
            "valid_to": pl.Series(valid_to * 1e6).fill_nan(None).cast(pl.Int64).cast(pl.Datetime("us")),
            "countries": [("DE, fr" if i == 4 else None) for i in range(n_m)],
        }
    )
    labels = pl.DataFrame(
        {"message_id": [m_ids[i] for i in range(n_m) if tone[i] >= 0], "action_set": "label_tone"}
    ).with_columns(action=pl.Series([TONES[t] for t in tone if t >= 0]))
    plan = Plan.of(DAY, replace_settings(send_rule=send_rule), catalogue, labels, actions)

    def pairs(lo_h, hi_h, count):
        u = rng.integers(0, n_u, count)
        m = rng.integers(0, n_m, count)
        key = np.unique(u * n_m + m)
        t = np.floor(D0 + rng.uniform(lo_h, hi_h, key.size) * 3600)
        return key // n_m, key % n_m, t

    zone = rng.integers(0, len(ZONES), n_u)
    country = rng.integers(0, 3, n_u)
    consent = rng.random((n_u, 2)) < 0.8
    last_s = np.where(rng.random(n_u) < 0.7, np.floor(D0 - rng.uniform(1, 300, n_u) * 3600), np.nan)
    next_s = np.where(rng.random(n_u) < 0.2, np.floor(D0 + rng.uniform(24, 60, n_u) * 3600), np.nan)
    last_pairs, next_pairs = pairs(-24 * 9, 0, n_u), pairs(24, 24 * 9, n_u // 4)
    alpha = rng.uniform(0.5, 20, (n_u, len(actions)))
    beta = rng.uniform(0.5, 30, (n_u, len(actions)))

    def per_user(p):
        return [[m_ids[m] for m in p[1][p[0] == u]] for u in range(n_u)], [list(p[2][p[0] == u]) for u in range(n_u)]

    (last_m, last_t), (next_m, next_t) = per_user(last_pairs), per_user(next_pairs)
    users = pl.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(n_u)],
            "timezone": [ZONES[z] for z in zone],
            "country": [COUNTRIES[c] for c in country],
            "channels": [[c for c, ok in zip(CHANNELS, row) if ok] for row in consent],
            "last_send_s": last_s,
            "next_send_s": next_s,
            "last_message_id": last_m,
            "last_message_s": last_t,
            "next_message_id": next_m,
            "next_message_s": next_t,
            "alpha": alpha.tolist(),
            "beta": beta.tolist(),
        },
        schema=SHARD_USERS,
    )
    raw = SimpleNamespace(
        zone=zone,
        country=country,
        consent=consent,
        message_channel=ch,
        last_send_s=last_s,
        next_send_s=next_s,
        last_pairs=last_pairs,
        next_pairs=next_pairs,
        alpha=alpha,
        beta=beta,
    )
    return plan, users, raw


def with_evidence(plan: Plan, users: pl.DataFrame, seed: int = 2):
    """The users' evidence (SHARD_EVIDENCE instead of alpha and beta) and the plan with the
    priors fitted on all of them; and the users with the posteriors the priors step makes from
    the same (one global posterior, then dense rows). Returns (plan, evidence rows, posterior rows)."""
    rng = np.random.default_rng(seed)
    n_u, acts = users.height, [a for a in plan.actions if a != NULL_ACTION]
    cells = pl.DataFrame({"user_id": users["user_id"], "cell": rng.choice(["c0", "c1", "c2"], n_u)})
    matching = rng.choice(["m0", "m1"], n_u)
    has = rng.random((n_u, len(acts))) < 0.4
    u, a = np.nonzero(has)
    trials = rng.integers(1, 8, u.size) * rng.uniform(0.5, 1.0, u.size)  # weighted, as action_outcomes
    rate = np.where(cells["cell"].to_numpy()[u] == "c0", 0.6, 0.3)
    outcomes = pl.DataFrame(
        {
            "user_id": users["user_id"].gather(u),
            "action_set": [acts[i][0] for i in a],
            "action": [acts[i][1] for i in a],
            "successes": np.floor(trials * rate * rng.uniform(0.5, 1.5, u.size)).clip(0, np.floor(trials)),
            "trials": trials,
        }
    )
    prior = empirical_bayes_prior(outcomes, cells, max_strength=50.0, min_users=5)
    nulls = pl.DataFrame({"cell": ["m0", "m1"], "successes": [3.0, 7.0], "placebos": [20.0, 30.0]})
    plan = replace(plan, priors=Priors(prior, nulls, null_strength=50.0))
    lists = outcomes.group_by("user_id").agg(
        outcome_action_set="action_set", outcome_action="action", outcome_successes="successes", outcome_trials="trials"
    )
    evidence = (
        users.drop("alpha", "beta")
        .with_columns(cell=cells["cell"], matching_cell=pl.Series(matching))
        .join(lists, on="user_id", how="left", maintain_order="left")
    )
    action_frame = pl.DataFrame(acts, schema=["action_set", "action"], orient="row")
    post = posterior(cells, action_frame, prior, outcomes)  # as steps/priors.py, over all users
    if NULL_ACTION in plan.actions:
        matching_cells = pl.DataFrame({"user_id": users["user_id"], "cell": matching})
        post = pl.concat([post, null_posterior(matching_cells, nulls, strength=50.0)], how="vertical_relaxed")
    alpha, beta, ids, actions = dense(post.sort("user_id", "action_set", "action"))
    assert ids == users["user_id"].to_list() and actions == list(plan.actions)
    return plan, evidence, users.with_columns(alpha=pl.Series(alpha), beta=pl.Series(beta))


def replace_settings(**changes) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(SETTINGS), **changes})


def _in_chunks(users: pl.DataFrame, plan: Plan, chunk: int) -> pl.DataFrame:
    """decide_shard over consecutive chunks of ``chunk`` users, as steps/match.py runs it."""
    return pl.concat([decide_shard(users.slice(lo, chunk), plan) for lo in range(0, users.height, chunk)])


@pytest.mark.parametrize("send_rule", ["longer", "null"])
def test_one_shard_and_four_shards_give_the_same_draws_sends_and_propensities(send_rule):
    plan, users, _ = world(send_rule=send_rule)
    one = decide_shard(users, plan)
    # the world is not trivial: many sends, many distinct propensities, some users wait
    assert one.height == users.height
    sent = one["message_id"].is_not_null()
    assert 50 < sent.sum() < users.height and one["propensity"].drop_nulls().n_unique() > 10
    shard = shard_of(users["user_id"].to_list(), 4)
    # every shard has users, and users it sends to
    assert all((sent.to_numpy() & (shard == s)).sum() >= 5 for s in range(4))
    four = decide_in_shards(users, plan, 4)
    assert_frame_equal(four, one, check_exact=True)  # draws, every column of the sends, propensities
    assert_frame_equal(choices(four), choices(one), check_exact=True)
    # the comparison would see a shard-dependent decision: a seed per shard changes the draws
    seeded = pl.concat(
        decide_shard(users.filter(pl.Series(shard == s)), replace(plan, seed=plan.seed + s)) for s in range(4)
    ).sort("user_id")
    changed = seeded["theta"] != one["theta"]
    assert changed.sum() > 0.5 * users.height and changed.sum() == (shard != 0).sum()


@pytest.mark.parametrize("send_rule", ["longer", "null"])
def test_posteriors_made_in_shards_from_the_broadcast_priors_are_the_priors_steps(send_rule):
    plan, users, _ = world(send_rule=send_rule)
    plan, evidence, posteriors = with_evidence(plan, users)
    assert (plan.priors.prior["source"] == "cell").sum() > 10  # the cells' priors differ
    expected = decide_shard(posteriors, plan)
    assert_frame_equal(decide_in_shards(evidence, plan, 4), expected, check_exact=True)
    # fitting the priors on each shard's users instead would change the posteriors
    shard = shard_of(users["user_id"].to_list(), 4)
    first = evidence.filter(pl.Series(shard == 0))
    cells = first.select("user_id", "cell")
    own = first.select("user_id", pl.col("outcome_action_set", "outcome_action", "outcome_successes", "outcome_trials"))
    own = own.explode(pl.exclude("user_id")).drop_nulls().rename(lambda c: c.removeprefix("outcome_"))
    local = replace(plan.priors, prior=empirical_bayes_prior(own, cells, max_strength=50.0, min_users=5))
    by_shard = decide_shard(first, replace(plan, priors=local))
    assert (by_shard["theta"] != expected.filter(pl.Series(shard == 0))["theta"]).sum() > 0.5 * first.height


def test_the_logged_draws_are_the_sample_steps_and_given_draws_are_used():
    plan, users, raw = world()
    keys = draw_keys(plan.seed, DAY.toordinal(), users["user_id"].to_list(), [f"{s}={a}" for s, a in plan.actions])
    logged = thompson_sample(raw.alpha, raw.beta, keys, plan.sharpness)  # as steps/sample.py draws them
    drawn = decide_shard(users, plan)
    assert np.array_equal(np.array(drawn["theta"].to_list()), logged)
    given = decide_shard(users.with_columns(theta=pl.Series(logged)), plan)
    assert_frame_equal(given, drawn, check_exact=True)
    other = decide_shard(users.with_columns(theta=pl.Series(logged[::-1].copy())), plan)
    assert not other["message_id"].equals(drawn["message_id"])


def test_chunks_and_order_do_not_change_any_decision_or_propensity():
    plan, users, _ = world()
    whole = decide_shard(users, plan)
    assert_frame_equal(_in_chunks(users, plan, 37), whole, check_exact=True)
    subset = np.random.default_rng(1).permutation(users.height)[:150]
    part = _in_chunks(users[subset], plan, 41)
    assert_frame_equal(part, whole[subset], check_exact=True)


def test_shards_are_md5_of_user_id_and_balanced():
    ids = [f"user-{i}" for i in range(4000)]
    shard = shard_of(ids, 4)
    assert np.array_equal(shard, shard_of(ids[::-1], 4)[::-1])  # a function of the user alone
    assert shard_of(["u0001"], 7)[0] == 0x0E854BE5 % 7  # md5("u0001") = 2b569749 0e854be5 ...
    counts = np.bincount(shard, minlength=4)
    assert counts.min() > 900


def test_the_propensity_counts_the_keyed_resamples_that_send_the_chosen_message():
    plan, users, raw = world(n_u=120)
    user_ids = users["user_id"].to_list()
    opts = shard_options(users, plan)
    keys = plan.draw_keys(user_ids)
    alpha, beta = raw.alpha, raw.beta
    _, _, chosen = decide(thompson_sample(alpha, beta, keys(0)), opts)
    hits = np.zeros(len(user_ids))
    for i in range(1, 31):  # every action resampled, the whole decision taken
        send, _, message = decide(thompson_sample(alpha, beta, keys(i)), opts)
        hits += send & (message == chosen)
    expected = np.where(chosen >= 0, (hits + 1) / 31, np.nan)
    assert np.array_equal(propensity(alpha, beta, opts, chosen, keys, draws=30), expected, equal_nan=True)


def test_factored_eligibility_is_the_rules_one_cell_at_a_time():
    plan, users, raw = world(n_u=80)
    opts = shard_options(users, plan)
    eligible = opts.eligible
    rules = Rules.of(SETTINGS)
    cat = plan.catalogue
    by_zone = local_send_times(DAY, ZONES, SETTINGS.send_hours)
    country_ok = np.array([[True] * cat.height, [i != 4 for i in range(cat.height)], [True] * cat.height])
    vf = cat["valid_from"].dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()
    vt = cat["valid_to"].dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()
    last_m = {(u, m): t for u, m, t in zip(*raw.last_pairs)}
    next_m = {(u, m): t for u, m, t in zip(*raw.next_pairs)}
    expected = np.zeros_like(eligible)
    for u in range(users.height):
        for h in range(len(SETTINGS.send_hours)):
            at = by_zone[ZONES[raw.zone[u]]][h]
            if np.isnat(at):
                continue
            t = float(at.astype(np.int64))
            if (t - raw.last_send_s[u]) / 3600 < rules.min_hours_between_sends:
                continue
            if (raw.next_send_s[u] - t) / 3600 < rules.min_hours_between_sends:
                continue
            for m in range(cat.height):
                ok = raw.consent[u, raw.message_channel[m]] and country_ok[raw.country[u], m]
                ok &= bool(cat["active"][m]) and not t < vf[m] and not t >= vt[m]
                ok &= not t - last_m.get((u, m), np.nan) < rules.min_days_before_repeat * 86400
                ok &= not next_m.get((u, m), np.nan) - t < rules.min_days_before_repeat * 86400
                expected[u, m, h] = ok
    assert 0 < expected.sum() < expected.size
    assert (eligible == expected).all()
    assert (opts.eligibility.feasible == expected.any(axis=1)).all()


def test_the_keyed_resamples_are_draw_keys_draws_one_to_n():
    ids, keys = ["u1", "u2", "u3"], ["channel=push", "send_hour=8"]
    resample = DrawKeys.of(3, 739000, ids, keys)
    for draw in (0, 1, 17):
        assert (resample(draw) == draw_keys(3, 739000, ids, keys, draw=draw)).all()
    assert (resample.take(np.array([2, 0]))(5) == draw_keys(3, 739000, ["u3", "u1"], keys, draw=5)).all()


def test_more_shards_than_users_and_an_empty_shard():
    plan, users, _ = world(n_u=6)
    assert np.bincount(shard_of(users["user_id"].to_list(), 16), minlength=16).min() == 0
    assert_frame_equal(decide_in_shards(users, plan, 16), decide_shard(users, plan), check_exact=True)
    assert decide_shard(users.head(0), plan).schema == decide_shard(users, plan).schema
