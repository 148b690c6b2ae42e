"""Synthetic world simulator: writes the landing tables the pipeline consumes, delivers
the pipeline's send schedule and keeps the ground truth to score it against.

Public API (pure functions of their arguments and of the files under ``home``)::

    create_world(home, *, users=20_000, history_days=14, start=date(2026, 1, 5), seed=0,
                 scenario="default", progress=None, holdout_fraction=None) -> dict
    deliver(home, day, progress=None, *, legacy=False) -> dict
    oracle_effects(home, day=None) -> polars.DataFrame

``create_world`` writes the static landing tables (users, consents, the catalogue
``messages/catalogue_0001.parquet``), the latent world under ``truth/`` and ``history_days``
days of history [start, start + history_days) during which a *legacy rules-based sender*
is active: every day one message (rotating through the active, valid catalogue by day) at
``legacy_hour`` (18:00 UTC) to a random 30 % of the users who consented to its channel
and are allowed in its countries, never to the holdout.  The first closed-loop date is
``start + history_days``.

``deliver(home, D)`` simulates the UTC day [D, D+1): the rows of
``exports/send_schedule/date=D/part-0.parquet`` (if present) become sends at their
``send_at``; then every user's events of the day are drawn, including the reactions to the
sends of D and of the two previous days (the 48 h carry-over is rebuilt from
``truth/send_effects/<D-2>.parquet`` and ``<D-1>``).  It writes ``landing/sends/sends_D.parquet``,
``landing/events/events_D.parquet`` and ``truth/send_effects/D.parquet`` (each replaced
atomically), so re-delivering D replaces D (later days are not recomputed: deliver days in
order).  ``legacy=True`` layers the legacy sender on top (create_world uses it for history).

Randomness is keyed by (seed, stream, day, user block), and every random number of the
organic part is drawn whatever the sends are; sends only change acceptance thresholds
(thinning with common random numbers).  So the same world delivered with and without a
schedule has identical organic events, and a send with tau > 0 (< 0) only adds (removes)
events of its user.

Ground truth (never read by the pipeline) under ``home/truth/``:

* ``state.json`` - seed, scenario, dates, parameters, label dimensions, time zones.
* ``world_users.parquet`` - every user's latent parameters (see ``world.py``).
* ``send_effects/<D>.parquet`` - one row per realised send: send_id, user_id, message_id,
  channel, sent_ts, source (legacy|schedule), local_hour, hours_since_prev,
  fatigue_penalty, tau, true_effect.  ``true_effect`` = expected incremental purchases in
  [sent_ts, sent_ts + 48 h) caused by this send alone: sum over half-hour steps of the
  user's organic purchase rate (with the real weekday/hour seasonality) times
  (exp(tau * k(dt)) - 1), k(dt) = exp(-dt / 12 h); other sends, the intensity caps and
  funnel steps cut at midnight are ignored.  sign(true_effect) == sign(tau).
* ``user_message_hour_effects.parquet`` - the oracle: every user x message x local hour
  8..21 with the send at hh:00 local, preferences of the first closed-loop day, no fatigue
  (first send), average weekday: user_id, message_id, local_hour (int8), tau (float32),
  true_effect (float32), eligible (consent x active x country x not holdout; validity
  windows ignored).  ``oracle_effects(home, day)`` recomputes it for any day (drift).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from nudgeflow.lab.world import (
    CHANNELS,
    EVENT_NAMES,
    S_LEGACY,
    S_NOISE,
    S_OPEN,
    World,
    build_catalogue,
    build_users,
    epoch_s,
    hour_pref,
    label_dims,
    rng_for,
    scenario_params,
    tz_offsets_hours,
)

Progress = Callable[[str, int, int], None] | None

USER_BLOCK = 20_000  # random streams are per (day, block of users)
STATE_VERSION = 1

__all__ = ["create_world", "deliver", "oracle_effects", "load_world"]


# ----------------------------------------------------------------------------- io helpers


def _atomic_write(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def _to_date(day) -> date:
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    return date.fromisoformat(str(day))


def _ts(seconds: np.ndarray) -> pl.Series:
    """Epoch seconds (float) -> naive UTC Datetime[us] rounded to the millisecond."""
    ms = np.floor(np.asarray(seconds, dtype=np.float64) * 1000.0 + 1e-6).astype(np.int64)
    return pl.Series(ms * 1000).cast(pl.Datetime("us"))


def _epoch(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Datetime("us")).cast(pl.Int64).to_numpy().astype(np.float64) / 1e6


def _read_holdout_fraction(home: Path) -> float:
    cfg = home / "nudgeflow.yml"
    if cfg.exists():
        import yaml

        data = yaml.safe_load(cfg.read_text()) or {}
        if "holdout_fraction" in data:
            return float(data["holdout_fraction"])
    return 0.10


def load_world(home: Path) -> World:
    home = Path(home)
    truth = home / "truth"
    if not (truth / "state.json").exists():
        raise FileNotFoundError(f"no world in {home} (missing truth/state.json); run create_world")
    state = json.loads((truth / "state.json").read_text())
    users = pl.read_parquet(truth / "world_users.parquet")
    catalogue = pl.read_parquet(home / "landing" / "messages" / state["catalogue_file"])
    return World(state, users, catalogue)


# ----------------------------------------------------------------------------- create


def create_world(
    home: Path,
    *,
    users: int = 20_000,
    history_days: int = 14,
    start: date = date(2026, 1, 5),
    seed: int = 0,
    scenario: str = "default",
    progress: Progress = None,
    holdout_fraction: float | None = None,
    params: dict | None = None,
) -> dict:
    """Write a fresh world into ``home`` and simulate ``history_days`` days of history.

    ``holdout_fraction`` defaults to ``home/nudgeflow.yml``'s value, else 0.10; holdout
    users (md5 score < fraction, see ``world.holdout_score``) never get legacy sends.
    ``params`` overrides entries of the scenario's parameters (``world.DEFAULT_PARAMS``),
    e.g. ``{"effect_scale": 2.0}`` for stronger message effects; they are stored in
    ``truth/state.json`` so that ``deliver`` uses them too.
    Returns a summary: counts, ``first_closed_loop_date`` (= start + history_days) and the
    effect distribution of the oracle table.
    """
    t_start = time.perf_counter()
    home = Path(home)
    start = _to_date(start)
    if users < 1 or history_days < 0:
        raise ValueError("users must be >= 1 and history_days >= 0")
    landing = home / "landing"
    if landing.exists() and any(p.is_file() for p in landing.rglob("*")):
        raise ValueError(f"{landing} already has files; create_world needs an empty home (or one without landing/)")
    overrides = dict(params or {})
    params = scenario_params(scenario)
    unknown = set(overrides) - set(params)
    if unknown:
        raise ValueError(f"unknown world parameters: {sorted(unknown)}")
    params.update(overrides)
    hf = _read_holdout_fraction(home) if holdout_fraction is None else float(holdout_fraction)
    first_closed = start + timedelta(days=history_days)

    truth = home / "truth"
    if truth.exists():  # stale truth of an earlier world
        shutil.rmtree(truth)
    truth.mkdir(parents=True)

    users_df, consents_df, world_users, tz_names = build_users(users, seed, start, params, hf)
    catalogue = build_catalogue(seed, start, first_closed, params)
    dims = label_dims(params)
    state = {
        "version": STATE_VERSION,
        "seed": int(seed),
        "scenario": scenario,
        "start": start.isoformat(),
        "history_days": int(history_days),
        "first_closed_loop_date": first_closed.isoformat(),
        "regime_change_date": (first_closed + timedelta(days=params["regime_offset_days"])).isoformat(),
        "users": int(users),
        "holdout_fraction": hf,
        "params": params,
        "label_dims": {d: [v for v, _ in vals] for d, vals in dims.items()},
        "tz_names": list(tz_names),
        "channels": list(CHANNELS),
        "catalogue_file": "catalogue_0001.parquet",
        "goal_event": "purchase",
    }
    _atomic_write(users_df, landing / "users" / "users.parquet")
    _atomic_write(consents_df, landing / "consents" / "consents.parquet")
    _atomic_write(catalogue, landing / "messages" / state["catalogue_file"])
    _atomic_write(world_users, truth / "world_users.parquet")
    (truth / "state.json").write_text(json.dumps(state, indent=2))

    world = World(state, world_users, catalogue)
    totals = {"events": 0, "purchases": 0, "sends": 0}
    for i in range(history_days):
        day = start + timedelta(days=i)
        r = _deliver_day(home, world, day, legacy=True, use_schedule=False)
        for k in totals:
            totals[k] += r[k]
        if progress:
            progress("history", i + 1, history_days)

    effects = _write_oracle(home, world, first_closed, progress)
    sends_truth = _read_send_effects(home, start, first_closed)
    summary = {
        "home": str(home),
        "scenario": scenario,
        "seed": int(seed),
        "users": int(users),
        "holdout_users": int(world.is_holdout.sum()),
        "messages": catalogue.height,
        "consent_rows": consents_df.height,
        "start": start.isoformat(),
        "history_days": int(history_days),
        "first_closed_loop_date": first_closed.isoformat(),
        **totals,
        "history_send_mean_tau": float(sends_truth["tau"].mean()) if sends_truth.height else None,
        "history_send_mean_true_effect": float(sends_truth["true_effect"].mean()) if sends_truth.height else None,
        "oracle": effects,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    return summary


# ----------------------------------------------------------------------------- deliver


def deliver(home: Path, day: date, progress: Progress = None, *, legacy: bool = False) -> dict:
    """Simulate the UTC day ``day`` of the world in ``home`` (see module docstring)."""
    home = Path(home)
    day = _to_date(day)
    world = load_world(home)
    if day < world.start:
        raise ValueError(f"{day} is before the world's start {world.start}")
    r = _deliver_day(home, world, day, legacy=legacy, use_schedule=True)
    if progress:
        progress("deliver", 1, 1)
    return r


def _read_send_effects(home: Path, first: date, end: date) -> pl.DataFrame:
    """Truth rows of sends on days [first, end)."""
    frames = []
    d = first
    while d < end:
        f = home / "truth" / "send_effects" / f"{d.isoformat()}.parquet"
        if f.exists():
            frames.append(pl.read_parquet(f))
        d += timedelta(days=1)
    if not frames:
        return pl.DataFrame(
            schema={"user_id": pl.String, "sent_ts": pl.Datetime("us"), "tau": pl.Float64, "true_effect": pl.Float64}
        )
    return pl.concat(frames, how="diagonal_relaxed")


def _lookup(values: pl.Series, keys: pl.Series) -> np.ndarray:
    """Position of each value in ``keys`` (unique strings), -1 when absent or null."""
    lut = pl.DataFrame({"k": keys.cast(pl.String), "_i": np.arange(len(keys), dtype=np.int64)})
    j = pl.DataFrame({"k": values.cast(pl.String)}).join(lut, on="k", how="left", maintain_order="left")
    return j["_i"].fill_null(-1).to_numpy()


def _user_index(world: World, ids: pl.Series) -> np.ndarray:
    """user_id -> index, -1 when unknown."""
    return _lookup(ids, world.user_ids)


def _read_schedule(home: Path, world: World, day: date) -> tuple[dict, dict]:
    path = home / "exports" / "send_schedule" / f"date={day.isoformat()}" / "part-0.parquet"
    empty = {k: np.zeros(0, dtype=np.int64) for k in ("u", "m", "c")} | {"t": np.zeros(0)}
    info = {"scheduled_rows": 0, "rejected": {}, "violations": {}}
    if not path.exists():
        return empty, info
    df = pl.read_parquet(path)
    info["scheduled_rows"] = df.height
    if df.height == 0:
        return empty, info
    missing = [c for c in ("user_id", "message_id", "send_at") if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    sa = df["send_at"]
    if sa.dtype == pl.String:
        sa = sa.str.to_datetime(time_zone="UTC")
    if isinstance(sa.dtype, pl.Datetime) and sa.dtype.time_zone is not None:
        sa = sa.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    elif sa.dtype == pl.Date:
        sa = sa.cast(pl.Datetime("us"))
    t = _epoch(sa.fill_null(datetime(1970, 1, 1)))
    u = _user_index(world, df["user_id"])
    m = _lookup(df["message_id"], world.msg_ids)
    m_ch = np.where(m >= 0, world.msg_channel[np.maximum(m, 0)], -1)
    if "channel" in df.columns:
        c = _lookup(df["channel"], pl.Series(CHANNELS))
        c = np.where(df["channel"].is_null().to_numpy(), m_ch, c)  # missing: the message's
    else:
        c = m_ch
    t0 = epoch_s(day)
    reasons = {
        "unknown_user": u < 0,
        "unknown_message": m < 0,
        "unknown_channel": c < 0,
        "send_at_outside_day": sa.is_null().to_numpy() | (t < t0) | (t >= t0 + 86400),
    }
    bad = np.zeros(df.height, dtype=bool)
    for k, mask in reasons.items():
        mask = mask & ~bad
        if mask.any():
            info["rejected"][k] = int(mask.sum())
        bad |= mask
    ok = ~bad
    u, m, c, t = u[ok], m[ok], c[ok], t[ok]
    # contract violations: delivered anyway (a provider sends what it is told), but counted
    cat = world.catalogue
    active = cat["active"].fill_null(True).to_numpy()
    vf = cat["valid_from"].cast(pl.Int64).to_numpy().astype(np.float64) / 1e6
    vt = cat["valid_to"].cast(pl.Int64).to_numpy().astype(np.float64) / 1e6
    viol = {
        "no_consent": ~world.consent[u, c],
        "holdout": world.is_holdout[u],
        "inactive_message": ~active[m],
        "outside_validity": (~np.isnan(vf[m]) & (t < np.nan_to_num(vf[m], nan=0)))
        | (~np.isnan(vt[m]) & (t >= np.nan_to_num(vt[m], nan=np.inf))),
        "country_not_allowed": ~world.country_ok[u, m],
        "channel_mismatch": c != world.msg_channel[m],
    }
    if len(u):
        _, cnt = np.unique(u, return_counts=True)
        if (cnt > 1).any():
            info["violations"]["users_with_several_sends"] = int((cnt > 1).sum())
    for k, mask in viol.items():
        if mask.any():
            info["violations"][k] = int(mask.sum())
    return {"u": u, "m": m, "c": c, "t": t}, info


def _legacy_sends(world: World, day: date) -> dict:
    p = world.params
    g = rng_for(world.seed, S_LEGACY, day.toordinal())
    draw = g.random(world.n)  # always drawn: alignment of the stream
    t = epoch_s(day) + p["legacy_hour"] * 3600.0
    cat = world.catalogue
    ts = datetime(day.year, day.month, day.day, int(p["legacy_hour"]))
    valid = (
        cat.with_row_index("_m")
        .filter(
            pl.col("active").fill_null(True)
            & (pl.col("valid_from").is_null() | (pl.col("valid_from") <= ts))
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") > ts))
        )["_m"]
        .to_numpy()
    )
    valid = valid[world.msg_channel[valid] >= 0]
    none = {k: np.zeros(0, dtype=np.int64) for k in ("u", "m", "c")} | {"t": np.zeros(0)}
    if len(valid) == 0:
        return none
    m = int(valid[(day - world.start).days % len(valid)])
    elig = world.eligible_static()[:, m]
    u = np.nonzero(elig & (draw < p["legacy_share"]))[0]
    return {"u": u, "m": np.full(len(u), m), "c": np.full(len(u), world.msg_channel[m]), "t": np.full(len(u), t)}


def _deliver_day(home: Path, world: World, day: date, *, legacy: bool, use_schedule: bool) -> dict:
    sched, info = _read_schedule(home, world, day) if use_schedule else (None, {})
    parts, src = [], []
    if legacy:
        parts.append(_legacy_sends(world, day))
        src.append("legacy")
    if sched is not None:
        parts.append(sched)
        src.append("schedule")
    if parts:
        sends = {k: np.concatenate([p[k] for p in parts]) for k in ("u", "m", "c", "t")}
        source = np.concatenate([np.full(len(p["u"]), s) for p, s in zip(parts, src)])
    else:
        sends = {k: np.zeros(0, dtype=np.int64) for k in ("u", "m", "c")} | {"t": np.zeros(0)}
        source = np.zeros(0, dtype=object)
    prev = _read_send_effects(home, day - timedelta(days=7), day)
    prev_u = _user_index(world, prev["user_id"]) if prev.height else np.zeros(0, dtype=np.int64)
    keep = prev_u >= 0
    prev_arr = (
        prev_u[keep],
        _epoch(prev["sent_ts"])[keep] if prev.height else np.zeros(0),
        prev["tau"].to_numpy()[keep] if prev.height else np.zeros(0),
    )
    out = simulate_day(world, day, sends, source, prev_arr)
    ds = day.isoformat()
    _atomic_write(out["sends"], home / "landing" / "sends" / f"sends_{ds}.parquet")
    _atomic_write(out["events"], home / "landing" / "events" / f"events_{ds}.parquet")
    _atomic_write(out["effects"], home / "truth" / "send_effects" / f"{ds}.parquet")
    ev = out["events"]
    missing_prev = [
        (day - timedelta(days=i)).isoformat()
        for i in (1, 2)
        if day - timedelta(days=i) >= world.start
        and not (home / "truth" / "send_effects" / f"{(day - timedelta(days=i)).isoformat()}.parquet").exists()
    ]
    return {
        "date": day.isoformat(),
        "sends": out["sends"].height,
        "events": ev.height,
        "purchases": int((ev["event_name"] == "purchase").sum()),
        "gmv": float(ev["value"].sum() or 0.0),
        "true_effect_sum": float(out["effects"]["true_effect"].sum() or 0.0),
        "mean_tau": float(out["effects"]["tau"].mean()) if out["effects"].height else None,
        "missing_previous_days": missing_prev,
        **info,
    }


# ----------------------------------------------------------------------------- one day


def simulate_day(
    world: World, day: date, sends: dict, source: np.ndarray, prev: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict:
    """Simulate [day, day+1) UTC.  ``sends``: arrays u, m, c (channel index), t (epoch s) of
    the day's sends; ``prev``: (user index, epoch s, tau) of the sends of earlier days
    (at least the last 7 days for fatigue and the last 2 for the carry-over)."""
    p = world.params
    t0 = epoch_s(day)
    offs = tz_offsets_hours(world.tz_names, day)
    prefs = world.prefs_for_day(day)
    ds = day.strftime("%Y%m%d")

    # ---------------------------------------------------------------- the day's sends
    u, m, c, t = (np.asarray(sends[k]) for k in ("u", "m", "c", "t"))
    u, m, c = u.astype(np.int64), m.astype(np.int64), c.astype(np.int64)
    order = np.lexsort((m, u, t))
    u, m, c, t, source = u[order], m[order], c[order], t[order], np.asarray(source)[order]
    n_s = len(u)
    hidx = np.clip(np.floor((t - t0) / 3600.0).astype(np.int64), 0, 23)
    off = offs[world.tz_idx[u], hidx] if n_s else np.zeros(0)
    local_h = np.mod((t - t0) / 3600.0 + off, 24.0)
    # gap to the user's previous send (earlier days or earlier today)
    pu, pt, ptau = prev
    all_u = np.concatenate([pu, u])
    all_t = np.concatenate([pt, t])
    is_today = np.concatenate([np.zeros(len(pu), bool), np.ones(n_s, bool)])
    today_pos = np.concatenate([np.full(len(pu), -1), np.arange(n_s)])
    o = np.lexsort((all_t, all_u))  # stable: same-instant sends of a user keep their order
    su, st = all_u[o], all_t[o]
    gap = np.full(len(o), np.inf)
    same = np.zeros(len(o), bool)
    same[1:] = su[1:] == su[:-1]
    gap[1:] = np.where(same[1:], (st[1:] - st[:-1]) / 3600.0, np.inf)
    gap_today = np.full(n_s, np.inf)
    sel = is_today[o]
    gap_today[today_pos[o][sel]] = gap[sel]
    fat = world.fatigue_penalty(prefs, u, gap_today) if n_s else np.zeros(0)
    tau = (world.tau(prefs, u, m, local_h, channel=c) - fat) if n_s else np.zeros(0)
    te = world.true_effect_sends(u, t, off, tau)
    send_ids = (
        pl.select(
            pl.concat_str([pl.lit(f"s-{ds}-"), pl.int_range(1, n_s + 1).cast(pl.String).str.zfill(6)]).alias("send_id")
        ).to_series()
        if n_s
        else pl.Series("send_id", [], dtype=pl.String)
    )
    user_col = world.user_ids.gather(u) if n_s else pl.Series([], dtype=pl.String)
    msg_col = world.msg_ids.gather(m) if n_s else pl.Series([], dtype=pl.String)
    ch_col = pl.Series(CHANNELS).gather(c) if n_s else pl.Series([], dtype=pl.String)
    sends_df = pl.DataFrame(
        {
            "send_id": send_ids,
            "user_id": user_col,
            "message_id": msg_col,
            "channel": ch_col,
            "sent_ts": _ts(t),
        },
        schema={
            "send_id": pl.String,
            "user_id": pl.String,
            "message_id": pl.String,
            "channel": pl.String,
            "sent_ts": pl.Datetime("us"),
        },
    )
    effects_df = sends_df.with_columns(
        source=pl.Series(source.astype(str), dtype=pl.String),
        local_hour=pl.Series(local_h, dtype=pl.Float32),
        hours_since_prev=pl.Series(
            np.where(np.isfinite(gap_today), gap_today, np.nan), dtype=pl.Float32, nan_to_null=True
        ),
        fatigue_penalty=pl.Series(fat, dtype=pl.Float64),
        tau=pl.Series(tau, dtype=pl.Float64),
        true_effect=pl.Series(te, dtype=pl.Float64),
    )

    # ---------------------------------------------------------------- active boosts
    win = p["window_h"] * 3600.0
    pk = pt >= t0 - win
    act_u = np.concatenate([pu[pk], u])
    act_t = np.concatenate([pt[pk], t])
    act_tau = np.concatenate([ptau[pk], tau])
    ao = np.lexsort((act_t, act_u))
    act_u, act_t, act_tau = act_u[ao], act_t[ao], act_tau[ao]
    a_start = np.searchsorted(act_u, np.arange(world.n), side="left")
    a_end = np.searchsorted(act_u, np.arange(world.n), side="right")
    a_cnt = a_end - a_start
    k_max = int(a_cnt.max()) if len(act_u) else 0

    def boost(cu: np.ndarray, tc: np.ndarray) -> np.ndarray:
        """sum over the user's active sends of tau * k(t - t_s), at day-relative times."""
        s = np.zeros(len(cu))
        if k_max == 0:
            return s
        has = np.nonzero(a_cnt[cu] > 0)[0]
        cuh, tch = cu[has], t0 + tc[has]
        acc = np.zeros(len(has))
        for j in range(k_max):
            idx = a_start[cuh] + j
            ok = idx < a_end[cuh]
            idx = np.minimum(idx, len(act_u) - 1)
            dt = (tch - act_t[idx]) / 3600.0
            acc += np.where(ok, act_tau[idx] * world.kernel(dt), 0.0)
        s[has] = acc
        return s

    # ---------------------------------------------------------------- events
    cap = float(p["open_cap"])
    alpha = float(p["alpha_open"])
    mu_v = math.log(p["value_mean"]) - p["value_sigma"] ** 2 / 2
    ev_u, ev_c, ev_t, ev_v = [], [], [], []

    def season_at(cu, tc):
        hi = np.clip(np.floor(tc / 3600.0).astype(np.int64), 0, 23)
        local_abs = t0 / 3600.0 + tc / 3600.0 + offs[world.tz_idx[cu], hi]
        return world.season(cu, local_abs)

    for b, lo in enumerate(range(0, world.n, USER_BLOCK)):
        hi_u = min(lo + USER_BLOCK, world.n)
        users = np.arange(lo, hi_u)
        g = rng_for(world.seed, S_OPEN, day.toordinal(), b)
        n_c = g.poisson(world.activity[users] * world.smax * cap)
        cu = np.repeat(users, n_c)
        tot = len(cu)
        tc = g.random(tot) * 86400.0
        v = g.random(tot)
        w1, w2, w3 = g.random(tot), g.random(tot), g.random(tot)
        d1 = 5.0 + g.exponential(p["delay_view_s"], tot)
        d2 = 5.0 + g.exponential(p["delay_cart_s"], tot)
        d3 = 5.0 + g.exponential(p["delay_buy_s"], tot)
        val = g.lognormal(mu_v, p["value_sigma"], tot)
        seas = season_at(cu, tc)
        s = boost(cu, tc)
        m_open = np.minimum(np.exp(alpha * s), cap)
        m_cart = np.exp((1.0 - alpha) * s)
        opened = v * world.smax * cap < seas * m_open
        viewed = opened & (w1 < p["p_view"])
        carted = viewed & (w2 < np.minimum(1.0, p["p_cart"] * m_cart))
        bought = carted & (w3 < world.p_buy[cu])
        t_view = tc + d1
        t_cart = t_view + d2
        t_buy = t_cart + d3
        for code, mask, tt in ((0, opened, tc), (1, viewed, t_view), (2, carted, t_cart), (3, bought, t_buy)):
            mask = mask & (tt < 86400.0)
            ev_u.append(cu[mask])
            ev_c.append(np.full(int(mask.sum()), code, dtype=np.int8))
            ev_t.append(tt[mask])
            ev_v.append(val[mask] if code == 3 else np.full(int(mask.sum()), np.nan))
        # noise events: own rates, organic seasonality, unaffected by sends
        g2 = rng_for(world.seed, S_NOISE, day.toordinal(), b)
        for code, rate in ((4, world.settings_rate), (5, world.help_rate)):
            n_n = g2.poisson(rate[users] * world.smax)
            nu = np.repeat(users, n_n)
            tn = g2.random(len(nu)) * 86400.0
            vn = g2.random(len(nu))
            keep = vn * world.smax < season_at(nu, tn)
            ev_u.append(nu[keep])
            ev_c.append(np.full(int(keep.sum()), code, dtype=np.int8))
            ev_t.append(tn[keep])
            ev_v.append(np.full(int(keep.sum()), np.nan))

    eu = np.concatenate(ev_u)
    ec = np.concatenate(ev_c)
    et_ms = np.floor((t0 + np.concatenate(ev_t)) * 1000.0 + 1e-6).astype(np.int64)
    evv = np.concatenate(ev_v)
    o = np.lexsort((ec, eu, et_ms))
    eu, ec, et_ms, evv = eu[o], ec[o], et_ms[o], evv[o]
    n_e = len(eu)
    events = pl.DataFrame(
        {
            "event_id": pl.Series(np.arange(1, n_e + 1)),
            "user_id": world.user_ids.gather(eu),
            "event_name": pl.Series(EVENT_NAMES).gather(ec.astype(np.int64)),
            "event_ts": pl.Series(et_ms * 1000).cast(pl.Datetime("us")),
            "value": pl.Series(evv, dtype=pl.Float64, nan_to_null=True),
        }
    ).with_columns(event_id=pl.concat_str([pl.lit(f"e{ds}-"), pl.col("event_id").cast(pl.String).str.zfill(7)]))
    return {"sends": sends_df, "events": events, "effects": effects_df}


# ----------------------------------------------------------------------------- oracle

ORACLE_HOURS = np.arange(8, 22)
ORACLE_BLOCK = 2_000
ORACLE_SCHEMA = {
    "user_id": pl.String,
    "message_id": pl.String,
    "local_hour": pl.Int8,
    "tau": pl.Float32,
    "true_effect": pl.Float32,
    "eligible": pl.Boolean,
}


def _oracle_chunks(world: World, day: date, block: int = ORACLE_BLOCK) -> Iterator[tuple[pl.DataFrame, dict]]:
    prefs = world.prefs_for_day(day)
    elig_all = world.eligible_static()
    n_m = len(world.msg_ids)
    mch = np.maximum(world.msg_channel, 0)
    for lo in range(0, world.n, block):
        uc = np.arange(lo, min(lo + block, world.n))
        nb = len(uc)
        lab = prefs.labels[uc] @ world.label_incidence if world.value_cols else np.zeros((nb, n_m))
        ch = prefs.channel[uc][:, mch]
        hp = hour_pref(
            prefs.hour_peak[uc, None],
            prefs.hour_amp[uc, None],
            prefs.hour_width[uc, None],
            ORACLE_HOURS[None, :].astype(np.float64),
            world.params["hour_offset"],
        )
        tau = world.params["effect_scale"] * (
            prefs.base[uc, None, None] + ch[:, :, None] + lab[:, :, None] + hp[:, None, :]
        )
        uu = np.broadcast_to(uc[:, None, None], tau.shape).ravel()
        hh = np.broadcast_to(ORACLE_HOURS[None, None, :], tau.shape).ravel()
        te = world.oracle_true_effect(uu, hh, tau.ravel()).reshape(tau.shape)
        el = np.broadcast_to(elig_all[uc][:, :, None], tau.shape)
        mm = np.broadcast_to(np.arange(n_m)[None, :, None], tau.shape).ravel()
        df = pl.DataFrame(
            {
                "user_id": world.user_ids.gather(uu),
                "message_id": world.msg_ids.gather(mm),
                "local_hour": pl.Series(hh, dtype=pl.Int8),
                "tau": pl.Series(tau.ravel(), dtype=pl.Float32),
                "true_effect": pl.Series(te.ravel(), dtype=pl.Float32),
                "eligible": pl.Series(el.ravel()),
            }
        )
        te_el = np.where(el, te, np.nan)
        any_el = el.reshape(nb, -1).any(axis=1)
        flat = te_el.reshape(nb, -1)[any_el]
        stats = {
            "n": int(el.sum()),
            "neg": int((tau[el] < 0).sum()),
            "sum_tau": float(tau[el].sum()),
            "sum_te": float(te[el].sum()),
            "users": int(any_el.sum()),
            "sum_best": float(np.nanmax(flat, axis=1).sum()) if len(flat) else 0.0,
            "sum_avg": float(np.nanmean(flat, axis=1).sum()) if len(flat) else 0.0,
            "best_pos": int((np.nanmax(flat, axis=1) > 0).sum()) if len(flat) else 0,
        }
        yield df, stats


def oracle_effects(home: Path, day: date | None = None) -> pl.DataFrame:
    """The oracle table (see module docstring) for ``day`` (default: first closed-loop
    date).  Useful for the drift scenario, whose preferences change day by day."""
    world = load_world(Path(home))
    day = _to_date(day) if day is not None else date.fromisoformat(world.state["first_closed_loop_date"])
    frames = [df for df, _ in _oracle_chunks(world, day)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=ORACLE_SCHEMA)


def _write_oracle(home: Path, world: World, day: date, progress: Progress) -> dict:
    path = home / "truth" / "user_message_hour_effects.parquet"
    tot = {"n": 0, "neg": 0, "sum_tau": 0.0, "sum_te": 0.0, "users": 0, "sum_best": 0.0, "sum_avg": 0.0, "best_pos": 0}
    n_blocks = max(1, math.ceil(world.n / ORACLE_BLOCK))
    tmp = path.with_name(f".{path.name}.tmp")

    def source(with_columns, predicate, n_rows, batch_size):  # polars io plugin: streams
        for i, (df, st) in enumerate(_oracle_chunks(world, day)):
            for k in tot:
                tot[k] += st[k]
            if progress:
                progress("oracle", i + 1, n_blocks)
            yield df.select(with_columns) if with_columns else df

    from polars.io.plugins import register_io_source

    lf = register_io_source(source, schema=ORACLE_SCHEMA)
    lf.sink_parquet(tmp)
    os.replace(tmp, path)
    n = max(tot["n"], 1)
    users = max(tot["users"], 1)
    return {
        "eligible_combos": tot["n"],
        "share_negative": tot["neg"] / n,
        "mean_tau": tot["sum_tau"] / n,
        "mean_true_effect": tot["sum_te"] / n,
        "mean_best_true_effect": tot["sum_best"] / users,
        "mean_avg_true_effect": tot["sum_avg"] / users,
        "best_vs_avg": (tot["sum_best"] / tot["sum_avg"]) if tot["sum_avg"] > 0 else float("inf"),
        "share_users_best_positive": tot["best_pos"] / users,
    }
