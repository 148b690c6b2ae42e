"""`nudgeflow evaluate measurement`: the Measure step against a simulated world's truth.

On a world with known effects (``nudgeflow.lab.simulate``), every matured send gets

* its estimated effect from five estimators, all in the outcome units of eq. (1)
  (Y = sum of w_e * 2^(-|t_e - t| / half_life) over the window):

  (a) ``pre_post``      Y_post - Y_pre of the treated user alone;
  (b) ``post_vs_all``   Y_post of the treated user - mean Y_post of all unmessaged users;
  (c) ``did_all``       (Y_post - Y_pre) of the treated user - mean (Y_post - Y_pre) of all
                        unmessaged users;
  (d) ``did_random_k``  the same against k unmessaged users drawn at random;
  (e) ``ours``          the production dbt project (``marts.send_outcomes.delta_y``): the
                        same against the k nearest unmessaged users of the treated user's
                        matching cell, less the gap adjustment measured on placebo sends;
  and, where the warehouse has them and they differ from ours (the setting
  ``gap_adjustment`` says which one ours is), ``ours_unadjusted`` (``delta_y_unadjusted``,
  the difference in differences without the gap adjustment) and ``ours_adjusted`` (the same
  less the measured adjustment of the send's weights date and gap bin, ``gap_adjustments``).

  "Unmessaged" means no send in [t - window, t + window), as for the production controls.
  Each send is scored with the event weights of its own weights date (as in production).
  ``--dbt-vars`` passes method options to the dbt project, e.g. ``pre_match_candidates``
  (controls matched on the pre-window outcome too; docs/measurement.md).
* its true effect in the same units (``true_delta_y``): the expected increase of Y_post
  caused by that send alone, computed from the world's latent parameters and the
  warehouse's event weights, and its true effect in purchases (``true_effect`` of the
  simulator).

The production estimator (e) is always the dbt SQL itself: the landed files are ingested
into a scratch warehouse under ``HOME/.evaluate/measurement/`` and ``dbt run --full-refresh``
runs there with the varied settings (neighbours, half-life, window). (a)-(d) are computed
here from hourly per-user aggregates (decay is separable, send instants are whole hours).
Nothing of the home's own warehouse is changed. Figures have 95 % bootstrap intervals
resampling users (all sends of a user together).

Besides the errors (bias, RMSE, correlations), every estimator gets the figures of the
binarised reward r = 1[estimate > 0] that the Decide step learns from, against the sign of
the true ΔY (``true_delta_y``, as the sign accuracy): ``discrimination`` = P(r = 1 | true ΔY
> 0) - P(r = 1 | true ΔY < 0) (``p_r1_pos``, ``p_r1_neg``) and ``within_user_corr``, the
correlation of r with the true ΔY after demeaning both per user (users with >= 2 scored
sends). Sweep rows carry ``vs_default``: the unit-free metrics' paired difference to the
default setting (same users, same bootstrap weights).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from nudgeflow.config import NudgeflowError, Settings, load_settings
from nudgeflow.intervals import event_weight_intervals

Progress = Callable[[str], None] | None

ESTIMATORS = ("pre_post", "post_vs_all", "did_all", "did_random_k", "ours")
ESTIMATOR_LABELS = {
    "pre_post": "(a) post - pre, treated alone",
    "post_vs_all": "(b) post - mean post of all unmessaged",
    "did_all": "(c) DiD vs all unmessaged",
    "did_random_k": "(d) DiD vs k random unmessaged",
    "ours": "(e) ours: DiD vs k nearest in cell",
    "ours_unadjusted": "(e0) ours without the gap adjustment",
    "ours_adjusted": "(e1) ours with the gap adjustment",
}
# ablations of ours around the placebos' gap adjustment (setting gap_adjustment), each reported
# when the warehouse has what it needs and it differs from ours: the difference in differences
# without the adjustment (send_outcomes.delta_y_unadjusted), and the same less the measured
# adjustment of the send's weights date and gap bin (marts.gap_adjustments), applied or not
EXTRA_ESTIMATORS = ("ours_unadjusted", "ours_adjusted")
ALL_NEIGHBOURS = 1000  # "all": more than any cell holds (cell_size 250)
K_SWEEP = (1, 3, 10, 30, "all")
HALF_LIFE_SWEEP = (6.0, 12.0, 24.0, 48.0)
WINDOW_SWEEP = (24.0, 48.0, 72.0)
EVAL_START = dt.date(2026, 1, 5)


def _say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)


# ----------------------------------------------------------------------------- world


def build_evaluation_world(
    home: Path,
    *,
    users: int = 20_000,
    history_days: int = 14,
    loop_days: int = 14,
    scenario: str = "default",
    seed: int = 1,
    send_share: float = 0.10,
    progress: Progress = None,
) -> dict:
    """A world for the evaluation: ``history_days`` of the legacy sender (one message at
    18:00 UTC to 30 % of the users a day), then ``loop_days`` on which, besides the legacy
    sender, a random ``send_share`` of the non-holdout users get one message they are
    eligible for at a random whole UTC hour (written as a schedule export and delivered),
    so that send times cover every hour and weekday."""
    from nudgeflow.lab.simulate import create_world, deliver, load_world

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = create_world(home, users=users, history_days=history_days, start=EVAL_START, seed=seed, scenario=scenario)
    _say(
        progress,
        f"world: {users} users, {history_days} days of legacy history "
        f"({summary['sends']} sends) in {summary['seconds']:.0f}s",
    )
    world = load_world(home)
    elig = world.eligible_static()
    first = dt.date.fromisoformat(summary["first_closed_loop_date"])
    n_sends = 0
    for i in range(loop_days):
        day = first + dt.timedelta(days=i)
        g = np.random.default_rng([seed, 7919, day.toordinal()])
        pick = np.nonzero(elig.any(axis=1) & (g.random(world.n) < send_share))[0]
        # one eligible message per picked user, uniformly; one random whole UTC hour
        keys = np.where(elig[pick], g.random((len(pick), elig.shape[1])), -1.0)
        msg = keys.argmax(axis=1)
        hour = g.integers(0, 24, len(pick))
        sched = pl.DataFrame(
            {
                "user_id": world.user_ids.gather(pick),
                "message_id": world.msg_ids.gather(msg),
                "send_at": pl.Series(
                    [dt.datetime.combine(day, dt.time(int(h))) for h in hour], dtype=pl.Datetime("us")
                ),
            }
        )
        path = home / "exports" / "send_schedule" / f"date={day.isoformat()}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        sched.write_parquet(path)
        r = deliver(home, day, legacy=True)
        n_sends += r["sends"]
        _say(progress, f"world: delivered {day} ({r['sends']} sends)")
    return {
        **{k: summary[k] for k in ("scenario", "seed", "users", "history_days")},
        "loop_days": loop_days,
        "loop_sends": n_sends,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _landed_days(home: Path) -> list[dt.date]:
    files = sorted((Path(home) / "landing" / "events").glob("events_*.parquet"))
    days = []
    for f in files:
        try:
            days.append(dt.date.fromisoformat(f.stem.removeprefix("events_")))
        except ValueError:
            pass
    return sorted(days)


# ----------------------------------------------------------------------------- truth


def true_delta_y(
    world,
    u: np.ndarray,
    t_epoch_s: np.ndarray,
    offset_h: np.ndarray,
    tau: np.ndarray,
    weights: dict,
    half_life: float,
    window: float,
    step_h: float = 0.25,
) -> np.ndarray:
    """Expected increase of Y_post = sum_e w_e 2^(-(t_e - t)/half_life) over [t, t + window)
    caused by one send alone (the estimand of every estimator, in its units). ``weights``:
    event name -> weight, a number or one per send (each send is scored with the weights
    of its own weights date).

    From the world's model (``world.py``): at s hours after the send the open intensity
    ``r0(s) = activity/24 * season(t + s)`` is multiplied by ``m_open = min(e^(alpha tau k),
    cap)`` and view->cart by ``m_cart = e^((1-alpha) tau k)``, k = e^(-s/12h) for s < 48 h.
    Expected extra events per hour: opens ``r0 (m_open - 1)``, views ``p_view`` times that,
    carts ``r0 p_view p_cart (m_open m_cart - 1)``, purchases ``p_buy`` times the carts.
    Each is weighted by its event weight and the decay and integrated over the window
    (midpoint rule; the funnel's minutes of delay and the noise events, which sends do not
    change, are ignored)."""
    if len(u) == 0:
        return np.zeros(0)
    p = world.params
    horizon = min(float(window), float(p["window_h"]))
    s = (np.arange(int(round(horizon / step_h))) + 0.5) * step_h
    k = np.exp(-s / p["kernel_h"])
    decay = np.power(2.0, -s / half_life)
    alpha = float(p["alpha_open"])
    wt = {name: np.broadcast_to(np.asarray(v, dtype=np.float64), (len(u),)) for name, v in weights.items()}
    zero = np.zeros(len(u))
    w = lambda name: wt.get(name, zero)  # noqa: E731  (a weight per send)
    w_open = w("app_open") + p["p_view"] * w("view_item")
    w_cart = w("add_to_cart")
    w_buy = w("purchase")
    out = np.zeros(len(u))
    for a in range(0, len(u), 5_000):
        b = slice(a, a + 5_000)
        ub = u[b]
        local = (t_epoch_s[b] / 3600.0 + offset_h[b])[:, None] + s[None, :]
        seas = world.season(np.broadcast_to(ub[:, None], local.shape), local)
        r0 = (world.activity[ub] / 24.0)[:, None] * seas
        tk = tau[b][:, None] * k[None, :]
        m_open = np.minimum(np.exp(alpha * tk), p["open_cap"])
        m_cart = np.minimum(np.exp((1.0 - alpha) * tk), 1.0 / p["p_cart"])
        d_open = (r0 * (m_open - 1.0) * decay).sum(axis=1) * step_h
        d_cart = (r0 * (m_open * m_cart - 1.0) * decay).sum(axis=1) * step_h * p["p_view"] * p["p_cart"]
        out[b] = w_open[b] * d_open + (w_cart[b] + world.p_buy[ub] * w_buy[b]) * d_cart
    return out


def send_truth(home: Path) -> pl.DataFrame:
    """Every realised send's truth row (``truth/send_effects/*.parquet``)."""
    files = sorted((Path(home) / "truth" / "send_effects").glob("*.parquet"))
    if not files:
        raise NudgeflowError(f"{home} has no truth/send_effects: evaluate needs a simulated world")
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")


# ----------------------------------------------------------------------------- dbt


class Scratch:
    """A scratch warehouse with the home's landed files, where dbt runs with any settings."""

    def __init__(self, home: Path, as_of: dt.datetime, progress: Progress = None, extra_vars: dict | None = None):
        from nudgeflow.steps.ingest import ingest

        self.home = Path(home)
        self.extra_vars = dict(extra_vars or {})
        tag = (
            "-" + hashlib.md5(json.dumps(self.extra_vars, sort_keys=True).encode()).hexdigest()[:8]
            if self.extra_vars
            else ""
        )
        self.dir = self.home / ".evaluate" / f"measurement{tag}"
        self.as_of = as_of
        self.progress = progress
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        con = duckdb.connect(str(self.dir / "warehouse.duckdb"))
        try:
            ingest(con, self.home / "landing", None)
        finally:
            con.close()
        self.built = False
        self.last: Settings | None = None

    def measure(
        self, settings: Settings, targets: tuple[str, ...] = ("send_outcomes", "event_weights", "event_weight_strata")
    ) -> float:
        """dbt run --full-refresh of the Measure models with these settings; seconds."""
        from nudgeflow.steps.measure import dbt_args, run_dbt

        t0 = time.perf_counter()
        select = ["--select", *(f"+{t}" for t in targets)]
        if self.built:  # staging is unchanged by the method's parameters
            select += ["--exclude", "path:models/staging"]
            same = ("goal_event", "weight_window_hours", "weight_horizon_days", "window_hours")
            if self.last is not None and all(getattr(settings, f) == getattr(self.last, f) for f in same):
                # neighbours / half-life only: event weights and features are unchanged
                select += [
                    "event_weights_history",
                    "event_weight_strata",
                    "int_user_features__dated",
                    "int_sends__to_score",
                    "int_events__in_windows",
                ]
        self.last = settings
        extra = ["--full-refresh", *select]
        args = dbt_args("run", self.dir, settings, *extra)
        if self.extra_vars:  # method options beyond the settings (dbt vars with defaults)
            i = args.index("--vars") + 1
            args[i] = json.dumps({**json.loads(args[i]), **self.extra_vars})
        run_dbt(args, self.dir, self.as_of)
        self.built = True
        return time.perf_counter() - t0

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute("set TimeZone = 'UTC'")
        con.execute("set enable_progress_bar = false")
        con.execute(f"attach '{self.dir / 'warehouse.duckdb'}' as wh (read_only)")
        return con


# ----------------------------------------------------------------------------- panel


def hourly_panel(
    con,
    users: pl.DataFrame,
    hours0: dt.datetime,
    n_hours: int,
    half_life: float,
    window: int,
    instants: np.ndarray,
    weights: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """Y_pre and Y_post of every user (rows of ``users``, column ``uidx``) at every instant
    (hour indices from ``hours0``): arrays [n_users, n_instants]. ``weights``: event name ->
    weight, a number or one per instant (names without a weight count 0).

    Events are summed per (user, event name, hour b) as A = sum 2^(-(t_e - b)/h) and
    B = sum 2^((t_e - b)/h); then Y_post(t) = sum_e w_e sum_{j<W} 2^(-j/h) A_e(t + j) and
    Y_pre(t) = sum_e w_e sum_{1<=j<=W} 2^(-j/h) B_e(t - j): exactly eq. (1) for whole-hour
    t and W (decay is separable)."""
    n_u = users.height
    y_pre = np.zeros((n_u, len(instants)))
    y_post = np.zeros((n_u, len(instants)))
    con.register("panel_users", users.select("user_id", "uidx"))
    try:
        for name, w in weights.items():
            w = np.broadcast_to(np.asarray(w, dtype=np.float64), (len(instants),))
            if not np.any(w):
                continue
            rows = con.execute(
                """
                with ev as (
                    select e.user_id,
                           date_diff('microsecond', ?::timestamp, e.event_ts) / 3600000000.0 as hrs
                    from wh.staging.stg_raw__events as e
                    where e.event_name = ?
                      and e.event_ts >= ?::timestamp
                      and e.event_ts < ?::timestamp
                )
                select u.uidx, floor(hrs)::integer as b,
                       sum(pow(2.0, -(hrs - floor(hrs)) / ?)) as a_post,
                       sum(pow(2.0, (hrs - floor(hrs)) / ?)) as b_pre
                from ev join panel_users as u using (user_id)
                group by all
                """,
                [hours0, name, hours0, hours0 + dt.timedelta(hours=n_hours), half_life, half_life],
            ).fetchall()
            if not rows:
                continue
            arr = np.array(rows, dtype=np.float64)
            ui, bi = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
            A = np.zeros((n_u, n_hours + 1))
            B = np.zeros((n_u, n_hours + 1))
            A[ui, bi] = arr[:, 2]
            B[ui, bi] = arr[:, 3]
            for j in range(window):
                idx = instants + j
                ok = (idx >= 0) & (idx < n_hours)
                y_post[:, ok] += (w[ok] * 2.0 ** (-j / half_life)) * A[:, idx[ok]]
                idx = instants - j - 1
                ok = (idx >= 0) & (idx < n_hours)
                y_pre[:, ok] += (w[ok] * 2.0 ** (-(j + 1) / half_life)) * B[:, idx[ok]]
    finally:
        con.unregister("panel_users")
    return y_pre, y_post


def messaged_mask(con, users: pl.DataFrame, hours0: dt.datetime, instants: np.ndarray, window: float) -> np.ndarray:
    """[n_users, n_instants]: the user had a send in [t - window, t + window)."""
    inst = pl.DataFrame(
        {"iidx": np.arange(len(instants)), "t": [hours0 + dt.timedelta(hours=int(h)) for h in instants]}
    )
    con.register("m_users", users.select("user_id", "uidx"))
    con.register("m_inst", inst)
    try:
        rows = con.execute(
            f"""
            select distinct u.uidx, i.iidx
            from wh.staging.stg_raw__sends as s
            join m_users as u using (user_id)
            join m_inst as i
              on s.sent_ts >= i.t - to_microseconds(cast({window * 3600e6} as bigint))
             and s.sent_ts < i.t + to_microseconds(cast({window * 3600e6} as bigint))
            """
        ).fetchall()
    finally:
        con.unregister("m_users")
        con.unregister("m_inst")
    mask = np.zeros((users.height, len(instants)), dtype=bool)
    if rows:
        arr = np.array(rows, dtype=np.int64)
        mask[arr[:, 0], arr[:, 1]] = True
    return mask


# ----------------------------------------------------------------------------- estimators


def baseline_estimates(
    y_pre: np.ndarray,
    y_post: np.ndarray,
    messaged: np.ndarray,
    send_u: np.ndarray,
    send_i: np.ndarray,
    k: int | None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """(a)-(d) for sends (user row ``send_u`` at instant column ``send_i``) from the panel.

    (d) draws k distinct unmessaged users per send (k None or >= the pool: all of them)."""
    free = ~messaged
    n_free = free.sum(axis=0).astype(np.float64)
    mean_post = np.where(free, y_post, 0.0).sum(axis=0) / np.maximum(n_free, 1)
    mean_delta = np.where(free, y_post - y_pre, 0.0).sum(axis=0) / np.maximum(n_free, 1)
    d_t = y_post[send_u, send_i] - y_pre[send_u, send_i]
    out = {
        "pre_post": d_t,
        "post_vs_all": y_post[send_u, send_i] - mean_post[send_i],
        "did_all": d_t - mean_delta[send_i],
    }
    rand = np.full(len(send_u), np.nan)
    for i in np.unique(send_i):
        rows = np.nonzero(send_i == i)[0]
        pool = np.nonzero(free[:, i])[0]
        if len(pool) == 0:
            continue
        delta_pool = y_post[pool, i] - y_pre[pool, i]
        if k is None or k >= len(pool):
            rand[rows] = d_t[rows] - delta_pool.mean()
            continue
        rand[rows] = d_t[rows] - delta_pool[distinct_draws(rng, len(rows), len(pool), k)].mean(axis=1)
    out["did_random_k"] = rand
    return out


def distinct_draws(rng: np.random.Generator, rows: int, pool: int, k: int) -> np.ndarray:
    """[rows, k] indices into range(pool), distinct within each row (redraw rows with a repeat)."""
    idx = rng.integers(0, pool, (rows, k))
    while True:
        srt = np.sort(idx, axis=1)
        bad = np.nonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))[0] if k > 1 else np.zeros(0, int)
        if len(bad) == 0:
            return idx
        idx[bad] = rng.integers(0, pool, (len(bad), k))


# ----------------------------------------------------------------------------- metrics


STAT_COLUMNS = (
    "n", "e1", "e2", "x1", "y1", "x2", "y2", "xy", "sg", "t2", "xt", "t1",
    # the binarised reward r = 1[est > 0] against the sign of the true ΔY
    "pos", "neg", "r_pos", "r_neg",
    # within-user sums of squares and products of r and the true ΔY (each user's own
    # demeaned values; 0 for a user with one send)
    "w_rt", "w_rr", "w_tt", "users_2plus", "sends_2plus",
)  # fmt: skip


def _user_stats(est: np.ndarray, truth: np.ndarray, te: np.ndarray, user: np.ndarray, n_users: int) -> np.ndarray:
    """Per-user sums [n_users, len(STAT_COLUMNS)] used by every metric (so that bootstrapping
    users is a matrix product: a user drawn w times adds w times its row).

    The within-user columns are each user's own centred sums of the binarised reward r and
    the true ΔY y: sum (r - mean_u r)(y - mean_u y) = sum r y - (sum r)(sum y) / n_u, and
    likewise for r r and y y; a user with one scored send adds 0 to all three."""
    err = est - truth
    r = (est > 0).astype(np.float64)
    pos = (truth > 0).astype(np.float64)
    neg = (truth < 0).astype(np.float64)
    cols = {
        "n": np.ones_like(est),
        "e1": err,
        "e2": err * err,
        "x1": est,
        "y1": truth,
        "x2": est * est,
        "y2": truth * truth,
        "xy": est * truth,
        "sg": (r == pos).astype(np.float64),
        "t2": te * te,
        "xt": est * te,
        "t1": te,
        "pos": pos,
        "neg": neg,
        "r_pos": r * pos,
        "r_neg": r * neg,
        "r1": r,
        "ry": r * truth,
    }
    sums = {name: np.bincount(user, weights=c, minlength=n_users) for name, c in cols.items()}
    n = sums["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(n > 0, 1.0 / n, 0.0)
    sums["w_rt"] = sums["ry"] - sums["r1"] * sums["y1"] * inv
    sums["w_rr"] = sums["r1"] - sums["r1"] ** 2 * inv  # r * r = r
    sums["w_tt"] = sums["y2"] - sums["y1"] ** 2 * inv
    sums["users_2plus"] = (n >= 2).astype(np.float64)
    sums["sends_2plus"] = np.where(n >= 2, n, 0.0)
    return np.stack([sums[c] for c in STAT_COLUMNS], axis=1)


def _metrics_from_sums(s: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from summed stats (last axis: STAT_COLUMNS; leading axes: replicates).

    ``discrimination`` = P(r = 1 | true ΔY > 0) - P(r = 1 | true ΔY < 0) (``p_r1_pos``,
    ``p_r1_neg``), r = 1[estimate > 0]: how much more often the binarised reward is 1 for a
    good send than for a bad one (0: not at all). ``within_user_corr``: the correlation of r
    with the true ΔY after demeaning both per user (users with >= 2 scored sends): how well
    a user's own rewards rank that user's own sends."""
    c = {name: s[..., j] for j, name in enumerate(STAT_COLUMNS)}
    n, e1, e2, x1, y1, x2, y2, xy = (c[k] for k in ("n", "e1", "e2", "x1", "y1", "x2", "y2", "xy"))
    t1, t2, xt = c["t1"], c["t2"], c["xt"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my, mt = x1 / n, y1 / n, t1 / n
        vx, vy, vt = x2 / n - mx**2, y2 / n - my**2, t2 / n - mt**2
        p_pos, p_neg = c["r_pos"] / c["pos"], c["r_neg"] / c["neg"]
        return {
            "bias": e1 / n,
            "sd_error": np.sqrt(np.maximum(e2 / n - (e1 / n) ** 2, 0.0)),
            "rmse": np.sqrt(e2 / n),
            "corr": (xy / n - mx * my) / np.sqrt(vx * vy),
            "corr_purchases": (xt / n - mx * mt) / np.sqrt(vx * vt),
            "sign_accuracy": c["sg"] / n,
            "discrimination": p_pos - p_neg,
            "p_r1_pos": p_pos,
            "p_r1_neg": p_neg,
            "within_user_corr": c["w_rt"] / np.sqrt(c["w_rr"] * c["w_tt"]),
        }


# unit-free metrics, comparable across half-lives and windows (paired differences to the default)
UNIT_FREE = ("corr", "corr_purchases", "sign_accuracy", "discrimination", "within_user_corr")


def bootstrap_weights(n_users: int, replicates: int, seed: int) -> np.ndarray:
    """Poisson(1) weights per (replicate, user): the user-clustered (Poisson) bootstrap."""
    return np.random.default_rng([seed, 31337]).poisson(1.0, (replicates, n_users)).astype(np.float64)


def _interval(rep: np.ndarray) -> list[float]:
    """2.5 and 97.5 percentiles of the finite replicates (NaN if none: e.g. no truly negative send)."""
    rep = np.asarray(rep)[np.isfinite(rep)]
    return [float(v) for v in np.percentile(rep, [2.5, 97.5])] if len(rep) else [float("nan")] * 2


def compare(
    estimates: dict[str, np.ndarray],
    truth: np.ndarray,
    te: np.ndarray,
    user: np.ndarray,
    boot: np.ndarray,
    reference: str = "ours",
    replicates: dict | None = None,
) -> dict:
    """Point estimates, 95 % bootstrap intervals, and the paired differences of RMSE,
    discrimination and within-user correlation to ``reference``. ``replicates``, when given, receives every estimator's
    bootstrap replicates of the unit-free metrics (``UNIT_FREE``), for paired differences
    between settings evaluated with the same bootstrap weights."""
    n_users = boot.shape[1]
    res, reps = {}, {}
    for name, est in estimates.items():
        ok = np.isfinite(est)
        st = _user_stats(est[ok], truth[ok], te[ok], user[ok], n_users)
        tot = st.sum(axis=0)
        point = _metrics_from_sums(tot)
        rep = _metrics_from_sums(boot @ st)
        reps[name] = rep
        res[name] = {"n": int(ok.sum()), "mean_estimate": float(est[ok].mean()), "mean_truth": float(truth[ok].mean())}
        for m, v in point.items():
            res[name][m] = [float(v), *_interval(rep[m])]
        col = STAT_COLUMNS.index
        res[name]["n_truth_positive"] = int(tot[col("pos")])
        res[name]["n_truth_negative"] = int(tot[col("neg")])
        res[name]["within_user_users"] = int(tot[col("users_2plus")])  # users with >= 2 scored sends
        res[name]["within_user_sends"] = int(tot[col("sends_2plus")])  # and their sends
        if replicates is not None:
            replicates[name] = {m: rep[m] for m in UNIT_FREE} | {"_point": {m: float(point[m]) for m in UNIT_FREE}}
    if reference in reps:
        for name in estimates:
            if name == reference:
                continue
            for m in ("rmse", "discrimination", "within_user_corr"):
                d = reps[name][m] - reps[reference][m]
                res[name][f"{m}_minus_reference"] = [float(res[name][m][0] - res[reference][m][0]), *_interval(d)]
    return res


def paired_difference(reps: dict, base: dict) -> dict:
    """Per estimator and unit-free metric: this setting minus the default, [point, lo, hi],
    from replicates drawn with the same bootstrap weights (``compare(..., replicates=)``)."""
    out = {}
    for name, r in reps.items():
        if name not in base:
            continue
        out[name] = {}
        for m in UNIT_FREE:
            d = r[m] - base[name][m]
            out[name][m] = [float(r["_point"][m] - base[name]["_point"][m]), *_interval(d)]
    return out


def calibration(est: np.ndarray, truth: np.ndarray, te: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean true effect (ΔY units and purchases) per decile of the estimate."""
    ok = np.isfinite(est)
    est, truth, te = est[ok], truth[ok], te[ok]
    order = np.argsort(est, kind="stable")
    out = []
    for d, idx in enumerate(np.array_split(order, bins)):
        out.append(
            {
                "decile": d + 1,
                "n": int(len(idx)),
                "mean_estimate": float(est[idx].mean()),
                "mean_true_delta_y": float(truth[idx].mean()),
                "mean_true_purchases": float(te[idx].mean()),
            }
        )
    return out


# ----------------------------------------------------------------------------- one config


@dataclasses.dataclass
class Context:
    home: Path
    world: object
    scratch: Scratch
    users: pl.DataFrame  # user_id, uidx
    truth: pl.DataFrame  # send truth rows (send_id, uidx, t, offset, tau, true_effect)
    hours0: dt.datetime
    n_hours: int
    boot: np.ndarray
    seed: int
    progress: Progress


def _offsets(truth: pl.DataFrame) -> np.ndarray:
    utc_h = truth["sent_ts"].dt.hour().to_numpy() + truth["sent_ts"].dt.minute().to_numpy() / 60.0
    return np.mod(truth["local_hour"].to_numpy().astype(np.float64) - utc_h + 12.0, 24.0) - 12.0


def run_config(
    ctx: Context,
    settings: Settings,
    sends: pl.DataFrame | None = None,
    k_random: int | None = "same",
    want_calibration: bool = False,
) -> dict:
    """Measure with ``settings`` (dbt), then every estimator and the truth on the evaluated
    sends (``sends``: send_id column; default all eligible, see ``evaluate``)."""
    secs = ctx.scratch.measure(settings)
    W, h = settings.window_hours, settings.half_life_hours
    if W != int(W):
        raise NudgeflowError("evaluate measurement needs a whole number of window_hours")
    con = ctx.scratch.connect()
    try:
        have = {
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns "
                "where table_catalog = 'wh' and table_schema = 'marts' and table_name = 'send_outcomes'"
            ).fetchall()
        }
        extra = [c for c in ("delta_y_unadjusted", "gap_bin") if c in have]
        out = con.sql(
            "select o.send_id, o.y_pre, o.y_post, o.delta_y, o.n_controls, o.is_scored, "
            + "".join(f"o.{c}, " for c in extra)
            + "w.weights_as_of from wh.marts.send_outcomes as o "
            "join wh.intermediate.int_sends__windows as w using (send_id)"
        ).pl()
        adjusted = "gap_bin" in extra and "delta_y_unadjusted" in extra
        if adjusted:  # the measured adjustment, whether send_outcomes subtracted it or not
            adj = con.sql(
                "select weights_as_of, gap_bin, adjustment as measured_gap_adjustment from wh.marts.gap_adjustments"
            ).pl()
            out = out.join(adj, on=["weights_as_of", "gap_bin"], how="left")
        history = con.sql("select weights_as_of, event_name, weight from wh.marts.event_weights_history").pl()
        frame = ctx.truth.join(out, on="send_id", how="inner")
        if sends is not None:
            frame = frame.join(sends.select("send_id"), on="send_id", how="semi")
        # a fixed order (joins do not keep one): (d)'s random controls are drawn send by send
        frame = frame.filter(pl.col("is_scored")).sort("send_id")
        h0 = (ctx.hours0 - dt.datetime(1970, 1, 1)).total_seconds()
        t_h = (frame["t_epoch"].to_numpy() - h0) / 3600.0
        if np.any(np.abs(t_h - np.round(t_h)) > 1e-9):
            raise NudgeflowError("evaluate measurement needs sends at whole hours")
        inst, send_i = np.unique(np.round(t_h).astype(np.int64), return_inverse=True)
        # each send is scored with the weights of its weights date, the same for every send
        # of an instant (it depends on sent_ts + window only)
        wide = history.pivot(on="event_name", index="weights_as_of", values="weight")
        per_send = frame.select("weights_as_of").join(wide, on="weights_as_of", how="left")
        names = [c for c in wide.columns if c != "weights_as_of"]
        send_w = {n: per_send[n].fill_null(0.0).to_numpy() for n in names}
        first = np.zeros(len(inst), dtype=np.int64)
        first[send_i[::-1]] = np.arange(len(send_i))[::-1]
        inst_w = {n: v[first] for n, v in send_w.items()}
        if any(np.abs(v - inst_w[n][send_i]).max(initial=0) > 0 for n, v in send_w.items()):
            raise NudgeflowError("sends of one instant have different event weights")
        y_pre, y_post = hourly_panel(con, ctx.users, ctx.hours0, ctx.n_hours, h, int(W), inst, inst_w)
        msg = messaged_mask(con, ctx.users, ctx.hours0, inst, W)
    finally:
        con.close()
    send_u = frame["uidx"].to_numpy()
    # the panel reproduces the production's treated outcomes
    check = float(
        max(
            np.abs(y_pre[send_u, send_i] - frame["y_pre"].to_numpy()).max(initial=0),
            np.abs(y_post[send_u, send_i] - frame["y_post"].to_numpy()).max(initial=0),
        )
    )
    k = settings.neighbours if k_random == "same" else k_random
    rng = np.random.default_rng([ctx.seed, 4242, int(settings.neighbours), int(h), int(W)])
    est = baseline_estimates(
        y_pre, y_post, msg, send_u, send_i, None if (k is None or k >= ALL_NEIGHBOURS) else int(k), rng
    )
    est["ours"] = frame["delta_y"].to_numpy()
    variants = {}
    if "delta_y_unadjusted" in frame.columns:
        unadjusted = frame["delta_y_unadjusted"].to_numpy()
        variants["ours_unadjusted"] = unadjusted
        if adjusted:
            variants["ours_adjusted"] = unadjusted - frame["measured_gap_adjustment"].fill_null(0.0).to_numpy()
    same = {n: bool(np.allclose(v, est["ours"], rtol=0.0, atol=1e-12, equal_nan=True)) for n, v in variants.items()}
    est |= {n: v for n, v in variants.items() if not same[n]}
    truth = true_delta_y(
        ctx.world,
        frame["widx"].to_numpy(),
        frame["t_epoch"].to_numpy(),
        frame["offset_h"].to_numpy(),
        frame["tau"].to_numpy(),
        send_w,
        h,
        W,
    )
    te = frame["true_effect"].to_numpy()
    reps: dict = {}
    res = {
        "settings": {"neighbours": settings.neighbours, "half_life_hours": h, "window_hours": W},
        "n_sends": frame.height,
        "n_instants": int(len(inst)),
        "mean_controls_ours": float(frame["n_controls"].mean()),
        "mean_unmessaged_pool": float((~msg).sum(axis=0)[send_i].mean()),
        "share_truth_positive": float((truth > 0).mean()),
        # which variant ours is (send_outcomes.delta_y with this run's settings); None: unknown
        "ours_gap_adjusted": {(True, False): True, (False, True): False}.get(
            (same.get("ours_adjusted", False), same.get("ours_unadjusted", False))
        ),
        "panel_vs_production_max_abs_diff": check,
        "dbt_seconds": round(secs, 1),
        "estimators": compare(est, truth, te, send_u, ctx.boot, replicates=reps),
        "_replicates": reps,
    }
    if want_calibration:
        res["calibration"] = {name: calibration(e, truth, te) for name, e in est.items()}
    res["_frame"] = frame.select("send_id").with_columns(
        true_delta_y=pl.Series(truth), **{name: pl.Series(e) for name, e in est.items()}
    )
    return res


# ----------------------------------------------------------------------------- event weights


def event_weight_table(con, settings: Settings, boot_reps: int, seed: int, *, production: bool = True) -> list[dict]:
    """Event weights of the as-of horizon with 95 % user-bootstrap intervals.

    Computed from ``marts.event_weight_strata``, the per-user strata that dbt sums into
    ``event_weights`` (the estimator is written once, in dbt), so that the users can be
    resampled: the within-user Mantel-Haenszel ratio (sum_u a_ue (T - F_u) / T + 0.5) /
    (sum_u b_ue F_u / T + 0.5); the goal event (``settings.goal_event``, the one the scratch
    warehouse was built with) weighs max(1, the largest other weight). ``llr`` is the
    estimate for every event (the goal's included), ``weight`` what the outcomes use;
    ``production_weight`` is the warehouse's ``event_weights`` value (when ``production``)."""
    strata = con.sql(
        "select user_id, event_name, n_followed, n_not_followed, us_followed, horizon_us "
        "from wh.marts.event_weight_strata"
    ).pl()
    prod = dict(con.execute("select event_name, weight from wh.marts.event_weights").fetchall()) if production else {}
    rows = event_weight_intervals(strata, settings.goal_event, boot_reps, seed)
    return [{**r, "production_weight": prod.get(r["event_name"])} for r in rows]


# ----------------------------------------------------------------------------- main


def evaluate(
    home: Path,
    *,
    sweeps: bool = True,
    replicates: int = 200,
    seed: int = 0,
    dbt_vars: dict | None = None,
    progress: Progress = None,
) -> dict:
    """Evaluate the Measure step on the simulated world in ``home``; see the module docstring.
    Writes HOME/evaluation/measurement.json and .md and returns the results."""
    from nudgeflow.lab.simulate import load_world

    started = time.perf_counter()
    home = Path(home)
    world = load_world(home)
    settings = load_settings(home)
    days = _landed_days(home)
    if not days:
        raise NudgeflowError(f"{home} has no landed events")
    as_of_day = days[-1] + dt.timedelta(days=1)
    as_of = dt.datetime.combine(as_of_day, dt.time())
    _say(progress, f"scratch warehouse: ingesting {home / 'landing'}")
    scratch = Scratch(home, as_of, progress, dbt_vars)
    if not settings.placebo_sends and "placebo_sends" not in scratch.extra_vars:
        # the gap adjustment's variant needs placebos, which production leaves off by default;
        # they change no send's outcome, so the scratch folder and the report keep their names
        scratch.extra_vars["placebo_sends"] = 5000

    truth = send_truth(home)
    hours0 = dt.datetime.combine(world.start, dt.time())
    n_hours = int((as_of - hours0).total_seconds() // 3600)
    widx = pl.DataFrame({"user_id": world.user_ids, "widx": np.arange(world.n)})
    # users known to the warehouse = every user of the world (all land in users.parquet)
    users = pl.DataFrame({"user_id": world.user_ids.sort(), "uidx": np.arange(world.n)})
    max_w = max(WINDOW_SWEEP + (settings.window_hours,)) if sweeps else settings.window_hours
    truth = truth.join(widx, on="user_id").join(users, on="user_id")
    truth = truth.with_columns(t_epoch=pl.col("sent_ts").dt.epoch("us") / 1e6, offset_h=pl.Series(_offsets(truth)))
    # evaluated sends: full pre window inside the world, post window matured by as_of (for
    # the longest window of the sweep, so that every configuration scores the same sends)
    lo = hours0 + dt.timedelta(hours=max_w)
    hi = as_of - dt.timedelta(hours=max_w)
    truth = truth.filter((pl.col("sent_ts") >= lo) & (pl.col("sent_ts") <= hi))
    boot = bootstrap_weights(world.n, replicates, seed)
    ctx = Context(home, world, scratch, users, truth, hours0, n_hours, boot, seed, progress)
    _say(
        progress,
        f"{truth.height} sends between {lo} and {hi} (as of {as_of}); world {world.state['scenario']}, {world.n} users",
    )

    results: dict = {
        "home": str(home),
        "scenario": world.state["scenario"],
        "users": world.n,
        "as_of": str(as_of),
        "send_window": [str(lo), str(hi)],
        "settings": {
            "neighbours": settings.neighbours,
            "half_life_hours": settings.half_life_hours,
            "window_hours": settings.window_hours,
            "goal_event": settings.goal_event,
            "gap_adjustment": getattr(settings, "gap_adjustment", None),
        },
        "dbt_vars": dict(dbt_vars or {}),
        "bootstrap_replicates": replicates,
    }
    t0 = time.perf_counter()
    base = run_config(ctx, settings, want_calibration=True)
    base_sends = base.pop("_frame")
    base_reps = base.pop("_replicates")
    results["main"] = base
    _say(progress, f"main comparison: {base['n_sends']} sends in {time.perf_counter() - t0:.0f}s")
    # the same on sends without any other send of the user in [t - window, t + window)
    con = scratch.connect()
    try:
        clean = con.execute(
            f"""
            with gaps as (
                select send_id, sent_ts,
                       lag(sent_ts) over w as prev_ts, lead(sent_ts) over w as next_ts
                from wh.staging.stg_raw__sends
                window w as (partition by user_id order by sent_ts, send_id)
            )
            select send_id from gaps
            where (prev_ts is null or prev_ts < sent_ts - interval {int(settings.window_hours)} hour)
              and (next_ts is null or next_ts >= sent_ts + interval {int(settings.window_hours)} hour)
            """
        ).fetchall()
        ew = event_weight_table(con, settings, replicates, seed)
    finally:
        con.close()
    clean_ids = pl.DataFrame({"send_id": [r[0] for r in clean]})
    sub = base_sends.join(clean_ids, on="send_id", how="semi")
    if sub.height:
        uid = ctx.truth.join(sub, on="send_id", how="semi").select("send_id", "uidx", "true_effect")
        sub = sub.join(uid, on="send_id")
        results["isolated_sends"] = {
            "n_sends": sub.height,
            "estimators": compare(
                {e: sub[e].to_numpy() for e in ESTIMATORS + EXTRA_ESTIMATORS if e in sub.columns},
                sub["true_delta_y"].to_numpy(),
                sub["true_effect"].to_numpy(),
                sub["uidx"].to_numpy(),
                boot,
            ),
        }
    results["event_weights"] = ew
    if sweeps:
        results["sweeps"] = {"neighbours": [], "half_life_hours": [], "window_hours": []}
        sends = base_sends.select("send_id")
        plan = (
            [("neighbours", k) for k in K_SWEEP]
            + [("half_life_hours", v) for v in HALF_LIFE_SWEEP]
            + [("window_hours", v) for v in WINDOW_SWEEP]
        )
        for i, (name, value) in enumerate(plan):
            v = ALL_NEIGHBOURS if value == "all" else value
            s = dataclasses.replace(settings, **{name: v})
            if s == settings:
                r = {k: base[k] for k in base if k != "calibration"}
                reps = base_reps
            else:
                t0 = time.perf_counter()
                r = run_config(ctx, s, sends)
                r.pop("_frame")
                reps = r.pop("_replicates")
                _say(progress, f"sweep {i + 1}/{len(plan)} {name}={value}: {time.perf_counter() - t0:.0f}s")
            r = {**r, "value": value, "vs_default": paired_difference(reps, base_reps)}
            results["sweeps"][name].append(r)
    # the same world with another goal event must rank the events differently (dbt again)
    other_goal = "add_to_cart" if settings.goal_event != "add_to_cart" else "view_item"
    other = dataclasses.replace(settings, goal_event=other_goal)
    scratch.measure(other, targets=("event_weight_strata", "event_weights"))
    con = scratch.connect()
    try:
        results["event_weights_other_goal"] = {
            "goal_event": other_goal,
            "rows": event_weight_table(con, other, replicates, seed, production=False),
        }
    finally:
        con.close()
    results["seconds"] = round(time.perf_counter() - started, 1)
    out_dir = home / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "measurement" + scratch.dir.name.removeprefix("measurement")
    results["report"] = str(out_dir / f"{stem}.md")
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
    (out_dir / f"{stem}.md").write_text(markdown_report(results))
    return results


# ----------------------------------------------------------------------------- report


def format_ci(v: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(v[0])} [{fmt.format(v[1])}, {fmt.format(v[2])}]"


def comparison_table(est: dict) -> list[str]:
    lines = [
        "| estimator | n | bias | sd(error) | RMSE [95% CI] | RMSE − ours [95% CI] | corr(ΔY) | "
        "corr(purchases) | sign accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ESTIMATORS + EXTRA_ESTIMATORS:
        r = est.get(name)
        if r is None:
            continue
        diff = format_ci(r["rmse_minus_reference"], "{:+.3f}") if "rmse_minus_reference" in r else "—"
        lines.append(
            f"| {ESTIMATOR_LABELS[name]} | {r['n']} | {r['bias'][0]:+.3f} | {r['sd_error'][0]:.3f} | "
            f"{format_ci(r['rmse'])} | {diff} | {format_ci(r['corr'])} | {format_ci(r['corr_purchases'])} | "
            f"{format_ci(r['sign_accuracy'])} |"
        )
    return lines


def reward_table(est: dict) -> list[str]:
    """The binarised reward r = 1[estimate > 0] against the sign of the true ΔY."""
    lines = [
        "| estimator | P(r=1 \\| true ΔY > 0) | P(r=1 \\| true ΔY < 0) | discrimination [95% CI] | "
        "discrimination − ours [95% CI] | within-user corr(r, true ΔY) [95% CI] | within-user corr − ours [95% CI] | "
        "users (sends) with ≥ 2 sends |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ESTIMATORS + EXTRA_ESTIMATORS:
        r = est.get(name)
        if r is None or "discrimination" not in r:
            continue
        diff, wdiff = (
            format_ci(r[f"{m}_minus_reference"], "{:+.3f}") if f"{m}_minus_reference" in r else "—"
            for m in ("discrimination", "within_user_corr")
        )
        lines.append(
            f"| {ESTIMATOR_LABELS[name]} | {format_ci(r['p_r1_pos'])} | {format_ci(r['p_r1_neg'])} | "
            f"{format_ci(r['discrimination'], '{:+.3f}')} | {diff} | {format_ci(r['within_user_corr'], '{:+.3f}')} | "
            f"{wdiff} | {r['within_user_users']} ({r['within_user_sends']}) |"
        )
    return lines


def _sweep_estimators(name: str) -> tuple[str, ...]:
    if name == "neighbours":
        return ("ours", "ours_unadjusted", "ours_adjusted", "did_random_k")
    return ("ours", "ours_unadjusted", "ours_adjusted", "did_all", "pre_post", "post_vs_all")


def sweep_table(rows: list[dict], name: str) -> list[str]:
    lines = [
        f"| {name} | estimator | bias [95% CI] | sd(error) | RMSE [95% CI] | corr(ΔY) | sign accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for e in _sweep_estimators(name):
            m = r["estimators"].get(e)
            if m is None:
                continue
            lines.append(
                f"| {r['value']} | {ESTIMATOR_LABELS[e]} | {format_ci(m['bias'], '{:+.3f}')} | "
                f"{m['sd_error'][0]:.3f} | {format_ci(m['rmse'])} | {m['corr'][0]:.3f} | "
                f"{m['sign_accuracy'][0]:.3f} |"
            )
    return lines


def sweep_reward_table(rows: list[dict], name: str) -> list[str]:
    """Per setting and estimator: RMSE, correlation, discrimination and within-user
    correlation, and the unit-free ones' paired difference to the default setting."""
    lines = [
        f"| {name} | estimator | RMSE [95% CI] | corr(ΔY) [95% CI] | discrimination [95% CI] | "
        "discrimination − default [95% CI] | within-user corr [95% CI] | within-user corr − default [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for e in _sweep_estimators(name):
            m = r["estimators"].get(e)
            if m is None or "discrimination" not in m:
                continue
            d = r.get("vs_default", {}).get(e, {})
            dd = format_ci(d["discrimination"], "{:+.3f}") if "discrimination" in d else "—"
            dw = format_ci(d["within_user_corr"], "{:+.3f}") if "within_user_corr" in d else "—"
            lines.append(
                f"| {r['value']} | {ESTIMATOR_LABELS[e]} | {format_ci(m['rmse'])} | {format_ci(m['corr'])} | "
                f"{format_ci(m['discrimination'], '{:+.3f}')} | {dd} | "
                f"{format_ci(m['within_user_corr'], '{:+.3f}')} | {dw} |"
            )
    return lines


def weight_rows(rows: list[dict]) -> list[str]:
    """Markdown table of event_weight_table rows (the goal's llr is shown but not used)."""
    lines = ["| event | n | share followed | within-user LLR | weight [95% CI] |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['event_name']}{' (goal)' if r['is_goal'] else ''} | {r['n_events']} | "
            f"{r['share_followed']:.3f} | {r['llr']:+.3f} | "
            f"{r['weight']:+.3f} [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] |"
        )
    return lines


def markdown_report(res: dict) -> str:
    m = res["main"]
    lines = [
        f"# Measurement evaluation: {res['scenario']} world, {res['users']} users",
        "",
        f"As of {res['as_of']}; sends sent in [{res['send_window'][0]}, {res['send_window'][1]}]; "
        f"settings {res['settings']}; method options (dbt vars) {res.get('dbt_vars') or 'none (production defaults)'}; "
        f"{res['bootstrap_replicates']} user-bootstrap replicates; "
        f"{res.get('seconds', '?')} s.",
        "",
        f"## Matured sends ({m['n_sends']} sends at {m['n_instants']} send hours; "
        f"{m['mean_controls_ours']:.1f} controls per send for ours; "
        f"{m['mean_unmessaged_pool']:.0f} unmessaged users per instant; "
        f"true ΔY > 0 for {m['share_truth_positive']:.1%}; (a)–(d) recomputed Y of the treated "
        f"differ from the production's by at most {m['panel_vs_production_max_abs_diff']:.1e}; ours is "
        f"{ {True: 'with', False: 'without', None: 'with or without'}[m.get('ours_gap_adjusted')] } "
        "the gap adjustment)",
        "",
    ]
    lines += comparison_table(m["estimators"])
    lines += [
        "",
        "## The reward for decisions: r = 1[estimate > 0] against the sign of the true ΔY "
        f"({m['estimators']['ours'].get('n_truth_positive', '?')} sends with true ΔY > 0, "
        f"{m['estimators']['ours'].get('n_truth_negative', '?')} < 0)",
        "",
    ]
    lines += reward_table(m["estimators"])
    if "isolated_sends" in res:
        lines += [
            "",
            f"## Isolated sends (no other send of the user within ± window): {res['isolated_sends']['n_sends']} sends",
            "",
        ]
        lines += comparison_table(res["isolated_sends"]["estimators"])
        lines += ["", "Their binarised reward:", ""]
        lines += reward_table(res["isolated_sends"]["estimators"])
    if "calibration" in m:
        lines += [
            "",
            "## Calibration: mean true ΔY by decile of the estimate",
            "",
            "| decile | " + " | ".join(ESTIMATOR_LABELS[e] for e in ESTIMATORS) + " |",
            "|---" * (len(ESTIMATORS) + 1) + "|",
        ]
        for d in range(10):
            cells = [
                f"{m['calibration'][e][d]['mean_estimate']:+.2f} → {m['calibration'][e][d]['mean_true_delta_y']:+.3f}"
                for e in ESTIMATORS
            ]
            lines.append(f"| {d + 1} | " + " | ".join(cells) + " |")
    if res.get("event_weights"):
        diff = max(
            (
                abs(r["weight"] - r["production_weight"])
                for r in res["event_weights"]
                if r.get("production_weight") is not None
            ),
            default=float("nan"),
        )
        lines += [
            "",
            f"## Event weights as of {res['as_of']} (95% user-bootstrap CI; recomputed weights "
            f"differ from marts.event_weights by at most {diff:.1e})",
            "",
        ] + weight_rows(res["event_weights"])
    if res.get("event_weights_other_goal"):
        og = res["event_weights_other_goal"]
        lines += ["", f"## Event weights of the same world with goal event {og['goal_event']}", ""]
        lines += weight_rows(og["rows"])
    for name, rows in res.get("sweeps", {}).items():
        lines += ["", f"## Sweep over {name}", ""]
        lines += sweep_table(rows, name)
        lines += ["", f"The reward for decisions over {name} (differences: paired, same users and weights)", ""]
        lines += sweep_reward_table(rows, name)
    return "\n".join(lines) + "\n"
