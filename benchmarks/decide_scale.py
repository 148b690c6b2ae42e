"""Sampling + matching at scale, without the warehouse: seconds, users/s and peak memory.

Builds synthetic arrays in memory for N users (500 messages, 125 per channel on 4 channels,
4 label dimensions, 14 send hours, 23 time zones with their countries, consents, a send
history) and times, chunk by chunk as ``steps/match.py`` runs them:

* sampling: ``thompson_sample`` over users x actions (keyed draws);
* the decision: ``shard_options`` of the chunk's rows (the guardrails) and ``decide``;
* the keyed ``propensity`` (``propensity_draws`` resamples),

the functions the match step calls. users/s is over the three. The compiled loops' first call
in the process (numba compiles them, or loads them from its cache) is timed apart, on 50 users.

The old code path (dense users x messages x hours eligibility, shared-rng propensity; the
decide modules of commit ``OLD_COMMIT``, read with ``git show``) runs on a smaller size in the
same run, and so does the new one, for the ratio. Every part runs in its own process, so its
peak resident memory (``resource.getrusage``) is its own.

``--baseline REV`` also runs the new path with the propensity of commit REV
(decide/sampling.py and decide/matching.py read with ``git show``) at ``--users``, and says
whether the draws, decisions and propensities are the same bit for bit (a SHA-256 of them).

    .venv/bin/python benchmarks/decide_scale.py                 # 1,000,000 users; old at 20,000
    .venv/bin/python benchmarks/decide_scale.py --users 100000 --old-users 10000
    .venv/bin/python benchmarks/decide_scale.py --users 100000 --no-old --baseline f5ed50d
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl

from nudgeflow.decide.action_space import action_key, action_space, message_actions
from nudgeflow.decide.eligibility import Rules, country_allowed, local_send_times
from nudgeflow.decide.matching import decide, propensity
from nudgeflow.decide.sampling import DrawKeys, thompson_sample
from nudgeflow.decide.shard import SHARD_USERS, Plan, shard_options
from nudgeflow.steps.match import CHUNK_USERS

OLD_COMMIT = "c310842"  # the last commit with the dense match step
ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 2, 5)
D0 = dt.datetime(2026, 2, 5, tzinfo=dt.UTC).timestamp()
CHANNELS = ["email", "in_app", "push", "sms"]
LABELS = {
    "label_tone": ["friendly", "urgent", "playful", "formal", "informative"],
    "label_offer": ["none", "discount_10", "discount_20", "free_shipping", "bundle"],
    "label_length": ["short", "medium", "long"],
    "label_emoji": ["yes", "no"],
}
ZONES = {  # zone: (share of users, country)
    "Europe/London": (0.12, "GB"), "Europe/Berlin": (0.12, "DE"), "Europe/Paris": (0.08, "FR"),
    "Europe/Madrid": (0.05, "ES"), "Europe/Rome": (0.05, "IT"), "Europe/Warsaw": (0.03, "PL"),
    "America/New_York": (0.12, "US"), "America/Chicago": (0.06, "US"), "America/Denver": (0.02, "US"),
    "America/Los_Angeles": (0.06, "US"), "America/Sao_Paulo": (0.04, "BR"), "America/St_Johns": (0.01, "CA"),
    "Asia/Kolkata": (0.05, "IN"), "Asia/Kathmandu": (0.01, "NP"), "Asia/Tokyo": (0.03, "JP"),
    "Asia/Singapore": (0.02, "SG"), "Asia/Dubai": (0.02, "AE"), "Australia/Sydney": (0.03, "AU"),
    "Australia/Adelaide": (0.01, "AU"), "Australia/Eucla": (0.01, "AU"), "Pacific/Auckland": (0.02, "NZ"),
    "Africa/Lagos": (0.02, "NG"), "UTC": (0.02, ""),
}  # fmt: skip
SETTINGS = dict(
    send_hours=list(range(8, 22)),
    frequency_bucket_hours=[36, 84, 180],
    send_rule="longer",
    min_hours_between_sends=20.0,
    min_days_before_repeat=7.0,
    max_sends_per_day=1,
    seed=1,
    sampling_sharpness=1.0,
    propensity_draws=100,
)


class Settings:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def catalogue(rng) -> tuple[pl.DataFrame, pl.DataFrame]:
    """500 messages, 125 per channel, 4 label dimensions; 5 % inactive, 10 % with a validity
    window on D, 20 % for a list of countries. Returns (catalogue, labels long)."""
    n = 500
    ids = [f"m{i:03d}" for i in range(n)]
    window = rng.random(n) < 0.10
    start = D0 + rng.uniform(-12, 24, n) * 3600
    us = lambda s: pl.Series(np.where(window, s, np.nan) * 1e6).fill_nan(None).cast(pl.Int64).cast(pl.Datetime("us"))  # noqa: E731
    lists = ["DE,FR,ES,IT", "US,CA", "GB", "IN,NP,SG", "AU,NZ"]
    cat = pl.DataFrame(
        {
            "message_id": ids,
            "channel": [CHANNELS[i // 125] for i in range(n)],
            "active": rng.random(n) >= 0.05,
            "valid_from": us(start),
            "valid_to": us(start + rng.uniform(6, 48, n) * 3600),
            "countries": [lists[i % 5] if r < 0.2 else None for i, r in enumerate(rng.random(n))],
        }
    )
    labels = pl.concat(
        pl.DataFrame(
            {"message_id": ids, "action_set": dim, "action": [values[j] for j in rng.integers(0, len(values), n)]}
        )
        for dim, values in LABELS.items()
    )
    return cat, labels


def inputs(n_u: int, seed: int = 1) -> tuple[Plan, pl.DataFrame, SimpleNamespace, list[str]]:
    """The match step's inputs for n_u synthetic users: the plan of D, the users' rows
    (decide/shard.py's SHARD_USERS less the posteriors) and the arrays they were made of."""
    rng = np.random.default_rng(seed)
    s = Settings(**SETTINGS)
    cat, labels = catalogue(rng)
    acts = action_space(CHANNELS, labels.select("action_set", "action"), s.send_hours, s.frequency_bucket_hours)
    actions = list(zip(acts["action_set"], acts["action"]))
    channel_rows = cat.select("message_id", pl.lit("channel").alias("action_set"), pl.col("channel").alias("action"))
    msg_actions = message_actions(
        cat["message_id"].to_list(), pl.concat([channel_rows, labels]), ["channel", *LABELS], actions
    )
    zones = list(ZONES)
    share = np.array([ZONES[z][0] for z in zones])
    zone = rng.choice(len(zones), n_u, p=share / share.sum())
    by_zone = local_send_times(DAY, zones, s.send_hours)
    countries = sorted({c for _, c in ZONES.values()})
    country = np.array([countries.index(ZONES[z][1]) for z in zones])[zone]
    consent = rng.random((n_u, 4)) < np.array([0.7, 0.9, 0.55, 0.25])  # email, in_app, push, sms
    # about 30 % of users reached a day by the legacy sender: last send 0-14 days ago for 80 %
    last = np.where(rng.random(n_u) < 0.8, D0 - rng.exponential(3.5 * 86400, n_u), np.nan)
    sent = ~np.isnan(last) & (last > D0 - 7 * 86400)
    u = np.repeat(np.nonzero(sent)[0], 2)  # two messages each in the repeat horizon
    m = rng.integers(0, 500, u.size)
    t = np.where(np.arange(u.size) % 2 == 0, last[u], last[u] - rng.uniform(1, 4, u.size) * 86400)
    key, first = np.unique(u * 500 + m, return_index=True)
    ok = lambda: np.zeros(0, dtype=np.int64)  # noqa: E731
    user_ids = [f"u{i:07d}" for i in range(n_u)]
    raw = SimpleNamespace(
        catalogue=cat,
        actions=actions,
        message_actions=msg_actions,
        zone_send_at=np.stack([by_zone[z] for z in zones]),
        zone=zone,
        consent=consent,
        message_channel=np.array([CHANNELS.index(c) for c in cat["channel"]]),
        country=country,
        country_ok=country_allowed(countries, cat["countries"].to_list()),
        last_send_s=last,
        next_send_s=np.full(n_u, np.nan),
        last_pairs=(key // 500, key % 500, t[first]),
        next_pairs=(ok(), ok(), np.zeros(0)),
    )
    pairs = (
        pl.DataFrame(
            {"row": key // 500, "last_message_id": cat["message_id"].gather(key % 500), "last_message_s": t[first]}
        )
        .group_by("row")
        .agg("last_message_id", "last_message_s")
    )
    users = (
        pl.DataFrame({"user_id": user_ids, "last_send_s": last, **{c: consent[:, i] for i, c in enumerate(CHANNELS)}})
        .with_row_index("row")
        .with_columns(
            timezone=pl.Series(zones).gather(zone),
            country=pl.Series(countries).gather(country),
            channels=pl.concat_list([pl.when(pl.col(c)).then(pl.lit(c)) for c in CHANNELS]).list.drop_nulls(),
            next_send_s=pl.lit(None, pl.Float64),
            next_message_id=pl.lit(None, pl.List(pl.String)),
            next_message_s=pl.lit(None, pl.List(pl.Float64)),
        )
        .join(pairs.with_columns(pl.col("row").cast(pl.UInt32)), on="row", how="left", maintain_order="left")
        .select([c for c in SHARD_USERS if c not in ("alpha", "beta")])
    )
    return Plan.of(DAY, s, cat, labels, actions), users, raw, user_ids


def posteriors(lo: int, hi: int, n_a: int) -> tuple[np.ndarray, np.ndarray]:
    """alpha, beta (users x actions) of rows [lo, hi): a cell prior of strength 5-40 around
    reward rates 0.2-0.6 plus a little own evidence (keyed by the rows, not by the chunk)."""
    rng = np.random.default_rng([7, lo])
    mean = rng.uniform(0.2, 0.6, (hi - lo, n_a))
    strength = rng.uniform(5, 40, (hi - lo, 1))
    return mean * strength + rng.poisson(0.3, (hi - lo, n_a)), (1 - mean) * strength + rng.poisson(0.5, (hi - lo, n_a))


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def part_new(n_u: int, chunk: int, draws: int, baseline: str | None = None) -> dict:
    """The new path: chunks of users, factored guardrails, keyed propensity (with ``baseline``,
    the propensity of decide/sampling.py and decide/matching.py at that commit)."""
    prop = propensity if baseline is None else _modules(baseline, ("sampling", "matching"))["matching"].propensity
    plan, users, inp, user_ids = inputs(n_u)
    s = Settings(**SETTINGS)
    keys = [action_key(*a) for a in inp.actions]
    # the compiled loops' first call (numba: compiled, or loaded from its cache), on 50 users
    t0 = time.perf_counter()
    alpha, beta = posteriors(0, 50, len(keys))
    resample = DrawKeys.of(s.seed, DAY.toordinal(), user_ids[:50], keys)
    theta = thompson_sample(alpha, beta, resample(0), s.sampling_sharpness)
    opts = shard_options(users.slice(0, 50), plan)
    prop(alpha, beta, opts, decide(theta, opts)[2], resample, 1, sharpness=s.sampling_sharpness)
    first_call = time.perf_counter() - t0
    base = peak_gib()
    t = np.zeros(3)  # sampling, decision (guardrails included), propensity
    sends = 0
    digest = hashlib.sha256()  # of the draws, decisions and propensities, to compare runs
    for lo in range(0, n_u, chunk):
        hi = min(lo + chunk, n_u)
        alpha, beta = posteriors(lo, hi, len(keys))
        t0 = time.perf_counter()
        resample = DrawKeys.of(s.seed, DAY.toordinal(), user_ids[lo:hi], keys)
        theta = thompson_sample(alpha, beta, resample(0), s.sampling_sharpness)
        t1 = time.perf_counter()
        opts = shard_options(users.slice(lo, hi - lo), plan)
        send, hour, message = decide(theta, opts)
        t2 = time.perf_counter()
        p = prop(alpha, beta, opts, message, resample, draws, sharpness=s.sampling_sharpness)
        t += np.diff([t0, t1, t2, time.perf_counter()])
        sends += int(send.sum())
        for x in (theta, send, hour, message, p):
            digest.update(np.ascontiguousarray(x).tobytes())
    return {
        "seconds": t.tolist(), "sends": sends, "inputs_gib": base, "peak_gib": peak_gib(), "digest": digest.hexdigest(),
        "first_call_s": first_call,
    }  # fmt: skip


def _modules(rev: str, names: tuple[str, ...]) -> dict:
    """These decide/ modules at commit ``rev``, as modules (importing each other, in this order)."""
    out = {}
    tmp = Path(tempfile.mkdtemp())
    for name in names:
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:plugins/nudgeflow/decide/{name}.py"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        for other in out:
            src = src.replace(f"from nudgeflow.decide.{other} import", f"from {out[other].__name__} import")
        mod = f"rev_{rev}_{name}".replace("-", "_")
        (tmp / f"{mod}.py").write_text(src)
        spec = importlib.util.spec_from_file_location(mod, tmp / f"{mod}.py")
        out[name] = sys.modules[mod] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(out[name])
    return out


def _old_modules():
    """decide/eligibility.py and decide/matching.py of OLD_COMMIT, as modules."""
    out = _modules(OLD_COMMIT, ("eligibility", "matching"))
    return out["eligibility"], out["matching"]


def part_old(n_u: int, draws: int) -> dict:
    """The old path on all users at once: dense (U, M) history and (U, M, H) eligibility,
    propensity from one rng stream (rng.beta of draws x 2,000 users x actions, then decide)."""
    old_elig, old_match = _old_modules()
    _, _, inp, user_ids = inputs(n_u)
    s = Settings(**SETTINGS)
    alpha, beta = posteriors(0, n_u, len(inp.actions))
    keys = [action_key(*a) for a in inp.actions]
    base = peak_gib()
    t0 = time.perf_counter()
    theta = thompson_sample(alpha, beta, DrawKeys.of(s.seed, DAY.toordinal(), user_ids, keys)(0))
    t1 = time.perf_counter()
    send_at = inp.zone_send_at[inp.zone]
    t = send_at.astype(np.int64).astype(float)
    t[np.isnat(send_at)] = np.nan
    last_message = np.full((n_u, 500), np.nan)
    last_message[inp.last_pairs[0], inp.last_pairs[1]] = inp.last_pairs[2]
    cat = inp.catalogue
    epoch = lambda c: cat[c].dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()  # noqa: E731
    eligible, gap_hours = old_elig.eligibility(
        t, inp.last_send_s, last_message,
        inp.consent[:, inp.message_channel] & inp.country_ok[inp.country],
        cat["active"].to_numpy(), epoch("valid_from"), epoch("valid_to"), Rules.of(s),
        next_send_s=inp.next_send_s, next_message_s=np.full((n_u, 500), np.nan),
    )  # fmt: skip
    opts = old_match.Options.build(
        inp.actions, s.send_hours, s.frequency_bucket_hours, inp.message_actions, send_at, eligible, gap_hours
    )
    send, hour, message = old_match.decide(theta, opts)
    t2 = time.perf_counter()
    rng = np.random.default_rng([s.seed, DAY.toordinal(), 1])
    old_match.propensity(alpha, beta, opts, message, rng, draws, sharpness=s.sampling_sharpness)
    seconds = np.diff([t0, t1, t2, time.perf_counter()]).tolist()
    return {"seconds": seconds, "sends": int(send.sum()), "inputs_gib": base, "peak_gib": peak_gib()}


def _child(part: str, n_u: int, chunk: int, draws: int, baseline: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--part", part, "--users", str(n_u), "--chunk", str(chunk), "--draws", str(draws)]
    cmd += ["--baseline", baseline] if part == "base" else []
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return {"part": part, "users": n_u, **json.loads(out.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--old-users", type=int, default=20_000, help="size of the old-vs-new comparison")
    ap.add_argument("--chunk", type=int, default=CHUNK_USERS)
    ap.add_argument("--draws", type=int, default=100, help="propensity resamples (propensity_draws)")
    ap.add_argument(
        "--baseline",
        help="also time the new path with the propensity of this commit at --users (part 'base'), "
        "and compare the propensities",
    )
    ap.add_argument("--no-old", action="store_true", help="skip the old dense path")
    ap.add_argument("--part", choices=["new", "old", "base"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        if a.part == "old":
            r = part_old(a.users, a.draws)
        else:
            r = part_new(a.users, a.chunk, a.draws, a.baseline if a.part == "base" else None)
        print(json.dumps(r))
        return
    runs = (
        [] if a.no_old else [_child("old", a.old_users, a.chunk, a.draws), _child("new", a.old_users, a.chunk, a.draws)]
    )
    if a.baseline:
        runs.append(_child("base", a.users, a.chunk, a.draws, a.baseline))
    if a.users != a.old_users or a.no_old:
        runs.append(_child("new", a.users, a.chunk, a.draws))
    head = ("path", "users", "sends", "sample s", "decide s", "prop. s", "total s", "users/s", "peak GiB", "inputs GiB")
    print(f"{head[0]:5} " + " ".join(f"{h:>10}" for h in head[1:]))
    for r in runs:
        total = sum(r["seconds"])
        r["users_per_s"] = r["users"] / total
        print(
            f"{r['part']:5} {r['users']:>10,} {r['sends']:>10,} "
            + " ".join(f"{x:>10.1f}" for x in (*r["seconds"], total))
            + f" {r['users_per_s']:>10,.0f} {r['peak_gib']:>10.2f} {r['inputs_gib']:>10.2f}"
        )
    for r in runs:
        if "digest" in r:
            print(
                f"{r['part']} at {r['users']:,} users: SHA-256 of the draws, decisions and propensities "
                f"{r['digest'][:16]}; the compiled loops' first call (compile or cache load) {r['first_call_s']:.1f} s"
            )
    if not a.no_old:
        old, new = runs[0], runs[1]
        print(
            f"new / old at {a.old_users:,} users: {new['users_per_s'] / old['users_per_s']:.2f}x users/s, "
            f"{new['peak_gib'] / old['peak_gib']:.2f}x peak memory"
        )
    if a.baseline:
        base, new = runs[-2], runs[-1]
        print(
            f"propensity at {a.users:,} users, {a.baseline} / now: {base['seconds'][2] / new['seconds'][2]:.2f}x "
            f"({base['seconds'][2]:.1f} s -> {new['seconds'][2]:.1f} s), "
            f"the same draws, decisions and propensities bit for bit: {base['digest'] == new['digest']}"
        )
    print(f"chunk {a.chunk:,} users, {a.draws} propensity draws, {len(ZONES)} time zones, 500 messages")


if __name__ == "__main__":
    main()
