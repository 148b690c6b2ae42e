"""Closed-loop simulated worlds for the policy harness, in memory.

A world is created once per (scenario, seed) with :func:`nudgeflow.lab.simulate.create_world`
(users, catalogue, latent preferences and ``history_days`` of the legacy sender), then every
policy plays the same ``days`` closed-loop days from the same state: each day D

1. the policy sees the eligibility of every (non-holdout user, message, local send hour) of
   D (consent, active, validity, country, 14 days before a repeat, 20 h between sends, one
   send a day, hours 8..21 local: the guardrails of ``nudgeflow.decide.eligibility``, as in the daily run) and
   the rewards measured as of D 00:00 UTC (:mod:`nudgeflow.lab.harness.rewards`, the dbt
   method in memory), and picks its sends;
2. :func:`nudgeflow.lab.simulate.simulate_day` draws the day's events.  Its organic randomness
   is keyed by (world seed, day, user block) whatever the sends, so two policies on the
   same world differ only through their sends (common random numbers: paired comparisons).

Nothing is written to disk after the world's creation.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from nudgeflow.config import Settings
from nudgeflow.decide.action_space import gap_bucket
from nudgeflow.decide.eligibility import Rules, eligibility, send_instants
from nudgeflow.lab.harness.rewards import DAY_US, US, Measurement
from nudgeflow.lab.simulate import create_world, load_world, simulate_day
from nudgeflow.lab.world import CHANNELS, EVENT_NAMES, World, hour_pref

START = dt.date(2026, 1, 5)


def epoch_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_US


def ensure_world(root: Path, scenario: str, seed: int, users: int, history_days: int, start: dt.date = START) -> Path:
    """The home of world (scenario, seed), created on first use (cached on disk)."""
    home = Path(root) / f"{scenario}-s{seed}-u{users}-h{history_days}"
    if not (home / "truth" / "state.json").exists():
        import os
        import shutil

        tmp = home.with_name(f".{home.name}.tmp{os.getpid()}")  # a killed creation leaves no world
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        create_world(tmp, users=users, history_days=history_days, start=start, seed=seed, scenario=scenario)
        if home.exists():
            shutil.rmtree(home)
        os.replace(tmp, home)
    return home


@dataclass
class DayContext:
    """What a policy may see on day D (users are the non-holdout users, in user_id order)."""

    day: dt.date
    as_of_us: int
    users: np.ndarray  # (U,) world user index
    user_ids: list[str]
    hours: list[int]
    send_at: np.ndarray  # (U, H) datetime64[s], NaT if the local hour does not occur
    send_at_s: np.ndarray  # (U, H) float epoch seconds, nan if none
    eligible: np.ndarray  # (U, M, H)
    gap_hours: np.ndarray  # (U, H) hours since the user's last send at that instant
    gap_bucket: np.ndarray  # (U, H)
    sim: Sim
    new_scored: np.ndarray  # send rows measured as of D 00:00 (for incremental learners)


@dataclass
class DayResult:
    day: dt.date
    sends: int
    purchases: int
    gmv: float
    true_effect: float
    decide_s: float
    decisions: int


class Sim:
    """One closed-loop run of one policy on one world (in memory)."""

    def __init__(
        self,
        home: Path,
        settings: Settings | None = None,
        *,
        measure: bool = True,
        controls: bool = True,
        truth_reward: bool = False,
    ):
        self.home = Path(home)
        self.s = settings or Settings()
        self.world: World = load_world(self.home)
        w = self.world
        self.first_day = dt.date.fromisoformat(w.state["first_closed_loop_date"])
        self.measure_on = measure
        self.truth_reward = truth_reward  # diagnostic: reward = 1 iff the send's true effect > 0
        self.meas = Measurement(w, self.s, controls=controls)
        self.users = np.nonzero(~w.is_holdout)[0]
        self.user_ids = w.user_ids.gather(self.users).to_list()
        self.tz = [w.tz_names[i] for i in w.tz_idx[self.users]]
        self.hours = list(self.s.send_hours)
        self._load_history()
        # catalogue arrays
        cat = w.catalogue
        self.active = cat["active"].fill_null(True).to_numpy()
        self.vf = cat["valid_from"].cast(pl.Int64).to_numpy().astype(float) / US
        self.vt = cat["valid_to"].cast(pl.Int64).to_numpy().astype(float) / US
        self.static_ok = (w.consent[:, np.maximum(w.msg_channel, 0)] & (w.msg_channel >= 0)[None, :] & w.country_ok)[
            self.users
        ]  # (U, M)
        self.send_prop: list = []

    # ------------------------------------------------------------------ history
    def _load_history(self) -> None:
        w = self.world
        uidx = {u: i for i, u in enumerate(w.user_ids.to_list())}
        ev = pl.read_parquet(self.home / "landing" / "events" / "*.parquet")
        code = {n: i for i, n in enumerate(EVENT_NAMES)}
        self.meas.add_events(
            ev["user_id"].replace_strict(uidx, return_dtype=pl.Int64).to_numpy(),
            ev["event_name"].replace_strict(code, return_dtype=pl.Int64).to_numpy(),
            ev["event_ts"].cast(pl.Int64).to_numpy(),
            ev["value"].to_numpy(),
        )
        eff = pl.read_parquet(self.home / "truth" / "send_effects" / "*.parquet").sort("sent_ts", "send_id")
        u = eff["user_id"].replace_strict(uidx, return_dtype=pl.Int64).to_numpy()
        m = eff["message_id"].replace_strict(w.msg_index, return_dtype=pl.Int64).to_numpy()
        c = eff["channel"].replace_strict({ch: i for i, ch in enumerate(CHANNELS)}, return_dtype=pl.Int64).to_numpy()
        t = eff["sent_ts"].cast(pl.Int64).to_numpy()
        self.meas.add_sends(u, m, c, t, ids=eff["send_id"].to_list())
        self.tau = eff["tau"].to_numpy()  # per send row (simulate_day's carry-over)
        self.true_effect = eff["true_effect"].to_numpy()
        self.send_day = (t // DAY_US).astype(np.int64)
        self.n_history_sends = len(u)

    # ------------------------------------------------------------------ one day
    def context(self, day: dt.date) -> DayContext:
        w, s = self.world, self.s
        as_of = epoch_us(day)
        new = self.meas.score(as_of) if self.measure_on else np.zeros(0, dtype=np.int64)
        if self.truth_reward and len(new):
            self.meas.reward[new] = (self.true_effect[new] > 0).astype(float)
        if self.measure_on and (self.meas.features is None or self.meas.features["as_of"] != as_of):
            self.meas.user_features(as_of)
        send_at, t = send_instants(day, self.tz, self.hours)
        n_u, n_m = len(self.users), len(w.msg_ids)
        su, sm, st = self.meas.sends["u"], self.meas.sends["m"], self.meas.sends["t"] / US
        pos = np.full(w.n, -1, dtype=np.int64)
        pos[self.users] = np.arange(n_u)
        last = np.full(n_u, np.nan)
        last_msg = np.full((n_u, n_m), np.nan)
        recent = st >= epoch_us(day) / US - (s.min_days_before_repeat + 1) * 86400
        for uu, mm, tt in zip(su[recent], sm[recent], st[recent]):
            p = pos[uu]
            if p < 0:
                continue
            if not tt <= last[p]:
                last[p] = tt
            if not tt <= last_msg[p, mm]:
                last_msg[p, mm] = tt
        # users whose last send is older than the repeat horizon: their last send time anyway
        older = np.nonzero(~recent)[0]
        if len(older):
            lu = np.full(w.n, np.nan)
            np.fmax.at(lu, su[older], st[older])
            last = np.fmax(last, lu[self.users])
        eligible, gap_h = eligibility(t, last, last_msg, self.static_ok, self.active, self.vf, self.vt, Rules.of(s))
        return DayContext(
            day=day,
            as_of_us=as_of,
            users=self.users,
            user_ids=self.user_ids,
            hours=self.hours,
            send_at=send_at,
            send_at_s=t,
            eligible=eligible,
            gap_hours=gap_h,
            gap_bucket=gap_bucket(gap_h, s.frequency_bucket_hours),
            sim=self,
            new_scored=new,
        )

    def deliver(
        self,
        day: dt.date,
        ui: np.ndarray,
        m: np.ndarray,
        h: np.ndarray,
        ctx: DayContext,
        propensity: np.ndarray | None = None,
    ) -> dict:
        w = self.world
        ui, m, h = (np.asarray(x, dtype=np.int64) for x in (ui, m, h))
        assert ctx.eligible[ui, m, h].all(), "policy chose an ineligible (user, message, hour)"
        assert len(np.unique(ui)) == len(ui), "one send per user and day"
        u = self.users[ui]
        t = ctx.send_at_s[ui, h]
        sends = {"u": u, "m": m, "c": w.msg_channel[m], "t": t}
        d0 = epoch_us(day) / US
        keep = self.meas.sends["t"] / US >= d0 - 7 * 86400
        prev = (self.meas.sends["u"][keep], self.meas.sends["t"][keep] / US, self.tau[keep])
        out = simulate_day(w, day, sends, np.full(len(u), "schedule"), prev)
        eff = out["effects"]  # sorted by (t, u, m) like its sends
        ev = out["events"]
        code = {n: i for i, n in enumerate(EVENT_NAMES)}
        uidx = {x: i for i, x in enumerate(w.user_ids.to_list())}
        if ev.height:
            self.meas.add_events(
                ev["user_id"].replace_strict(uidx, return_dtype=pl.Int64).to_numpy(),
                ev["event_name"].replace_strict(code, return_dtype=pl.Int64).to_numpy(),
                ev["event_ts"].cast(pl.Int64).to_numpy(),
                ev["value"].to_numpy(),
            )
        rows = np.zeros(0, dtype=np.int64)
        if eff.height:
            start = len(self.meas.sends)
            order = np.lexsort((m, u, t))
            rows = np.empty(len(u), dtype=np.int64)
            rows[order] = start + np.arange(len(u))
            eu = eff["user_id"].replace_strict(uidx, return_dtype=pl.Int64).to_numpy()
            em = eff["message_id"].replace_strict(w.msg_index, return_dtype=pl.Int64).to_numpy()
            et = eff["sent_ts"].cast(pl.Int64).to_numpy()
            self.meas.add_sends(eu, em, w.msg_channel[em], et, ids=eff["send_id"].to_list())
            self.tau = np.concatenate([self.tau, eff["tau"].to_numpy()])
            self.true_effect = np.concatenate([self.true_effect, eff["true_effect"].to_numpy()])
            self.send_day = np.concatenate([self.send_day, et // DAY_US])
            if propensity is not None:
                self.send_prop.append(
                    pl.DataFrame(
                        {
                            "u": u[order],
                            "m": m[order],
                            "t": t[order],
                            "propensity": np.asarray(propensity)[order],
                            "day": [day] * len(u),
                        }
                    )
                )
        purchases = ev.filter(pl.col("event_name") == "purchase")
        return {
            "rows": rows,
            "sends": eff.height,
            "purchases": purchases.height,
            "gmv": float(purchases["value"].sum() or 0.0),
            "true_effect": float(eff["true_effect"].sum() or 0.0),
        }


def oracle_values(ctx: DayContext) -> np.ndarray:
    """True expected incremental purchases of every eligible (user, message, hour) of the day
    (preferences of the day, fatigue from the gap since the user's last send, average
    weekday); -inf where not eligible.  (U, M, H)"""
    w = ctx.sim.world
    prefs = w.prefs_for_day(ctx.day)
    u = ctx.users
    hours = np.array(ctx.hours, dtype=float)
    mch = np.maximum(w.msg_channel, 0)
    lab = prefs.labels[u] @ w.label_incidence if w.value_cols else 0.0
    ch = prefs.channel[u][:, mch]
    hp = hour_pref(
        prefs.hour_peak[u, None],
        prefs.hour_amp[u, None],
        prefs.hour_width[u, None],
        hours[None, :],
        w.params["hour_offset"],
    )
    fat = w.fatigue_penalty(prefs, np.repeat(u[:, None], len(hours), 1).ravel(), ctx.gap_hours.ravel()).reshape(
        len(u), len(hours)
    )
    tau = (
        w.params["effect_scale"] * (prefs.base[u, None, None] + ch[:, :, None] + lab[:, :, None] + hp[:, None, :])
        - fat[:, None, :]
    )
    uu = np.broadcast_to(u[:, None, None], tau.shape).ravel()
    hh = np.broadcast_to(hours[None, None, :], tau.shape).ravel()
    te = w.oracle_true_effect(uu, hh, tau.ravel()).reshape(tau.shape)
    return np.where(ctx.eligible, te, -np.inf)


def run_policy(home: Path, policy, days: int, settings: Settings | None = None, *, progress=None) -> dict:
    """Play ``days`` closed-loop days of ``policy`` on the world in ``home``."""
    s = settings or Settings()
    overrides = getattr(policy, "settings_overrides", None)
    if overrides:  # an ablation of the measure step (e.g. no placebos)
        s = replace(s, **overrides)
    sim = Sim(
        home,
        s,
        measure=policy.needs_rewards,
        controls=getattr(policy, "controls", True),
        truth_reward=getattr(policy, "truth_reward", False),
    )
    policy.start(sim)
    rows: list[DayResult] = []
    for i in range(days):
        day = sim.first_day + dt.timedelta(days=i)
        ctx = sim.context(day)
        t0 = time.perf_counter()
        if sim.measure_on:
            policy.observe(ctx)
        ui, m, h, prop = policy.decide(ctx)
        took = time.perf_counter() - t0
        r = sim.deliver(day, ui, m, h, ctx, prop)
        if hasattr(policy, "sent"):
            t1 = time.perf_counter()
            policy.sent(r["rows"])
            took += time.perf_counter() - t1
        rows.append(
            DayResult(
                day,
                r["sends"],
                r["purchases"],
                r["gmv"],
                r["true_effect"],
                took,
                int(ctx.eligible.any(axis=(1, 2)).sum()),
            )
        )
    daily = pl.DataFrame([r.__dict__ for r in rows])
    loop_sends = np.arange(sim.n_history_sends, len(sim.meas.sends))
    return {"daily": daily, "sim": sim, "loop_sends": loop_sends}
