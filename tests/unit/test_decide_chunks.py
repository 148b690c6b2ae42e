"""Deciding users in chunks: the same sends, hours, messages and propensities whatever the
chunk (one chunk, several, a shuffled subset), and the factored guardrails equal the rules
checked one (user, message, hour) at a time."""

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import polars as pl

from nudgeflow.decide.action_space import action_key
from nudgeflow.decide.eligibility import Rules, local_send_times
from nudgeflow.decide.matching import decide, propensity
from nudgeflow.decide.sampling import DrawKeys, draw_keys, thompson_sample
from nudgeflow.steps.match import DayInputs

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
)
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]


def _world(n_u: int = 240, n_m: int = 12, seed: int = 0):
    """Synthetic inputs of a run: actions, posteriors and DayInputs for n_u users."""
    rng = np.random.default_rng(seed)
    channels, tones = ["email", "push"], ["a", "b", "c"]
    actions = sorted(
        [("channel", c) for c in channels]
        + [("label_tone", t) for t in tones]
        + [("send_hour", str(h)) for h in SETTINGS.send_hours]
        + [("frequency", f) for f in ("<36h", "36-84h", "84-180h", ">=180h")]
    )
    a_index = {a: i for i, a in enumerate(actions)}
    ch, tone = rng.integers(0, 2, n_m), rng.integers(0, 3, n_m)
    tone[0] = -1  # a message without a tone
    message_actions = np.stack(
        [
            [a_index[("channel", channels[c])] for c in ch],
            [a_index[("label_tone", tones[t])] if t >= 0 else -1 for t in tone],
        ],
        axis=1,
    )
    valid_from = np.full(n_m, np.nan)
    valid_from[1] = D0 + 11 * 3600  # from 11:00 UTC on D
    valid_to = np.full(n_m, np.nan)
    valid_to[2] = D0 + 14 * 3600
    catalogue = pl.DataFrame(
        {
            "message_id": [f"m{i:02d}" for i in range(n_m)],
            "channel": [channels[c] for c in ch],
            "active": [i != 3 for i in range(n_m)],
            "valid_from": pl.Series(valid_from * 1e6).fill_nan(None).cast(pl.Int64).cast(pl.Datetime("us")),
            "valid_to": pl.Series(valid_to * 1e6).fill_nan(None).cast(pl.Int64).cast(pl.Datetime("us")),
            "countries": [("DE, fr" if i == 4 else None) for i in range(n_m)],
        }
    )
    by_zone = local_send_times(DAY, ZONES, SETTINGS.send_hours)

    def pairs(lo_h, hi_h, count):
        u = rng.integers(0, n_u, count)
        m = rng.integers(0, n_m, count)
        key = np.unique(u * n_m + m)
        t = D0 + rng.uniform(lo_h, hi_h, key.size) * 3600
        return key // n_m, key % n_m, t

    last_s = np.where(rng.random(n_u) < 0.7, D0 - rng.uniform(1, 300, n_u) * 3600, np.nan)
    next_s = np.where(rng.random(n_u) < 0.2, D0 + rng.uniform(24, 60, n_u) * 3600, np.nan)
    inputs = DayInputs(
        catalogue=catalogue,
        label_sets=["label_tone"],
        actions=actions,
        message_actions=message_actions,
        zone_send_at=np.stack([by_zone[z] for z in ZONES]),
        zone=rng.integers(0, len(ZONES), n_u),
        consent=rng.random((n_u, 2)) < 0.8,
        message_channel=ch,
        country=rng.integers(0, 3, n_u),
        country_ok=np.array([[True] * n_m, [i != 4 for i in range(n_m)], [True] * n_m]),  # DE, US, FR
        last_send_s=last_s,
        next_send_s=next_s,
        last_pairs=pairs(-24 * 9, 0, n_u),
        next_pairs=pairs(24, 24 * 9, n_u // 4),
    )
    user_ids = [f"u{i:04d}" for i in range(n_u)]
    alpha = rng.uniform(0.5, 20, (n_u, len(actions)))
    beta = rng.uniform(0.5, 30, (n_u, len(actions)))
    return inputs, user_ids, alpha, beta


def _take(inputs: DayInputs, users: np.ndarray) -> DayInputs:
    """The inputs of the users at these positions, in this order (as another run would read them)."""
    position = np.full(inputs.zone.size, -1)
    position[users] = np.arange(users.size)

    def pairs(p):
        keep = position[p[0]] >= 0
        order = np.argsort(position[p[0][keep]], kind="stable")
        return position[p[0][keep]][order], p[1][keep][order], p[2][keep][order]

    return replace(
        inputs,
        zone=inputs.zone[users],
        consent=inputs.consent[users],
        country=inputs.country[users],
        last_send_s=inputs.last_send_s[users],
        next_send_s=inputs.next_send_s[users],
        last_pairs=pairs(inputs.last_pairs),
        next_pairs=pairs(inputs.next_pairs),
    )


def _run(inputs, user_ids, alpha, beta, chunk: int) -> dict:
    """user -> (send, hour, message, propensity), deciding ``chunk`` users at a time as the step does."""
    keys = [action_key(*a) for a in inputs.actions]
    out = {}
    for lo in range(0, len(user_ids), chunk):
        hi = min(lo + chunk, len(user_ids))
        ids = user_ids[lo:hi]
        opts = inputs.options(lo, hi, SETTINGS)
        resample = DrawKeys.of(SETTINGS.seed, DAY.toordinal(), ids, keys)
        theta = thompson_sample(alpha[lo:hi], beta[lo:hi], resample(0))
        send, hour, message = decide(theta, opts)
        prop = propensity(alpha[lo:hi], beta[lo:hi], opts, message, resample, draws=30)
        for i, u in enumerate(ids):
            out[u] = (bool(send[i]), int(hour[i]), int(message[i]), None if np.isnan(prop[i]) else float(prop[i]))
    return out


def test_chunks_and_order_do_not_change_any_decision_or_propensity():
    inputs, user_ids, alpha, beta = _world()
    whole = _run(inputs, user_ids, alpha, beta, chunk=len(user_ids))
    assert sum(v[0] for v in whole.values()) > 50 and len({v[3] for v in whole.values()}) > 10
    assert _run(inputs, user_ids, alpha, beta, chunk=37) == whole
    subset = np.random.default_rng(1).permutation(len(user_ids))[:150]
    part = _run(_take(inputs, subset), [user_ids[u] for u in subset], alpha[subset], beta[subset], chunk=41)
    assert part == {u: whole[u] for u in part}


def test_the_propensity_counts_the_keyed_resamples_that_send_the_chosen_message():
    inputs, user_ids, alpha, beta = _world(n_u=120)
    opts = inputs.options(0, len(user_ids), SETTINGS)
    keys = DrawKeys.of(SETTINGS.seed, DAY.toordinal(), user_ids, [action_key(*a) for a in inputs.actions])
    _, _, chosen = decide(thompson_sample(alpha, beta, keys(0)), opts)
    hits = np.zeros(len(user_ids))
    for i in range(1, 31):  # every action resampled, the whole decision taken
        send, _, message = decide(thompson_sample(alpha, beta, keys(i)), opts)
        hits += send & (message == chosen)
    expected = np.where(chosen >= 0, (hits + 1) / 31, np.nan)
    assert np.array_equal(propensity(alpha, beta, opts, chosen, keys, draws=30), expected, equal_nan=True)


def test_factored_eligibility_is_the_rules_one_cell_at_a_time():
    inputs, user_ids, _, _ = _world(n_u=80)
    eligible = inputs.options(0, len(user_ids), SETTINGS).eligible
    rules = Rules.of(SETTINGS)
    cat = inputs.catalogue
    vf = cat["valid_from"].dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()
    vt = cat["valid_to"].dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()
    last_m = {(u, m): t for u, m, t in zip(*inputs.last_pairs)}
    next_m = {(u, m): t for u, m, t in zip(*inputs.next_pairs)}
    expected = np.zeros_like(eligible)
    for u in range(len(user_ids)):
        for h in range(len(SETTINGS.send_hours)):
            at = inputs.zone_send_at[inputs.zone[u], h]
            if np.isnat(at):
                continue
            t = float(at.astype(np.int64))
            if (t - inputs.last_send_s[u]) / 3600 < rules.min_hours_between_sends:
                continue
            if (inputs.next_send_s[u] - t) / 3600 < rules.min_hours_between_sends:
                continue
            for m in range(cat.height):
                ok = inputs.consent[u, inputs.message_channel[m]] and inputs.country_ok[inputs.country[u], m]
                ok &= bool(cat["active"][m]) and not t < vf[m] and not t >= vt[m]
                ok &= not t - last_m.get((u, m), np.nan) < rules.min_days_before_repeat * 86400
                ok &= not next_m.get((u, m), np.nan) - t < rules.min_days_before_repeat * 86400
                expected[u, m, h] = ok
    assert 0 < expected.sum() < expected.size
    assert (eligible == expected).all()
    opts = inputs.options(0, len(user_ids), SETTINGS)
    assert (opts.eligibility.feasible == expected.any(axis=1)).all()


def test_the_keyed_resamples_are_draw_keys_draws_one_to_n():
    ids, keys = ["u1", "u2", "u3"], ["channel=push", "send_hour=8"]
    resample = DrawKeys.of(3, 739000, ids, keys)
    for draw in (0, 1, 17):
        assert (resample(draw) == draw_keys(3, 739000, ids, keys, draw=draw)).all()
    assert (resample.take(np.array([2, 0]))(5) == draw_keys(3, 739000, ["u3", "u1"], keys, draw=5)).all()
