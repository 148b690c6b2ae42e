"""The latent side of the synthetic world used by :mod:`nudgeflow.lab.simulate`.

Everything here is ground truth that the pipeline never sees: user activity, the
organic seasonality, every user's preferences over channel, local send hour, label
values and frequency (fatigue), and the maths that turns them into a message's true
effect.  ``simulate.py`` does the I/O and the day-by-day event simulation.

Model summary (all times UTC unless said otherwise)
--------------------------------------------------
* Organic funnel.  User ``u`` opens the app as a Poisson process with intensity
  ``activity_u / 24 * season_u(t)`` per hour, ``season_u(t) = daily((local hour -
  chrono_shift_u) mod 24) * weekly(local weekday)``, both profiles normalised to mean 1.
  Each open leads to ``view_item`` w.p. ``p_view``, a view to ``add_to_cart`` w.p.
  ``p_cart``, a cart to ``purchase`` w.p. ``p_buy_u`` (value lognormal, mean ~30).
  So the organic purchase rate is ``r_u(t) = activity_u/24 * season_u(t) * p_view *
  p_cart * p_buy_u`` per hour.
* Message effect.  A send ``s`` at ``t_s`` has the true effect (log-multiplier)
  ``tau_s = base_u + pref_channel[u, c] + pref_hour_u(local hour) + sum_dims
  pref_label[u, dim, value] - fatigue_u * exp(-gap_h / fatigue_tau_h)`` where ``gap_h`` is
  the number of hours since the user's previous send (no previous send: no penalty).
  For ``0 <= t - t_s < 48 h`` it multiplies the open intensity by
  ``exp(alpha * tau * k)`` and the view->cart probability by ``exp((1 - alpha) * tau * k)``,
  ``k = exp(-(t - t_s) / 12 h)``; so the purchase intensity is multiplied by exactly
  ``exp(tau * k)``.  Effects of overlapping sends add up inside the exponent.
* ``true_effect`` of a send = expected incremental purchases in ``[t_s, t_s + 48 h)``
  caused by that send alone: ``sum_j r_u(t_s + s_j) * (exp(tau * k(s_j)) - 1) * ds``
  over half-hour steps (midpoints ``s_j``), ignoring other sends, the intensity caps and
  funnel steps truncated at midnight.  Its sign is always the sign of ``tau``.

Scenario ``lookalike`` (switch ``lookalike``, see ``LOOKALIKE_PARAMS``)
--------------------------------------------------------------------
Preferences are partly predictable from behaviour the user's events show, as
send-time-optimisation products assume; each predictable part explains at most half of
the preference's variance across users (the rest is independent noise).

* Activity hours.  Every user has a personal activity peak ``activity_peak_u`` (local
  hour on a half-hour grid): a slot (morning 9:00 / lunch 13:00 / evening 19:30, shares
  0.35 / 0.30 / 0.35, as the default send-hour peaks) + N(0, 1.5 h).  The user's daily
  profile is ``exp(daily_amp * DAILY_LOG(h) + lookalike_bump * exp(-d(h, peak)^2 / (2 w^2)))``
  normalised to mean 1 (``d`` circular, ``w = lookalike_bump_width_h``); it replaces the
  chrono shift (``chrono_shift`` is 0) and drives all the user's organic events: for
  peaks between 07:00 and 22:00 (96 % of the users) the profile's maximum is within an
  hour of ``activity_peak_u``; earlier or later ones are pulled towards the day by the
  population shape (night trough).
* Send hour.  W.p. ``lookalike_hour_match_p`` the user's ``hour_peak`` is
  ``activity_peak + N(0, lookalike_hour_match_sd)``, else an independent slot + N(0, 1.5 h);
  so ``E[hour_peak | activity_peak]`` is linear with slope ``lookalike_hour_match_p``.
  Explained share (R^2 of hour_peak on activity_peak, circular residuals), measured on
  10,000 users: 0.35 (seed 0; 0.35-0.38 over seeds 0-2; theory ``p^2 Var(a) / Var(hour_peak)``
  = 0.35).
* Fatigue.  ``log fatigue = const + fatigue_sigma * (sqrt(r) z + sqrt(1 - r) e)`` with
  ``z`` = standardised ``-log activity`` (light users are more fatigued), ``e`` ~ N(0, 1)
  independent and ``r = lookalike_fatigue_r2``; the marginal is the default lognormal.
  Measured R^2 of log fatigue on log activity (10,000 users): 0.41 (0.39-0.41 over seeds).
* Channel.  ``pref_channel_in_app = mean + channel_sd * (sqrt(r) z + sqrt(1 - r) e)`` with
  ``z`` the standardised indicator of the evening activity slot, ``r =
  lookalike_in_app_r2``: evening users prefer in-app.  Measured R^2 on the visible
  ``activity_peak >= 16:30`` (10,000 users): 0.29 (0.28-0.29 over seeds).

The activity peak is the ceiling of what events can reveal: from a few weeks of events a
light user's peak is only roughly visible (with 14 days of history on 10,000 users, the
circular mean hour of a user's app opens explains R^2 0.10 of hour_peak, 0.23 for users
with >= 20 opens; 0.02 in the default world).  Everything else (users, consents, catalogue,
the other preferences) equals the ``default`` world of the same seed; the new draws come
from their own stream (``S_LOOKALIKE``), so with the switch off (every other scenario)
nothing changes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

CHANNELS: tuple[str, ...] = ("push", "email", "in_app", "sms")
CONSENT_P = (0.62, 0.55, 0.70, 0.08)  # P(opted in) per channel, independent
# (timezone, country, weight); users with a missing timezone (UTC for the world) get a
# country drawn from the same mix.
TIMEZONES: tuple[tuple[str, str, float], ...] = (
    ("Europe/Paris", "FR", 0.20),
    ("Europe/London", "GB", 0.13),
    ("Europe/Berlin", "DE", 0.09),
    ("America/New_York", "US", 0.17),
    ("America/Los_Angeles", "US", 0.06),
    ("America/Sao_Paulo", "BR", 0.13),
    ("Asia/Kolkata", "IN", 0.18),
    ("UTC", "", 0.0),  # internal: users whose landed timezone is null
)
MISSING_TZ_SHARE = 0.01

EVENT_NAMES: tuple[str, ...] = (
    "app_open",
    "view_item",
    "add_to_cart",
    "purchase",
    "settings_view",
    "help_view",
)
GOAL_EVENT = "purchase"

# log daily profile by local hour 0..23 (exp(amp * x), then normalised to mean 1)
DAILY_LOG = np.array(
    [
        -0.6,
        -1.0,
        -1.4,
        -1.6,
        -1.6,
        -1.3,
        -0.8,
        -0.3,
        0.0,
        0.1,
        0.1,
        0.2,
        0.35,
        0.3,
        0.1,
        0.05,
        0.1,
        0.25,
        0.45,
        0.6,
        0.7,
        0.6,
        0.3,
        -0.1,
    ]
)
# weekly profile Monday..Sunday (1 + amp * x, normalised to mean 1): weekends ~ +40 %
WEEKLY = np.array([0.0, -0.03, -0.03, 0.0, 0.1, 0.4, 0.35])

# label dimension -> ((value, population mean of the preference), ...)
LABEL_DIMS_BASE: dict[str, tuple[tuple[str, float], ...]] = {
    "tone": (("friendly", 0.05), ("urgent", -0.08), ("playful", 0.0)),
    "offer": (("none", -0.08), ("discount", 0.10), ("free_shipping", 0.04)),
    "emoji": (("yes", 0.02), ("no", 0.0)),
}
LABEL_SD_BASE = {"tone": 0.2, "offer": 0.2, "emoji": 0.1}
LABEL_DIMS_EXTRA: dict[str, tuple[tuple[str, float], ...]] = {
    "cta": (("shop_now", 0.03), ("learn_more", -0.03), ("see_offer", 0.0)),
    "length": (("short", 0.02), ("long", -0.02)),
    "greeting": (("name", 0.04), ("generic", 0.0)),
}
CHANNEL_MEAN = {"push": 0.0, "email": -0.05, "in_app": 0.05, "sms": -0.05}

SCENARIOS = ("default", "strong_seasonality", "drift", "fatigue", "many_labels", "lookalike")

DEFAULT_PARAMS: dict = dict(
    # organic behaviour
    daily_amp=1.0,
    weekly_amp=1.0,
    activity_mean=1.2,
    activity_sigma=1.0,
    activity_max=30.0,
    p_view=0.5,
    p_cart=0.25,
    p_buy_a=4.0,
    p_buy_b=6.0,
    value_mean=30.0,
    value_sigma=0.5,
    settings_rate=0.15,
    help_rate=0.05,
    noise_sigma=0.7,
    delay_view_s=60.0,
    delay_cart_s=120.0,
    delay_buy_s=180.0,
    # message effect
    tau_base=0.18,
    base_sd=0.1,
    channel_sd=0.2,
    hour_amp_lo=0.2,
    hour_amp_hi=0.6,
    hour_width_lo=2.0,
    hour_width_hi=3.5,
    hour_offset=0.35,
    label_sparse=False,
    label_relevant_p=0.5,
    label_relevant_sd=0.3,
    label_irrelevant_sd=0.03,
    fatigue_mean=0.5,
    fatigue_sigma=0.5,
    fatigue_tau_h=36.0,
    kernel_h=12.0,
    window_h=48.0,
    alpha_open=0.6,
    open_cap=3.0,
    effect_scale=1.0,  # multiplies every tau (preferences and fatigue alike)
    # drift
    drift=False,
    drift_sd_week=0.06,
    drift_hour_sd_week=0.5,
    regime_offset_days=14,
    regime_share=0.5,
    # legacy sender
    legacy_share=0.3,
    legacy_hour=18,
    many_labels=False,
)

# The lookalike scenario's parameters (see the module docstring).  Deliberately not part of
# DEFAULT_PARAMS: the other scenarios' params, hence their truth/state.json, stay as they
# were.  Absent or ``lookalike=False``: the behaviour of every other scenario.
LOOKALIKE_PARAMS: dict = dict(
    lookalike=False,  # the switch; the values below only matter when it is on
    lookalike_bump=1.0,  # log height of the personal bump of the daily activity profile
    lookalike_bump_width_h=2.0,  # its sd in hours
    lookalike_hour_match_p=0.6,  # P(the preferred send hour sits at the activity peak)
    lookalike_hour_match_sd=1.0,  # sd (h) of hour_peak around the activity peak when it does
    lookalike_fatigue_r2=0.4,  # share of the log-fatigue variance explained by -log activity
    lookalike_in_app_r2=0.3,  # share of the in_app preference variance explained by evening activity
)
# activity slots of the lookalike scenario: (local peak hour, share); sd around the slot
ACTIVITY_SLOTS: tuple[tuple[float, float], ...] = ((9.0, 0.35), (13.0, 0.30), (19.5, 0.35))
ACTIVITY_SLOT_SD = 1.5
EVENING_SLOT = 2
ACTIVITY_GRID = 48  # activity peaks on a half-hour grid: one daily profile per grid point


def scenario_params(scenario: str) -> dict:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    p = dict(DEFAULT_PARAMS)
    if scenario == "strong_seasonality":
        p.update(daily_amp=2.0, weekly_amp=2.0)
    elif scenario == "drift":
        p.update(drift=True)
    elif scenario == "fatigue":
        p.update(fatigue_mean=2.0, fatigue_tau_h=48.0)
    elif scenario == "many_labels":
        p.update(many_labels=True, label_sparse=True, label_relevant_sd=0.2, tau_base=0.20)
    elif scenario == "lookalike":
        p.update(LOOKALIKE_PARAMS, lookalike=True)
    return p


def lookalike_params(params: dict) -> dict | None:
    """The lookalike parameters (defaults filled in) when the scenario's switch is on, else None."""
    if not params.get("lookalike"):
        return None
    return {**LOOKALIKE_PARAMS, **params}


def label_dims(params: dict) -> dict[str, tuple[tuple[str, float], ...]]:
    dims = dict(LABEL_DIMS_BASE)
    if params.get("many_labels"):
        dims.update(LABEL_DIMS_EXTRA)
    return dims


# ----------------------------------------------------------------------------- helpers

# independent random streams: np.random.default_rng([seed, STREAM, ...])
S_USERS, S_PREFS, S_CONSENT, S_CATALOGUE, S_OPEN, S_NOISE, S_LEGACY, S_DRIFT, S_REGIME = range(1, 10)
S_LOOKALIKE = 10  # only drawn from when the lookalike switch is on


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def holdout_score(user_ids) -> np.ndarray:
    """Stable uniform score in [0, 1) per user id: first 8 hex digits of md5 / 2**32.

    DuckDB equivalent: ``('0x' || left(md5(user_id), 8))::UBIGINT / 4294967296.0``.
    A user is in the holdout when the score is < holdout_fraction.
    """
    return np.array([int(hashlib.md5(u.encode()).hexdigest()[:8], 16) for u in user_ids], dtype=np.float64) / 2.0**32


def daily_profile(amp: float) -> np.ndarray:
    p = np.exp(amp * DAILY_LOG)
    return p / p.mean()


def weekly_profile(amp: float) -> np.ndarray:
    w = 1.0 + amp * WEEKLY
    w = np.maximum(w, 0.05)
    return w / w.mean()


def interp_daily(profile: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Periodic linear interpolation of a 24-point profile at float local hours."""
    h = np.mod(hour, 24.0)
    i = np.floor(h).astype(np.int64)
    f = h - i
    return profile[i % 24] * (1.0 - f) + profile[(i + 1) % 24] * f


def interp_profiles(profiles: np.ndarray, row: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """``interp_daily`` of ``profiles[row]`` ([K, 24]) at ``hour`` (``row`` broadcasts with it)."""
    h = np.mod(hour, 24.0)
    i = np.floor(h).astype(np.int64)
    f = h - i
    return profiles[row, i % 24] * (1.0 - f) + profiles[row, (i + 1) % 24] * f


def activity_profiles(params: dict) -> np.ndarray:
    """Lookalike daily profiles [ACTIVITY_GRID, 24]: row k peaks at local hour k / 2 (module docstring)."""
    lk = {**LOOKALIKE_PARAMS, **params}
    peak = np.arange(ACTIVITY_GRID) * 24.0 / ACTIVITY_GRID
    d = np.mod(np.arange(24)[None, :] - peak[:, None] + 12.0, 24.0) - 12.0
    logp = params["daily_amp"] * DAILY_LOG[None, :] + lk["lookalike_bump"] * np.exp(
        -0.5 * (d / lk["lookalike_bump_width_h"]) ** 2
    )
    p = np.exp(logp)
    return p / p.mean(axis=1, keepdims=True)


def activity_profile_index(activity_peak: np.ndarray) -> np.ndarray:
    """Row of ``activity_profiles`` of each activity peak (local hour on the half-hour grid)."""
    return np.rint(np.asarray(activity_peak) * ACTIVITY_GRID / 24.0).astype(np.int64) % ACTIVITY_GRID


@lru_cache(maxsize=256)
def tz_offsets_hours(tz_names: tuple[str, ...], day: date) -> np.ndarray:
    """UTC offset in hours of every timezone at UTC hours 0..23 of ``day``: [n_tz, 24]."""
    out = np.zeros((len(tz_names), 24))
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for i, name in enumerate(tz_names):
        z = ZoneInfo(name)
        for h in range(24):
            off = (base + timedelta(hours=h)).astimezone(z).utcoffset()
            out[i, h] = off.total_seconds() / 3600.0
    return out


def epoch_s(day: date) -> float:
    return float((day - date(1970, 1, 1)).days * 86400)


def hour_pref(
    peak: np.ndarray,
    amp: np.ndarray,
    width: np.ndarray,
    hour: np.ndarray,
    offset: float = DEFAULT_PARAMS["hour_offset"],
) -> np.ndarray:
    """Smooth bump around the preferred local hour; negative far from it."""
    d = np.mod(hour - peak + 12.0, 24.0) - 12.0
    return amp * (np.exp(-0.5 * (d / width) ** 2) - offset)


# ----------------------------------------------------------------------------- world


@dataclass
class Prefs:
    """Preferences in force on one day (drift makes them day-dependent)."""

    base: np.ndarray  # [N]
    channel: np.ndarray  # [N, C]
    labels: np.ndarray  # [N, V] one column per (dim, value)
    hour_peak: np.ndarray  # [N]
    hour_amp: np.ndarray
    hour_width: np.ndarray
    fatigue: np.ndarray  # [N]


class World:
    """Arrays of the latent world, built from ``truth/world_users.parquet``, the state and
    the landed catalogue."""

    def __init__(self, state: dict, users: pl.DataFrame, catalogue: pl.DataFrame):
        self.state = state
        self.params = {**DEFAULT_PARAMS, **state["params"]}  # older states lack new keys
        self.seed = int(state["seed"])
        self.start = date.fromisoformat(state["start"])
        self.dims = {d: tuple(v) for d, v in state["label_dims"].items()}
        users = users.sort("user_idx")
        self.n = users.height
        self.user_ids = users["user_id"]
        self.tz_names = tuple(state["tz_names"])
        self.tz_idx = users["tz_idx"].to_numpy().astype(np.int64)
        self.country = users["country"].to_numpy()
        self.is_holdout = users["is_holdout"].to_numpy()
        self.activity = users["activity"].to_numpy()
        self.p_buy = users["p_buy"].to_numpy()
        self.settings_rate = users["settings_rate"].to_numpy()
        self.help_rate = users["help_rate"].to_numpy()
        self.chrono = users["chrono_shift"].to_numpy().astype(np.int64)
        self.consent = np.stack([users[f"consent_{c}"].to_numpy() for c in CHANNELS], axis=1)
        self.value_cols = [(d, v) for d, vals in self.dims.items() for v in vals]
        self.prefs0 = Prefs(
            base=users["base"].to_numpy(),
            channel=np.stack([users[f"pref_channel_{c}"].to_numpy() for c in CHANNELS], axis=1),
            labels=np.stack([users[f"pref_{d}__{v}"].to_numpy() for d, v in self.value_cols], axis=1)
            if self.value_cols
            else np.zeros((self.n, 0)),
            hour_peak=users["hour_peak"].to_numpy(),
            hour_amp=users["hour_amp"].to_numpy(),
            hour_width=users["hour_width"].to_numpy(),
            fatigue=users["fatigue"].to_numpy(),
        )
        p = self.params
        self.daily = daily_profile(p["daily_amp"])
        self.weekly = weekly_profile(p["weekly_amp"])
        self.smax = float(self.daily.max() * self.weekly.max())
        # lookalike: one personal daily profile per user (a row of self.profiles) instead of
        # the shared one shifted by the chrono shift
        self.profiles: np.ndarray | None = None
        if lookalike_params(p) is not None:
            self.profiles = activity_profiles(p)
            self.profile_idx = activity_profile_index(users["activity_peak"].to_numpy())
            self.smax = float(self.profiles.max() * self.weekly.max())
        self.purchase_rate_h = self.activity / 24.0 * p["p_view"] * p["p_cart"] * self.p_buy
        # catalogue
        cat = catalogue.sort("message_id")
        self.catalogue = cat
        self.msg_ids = cat["message_id"]
        self.msg_index = {m: i for i, m in enumerate(self.msg_ids.to_list())}
        self.msg_channel = np.array(
            [CHANNELS.index(c) if c in CHANNELS else -1 for c in cat["channel"].to_list()], dtype=np.int64
        )
        col_of = {dv: j for j, dv in enumerate(self.value_cols)}
        inc = np.zeros((len(self.value_cols), cat.height))  # incidence value x message
        for d in self.dims:
            col = f"label_{d}"
            if col not in cat.columns:
                continue
            for m, v in enumerate(cat[col].to_list()):
                if v is not None and (d, v) in col_of:
                    inc[col_of[(d, v)], m] = 1.0
        self.label_incidence = inc
        # [N, M]: the user's country is allowed by the message (empty countries: everywhere)
        self.country_ok = np.ones((self.n, cat.height), dtype=bool)
        for m, cs in enumerate(cat["countries"].to_list()):
            allowed = [c.strip() for c in (cs or "").split(",") if c.strip()]
            if allowed:
                self.country_ok[:, m] = np.isin(self.country, allowed)
        self._eligible: np.ndarray | None = None
        self._oracle_cache: tuple | None = None

    # ------------------------------------------------------------------ preferences
    def prefs_for_day(self, day: date) -> Prefs:
        p = self.params
        if not p.get("drift"):
            return self.prefs0
        d = (day - self.start).days
        p0 = self.prefs0
        n, C, V = self.n, len(CHANNELS), len(self.value_cols)
        width = C + V + 1
        # random walk with weekly knots, linearly interpolated between knots
        k = max(d, 0) // 7
        frac = (max(d, 0) - 7 * k) / 7.0
        walk_k = np.zeros((n, width))
        for j in range(1, k + 1):
            walk_k += rng_for(self.seed, S_DRIFT, j).standard_normal((n, width))
        nxt = rng_for(self.seed, S_DRIFT, k + 1).standard_normal((n, width))
        walk = walk_k + frac * nxt
        sd = p["drift_sd_week"]
        channel = p0.channel + sd * walk[:, :C]
        labels = p0.labels + sd * walk[:, C : C + V]
        peak = p0.hour_peak + p["drift_hour_sd_week"] * walk[:, -1]
        regime = date.fromisoformat(self.state["regime_change_date"])
        if day >= regime:
            g = rng_for(self.seed, S_REGIME)
            switch = g.random(n) < p["regime_share"]
            new = _draw_prefs(g, n, label_dims(p), p)
            shift = g.uniform(4.0, 10.0, n) * np.where(g.random(n) < 0.5, -1.0, 1.0)
            channel = np.where(switch[:, None], new["channel"] + sd * walk[:, :C], channel)
            labels = np.where(switch[:, None], new["labels"] + sd * walk[:, C : C + V], labels)
            peak = np.where(switch, peak + shift, peak)
        return Prefs(p0.base, channel, labels, np.mod(peak, 24.0), p0.hour_amp, p0.hour_width, p0.fatigue)

    def tau(
        self, prefs: Prefs, u: np.ndarray, m: np.ndarray, local_hour: np.ndarray, channel: np.ndarray | None = None
    ) -> np.ndarray:
        """tau without fatigue for users ``u``, messages ``m`` at float local hours."""
        ch = self.msg_channel[m] if channel is None else channel
        lab = (prefs.labels[u] * self.label_incidence[:, m].T).sum(axis=1) if self.value_cols else 0.0
        return self.params["effect_scale"] * (
            prefs.base[u]
            + prefs.channel[u, ch]
            + hour_pref(
                prefs.hour_peak[u], prefs.hour_amp[u], prefs.hour_width[u], local_hour, self.params["hour_offset"]
            )
            + lab
        )

    def fatigue_penalty(self, prefs: Prefs, u: np.ndarray, gap_h: np.ndarray) -> np.ndarray:
        f = np.where(
            np.isfinite(gap_h), np.exp(-np.nan_to_num(gap_h, nan=1e9, posinf=1e9) / self.params["fatigue_tau_h"]), 0.0
        )
        return self.params["effect_scale"] * prefs.fatigue[u] * f

    # ------------------------------------------------------------------ seasonality
    def season(self, u: np.ndarray, local_hour_abs: np.ndarray) -> np.ndarray:
        """Organic multiplier at local time given as hours since 1970-01-01 local midnight."""
        hod = np.mod(local_hour_abs, 24.0)
        wd = (np.floor(local_hour_abs / 24.0).astype(np.int64) + 3) % 7  # 1970-01-01: Thu
        if self.profiles is not None:
            return interp_profiles(self.profiles, self.profile_idx[u], hod) * self.weekly[wd]
        return interp_daily(self.daily, hod - self.chrono[u]) * self.weekly[wd]

    def kernel(self, dt_h: np.ndarray) -> np.ndarray:
        p = self.params
        return np.where((dt_h >= 0) & (dt_h < p["window_h"]), np.exp(-dt_h / p["kernel_h"]), 0.0)

    # ------------------------------------------------------------------ truth
    def true_effect_sends(
        self, u: np.ndarray, t_epoch_s: np.ndarray, offset_h: np.ndarray, tau: np.ndarray, step_h: float = 0.5
    ) -> np.ndarray:
        """Expected incremental purchases in [t, t+48h) of sends (see module docstring)."""
        if len(u) == 0:
            return np.zeros(0)
        p = self.params
        s = (np.arange(int(p["window_h"] / step_h)) + 0.5) * step_h  # [S]
        k = np.exp(-s / p["kernel_h"])
        out = np.zeros(len(u))
        for a in range(0, len(u), 5_000):  # bounded memory
            b = slice(a, a + 5_000)
            local = (t_epoch_s[b] / 3600.0 + offset_h[b])[:, None] + s[None, :]
            seas = self.season(np.broadcast_to(u[b][:, None], local.shape), local)
            out[b] = (seas * np.expm1(tau[b][:, None] * k[None, :])).sum(axis=1) * step_h
        return out * self.purchase_rate_h[u]

    def _oracle_table(self):
        """T[shift, local hour, tau grid]: sum_j daily(h + s_j - shift)(e^{tau k_j} - 1) ds
        with the weekly factor 1 (an average weekday).  Lookalike: T[profile row, ...] with
        the personal profiles."""
        if self._oracle_cache is not None:
            return self._oracle_cache
        p = self.params
        step_h = 0.5
        s = (np.arange(int(p["window_h"] / step_h)) + 0.5) * step_h
        k = np.exp(-s / p["kernel_h"])
        grid = np.linspace(-6.0, 6.0, 1201)
        shifts = np.arange(-3, 4)
        hours = np.arange(24)
        if self.profiles is not None:
            rows = np.arange(len(self.profiles))[:, None, None]
            seas = interp_profiles(self.profiles, rows, hours[None, :, None] + s[None, None, :])  # [K, h, S]
        else:
            seas = interp_daily(self.daily, hours[None, :, None] + s[None, None, :] - shifts[:, None, None])
        em = np.expm1(grid[:, None] * k[None, :])  # [G, S]
        table = np.einsum("ahs,gs->ahg", seas, em) * step_h
        self._oracle_cache = (grid, shifts, table)
        return self._oracle_cache

    def oracle_true_effect(self, u: np.ndarray, hour: np.ndarray, tau: np.ndarray) -> np.ndarray:
        grid, shifts, table = self._oracle_table()
        pos = np.clip((tau - grid[0]) / (grid[1] - grid[0]), 0, len(grid) - 1.000001)
        i = np.floor(pos).astype(np.int64)
        f = pos - i
        if self.profiles is not None:
            sh = self.profile_idx[u]
        else:
            sh = np.clip(self.chrono[u] - shifts[0], 0, len(shifts) - 1)
        h = hour.astype(np.int64) % 24
        te = table[sh, h, i] * (1.0 - f) + table[sh, h, i + 1] * f
        return te * self.purchase_rate_h[u]

    def eligible_static(self) -> np.ndarray:
        """[N, M] consent x active x country allowed x not holdout (validity windows ignored)."""
        if self._eligible is None:
            active = self.catalogue["active"].fill_null(True).to_numpy()
            ch_ok = self.msg_channel >= 0
            ok = self.consent[:, np.maximum(self.msg_channel, 0)] & ch_ok[None, :]
            self._eligible = ok & active[None, :] & self.country_ok & ~self.is_holdout[:, None]
        return self._eligible


# ----------------------------------------------------------------------------- creation


def _draw_prefs(g: np.random.Generator, n: int, dims: dict, p: dict) -> dict:
    channel = np.stack([g.normal(CHANNEL_MEAN[c], p["channel_sd"], n) for c in CHANNELS], axis=1)
    cols = []
    for d, vals in dims.items():
        if p["label_sparse"]:
            relevant = g.random(n) < p["label_relevant_p"]
            sd = np.where(relevant, p["label_relevant_sd"], p["label_irrelevant_sd"])
        else:
            sd = np.full(n, LABEL_SD_BASE.get(d, 0.2))
        for _, mean in vals:
            cols.append(mean + sd * g.standard_normal(n))
    labels = np.stack(cols, axis=1) if cols else np.zeros((n, 0))
    return {"channel": channel, "labels": labels}


def _draw_lookalike(seed: int, n: int, act: np.ndarray, pr: dict, params: dict) -> dict:
    """Activity peak, hour_peak, fatigue and the in_app preference of the lookalike scenario
    (module docstring), from their own stream; overwrites ``pr["channel"][:, in_app]``."""
    lk = lookalike_params(params)
    g = rng_for(seed, S_LOOKALIKE)
    centre = np.array([c for c, _ in ACTIVITY_SLOTS])
    share = np.array([w for _, w in ACTIVITY_SLOTS])
    share = share / share.sum()
    slot = g.choice(len(centre), size=n, p=share)
    step = 24.0 / ACTIVITY_GRID
    activity_peak = np.mod(np.rint((centre[slot] + g.normal(0.0, ACTIVITY_SLOT_SD, n)) / step) * step, 24.0)
    match = g.random(n) < lk["lookalike_hour_match_p"]
    near = activity_peak + g.normal(0.0, lk["lookalike_hour_match_sd"], n)
    other = centre[g.choice(len(centre), size=n, p=share)] + g.normal(0.0, ACTIVITY_SLOT_SD, n)
    hour_peak = np.mod(np.where(match, near, other), 24.0)
    # fatigue: standardised -log activity (the activity cap is ignored: > 3.7 sd away)
    sa = params["activity_sigma"]
    mu_a = math.log(params["activity_mean"]) - sa**2 / 2
    z = -(np.log(act) - mu_a) / sa if sa > 0 else np.zeros(n)
    r = lk["lookalike_fatigue_r2"]
    fs = params["fatigue_sigma"]
    log_f = (
        math.log(params["fatigue_mean"]) - fs**2 / 2 + fs * (math.sqrt(r) * z + math.sqrt(1 - r) * g.standard_normal(n))
    )
    # in_app preference: evening people prefer in-app
    q = share[EVENING_SLOT]
    z_ev = ((slot == EVENING_SLOT) - q) / math.sqrt(q * (1 - q))
    rc = lk["lookalike_in_app_r2"]
    j = CHANNELS.index("in_app")
    e = g.standard_normal(n)
    pr["channel"][:, j] = CHANNEL_MEAN["in_app"] + params["channel_sd"] * (math.sqrt(rc) * z_ev + math.sqrt(1 - rc) * e)
    return {"activity_peak": activity_peak, "hour_peak": hour_peak, "fatigue": np.exp(log_f), "slot": slot}


def build_users(n: int, seed: int, start: date, params: dict, holdout_fraction: float):
    """Returns (landing users, landing consents, truth world_users)."""
    g = rng_for(seed, S_USERS)
    width = max(6, len(str(n)))
    uid_s = pl.select(
        pl.concat_str([pl.lit("u"), pl.int_range(1, n + 1).cast(pl.String).str.zfill(width)]).alias("user_id")
    ).to_series()
    user_ids = uid_s.to_list()
    tz_names = tuple(t for t, _, _ in TIMEZONES)
    w = np.array([x for _, _, x in TIMEZONES])
    tz_idx = g.choice(len(TIMEZONES), size=n, p=w / w.sum())
    country = np.array([c for _, c, _ in TIMEZONES], dtype=object)[tz_idx]
    missing_tz = g.random(n) < MISSING_TZ_SHARE
    landed_tz = np.array(tz_names, dtype=object)[tz_idx]
    landed_tz[missing_tz] = None
    tz_idx = np.where(missing_tz, tz_names.index("UTC"), tz_idx)
    act = np.minimum(
        g.lognormal(math.log(params["activity_mean"]) - params["activity_sigma"] ** 2 / 2, params["activity_sigma"], n),
        params["activity_max"],
    )
    p_buy = g.beta(params["p_buy_a"], params["p_buy_b"], n)
    ns = params["noise_sigma"]
    settings_rate = g.lognormal(math.log(params["settings_rate"]) - ns**2 / 2, ns, n)
    help_rate = g.lognormal(math.log(params["help_rate"]) - ns**2 / 2, ns, n)
    chrono = g.choice(np.arange(-2, 3), size=n, p=[0.1, 0.2, 0.4, 0.2, 0.1])
    upd = g.integers(1, 90 * 86400, n)
    start_s = epoch_s(start)
    updated_ts = ((start_s - upd) * 1_000_000).astype(np.int64)

    # preferences
    gp = rng_for(seed, S_PREFS)
    dims = label_dims(params)
    base = gp.normal(params["tau_base"], params["base_sd"], n)
    pr = _draw_prefs(gp, n, dims, params)
    # preferred local send hour: morning / lunch / evening people, later for late chronotypes
    comp = gp.random(n) + 0.08 * chrono
    peak = np.where(
        comp < 0.35, gp.normal(9.0, 1.5, n), np.where(comp < 0.65, gp.normal(13.0, 1.5, n), gp.normal(19.5, 1.5, n))
    )
    peak = np.mod(peak + 0.5 * chrono, 24.0)
    hour_amp = gp.uniform(params["hour_amp_lo"], params["hour_amp_hi"], n)
    hour_width = gp.uniform(params["hour_width_lo"], params["hour_width_hi"], n)
    fs = params["fatigue_sigma"]
    fatigue = gp.lognormal(math.log(params["fatigue_mean"]) - fs**2 / 2, fs, n)
    lookalike = _draw_lookalike(seed, n, act, pr, params) if lookalike_params(params) is not None else None
    if lookalike is not None:  # behaviour-linked preferences replace the default draws
        peak, fatigue = lookalike["hour_peak"], lookalike["fatigue"]
        chrono = np.zeros(n, dtype=chrono.dtype)  # the personal profile replaces the chrono shift

    # consents
    gc = rng_for(seed, S_CONSENT)
    consent = np.stack([gc.random(n) < p for p in CONSENT_P], axis=1)
    has_row = consent | (gc.random((n, len(CHANNELS))) < 0.5)  # explicit opt-outs
    flipped = has_row & (gc.random((n, len(CHANNELS))) < 0.04)  # an older, opposite row
    c_upd = start_s - gc.integers(1, 60 * 86400, (n, len(CHANNELS)))
    c_old = c_upd - gc.integers(86400, 200 * 86400, (n, len(CHANNELS)))
    uu, cc = np.nonzero(has_row)
    fu, fc = np.nonzero(flipped)
    consents = pl.DataFrame(
        {
            "user_id": uid_s.gather(np.concatenate([uu, fu])),
            "channel": pl.Series(CHANNELS).gather(np.concatenate([cc, fc])),
            "opted_in": np.concatenate([consent[uu, cc], ~consent[fu, fc]]),
            "updated_ts": pl.Series((np.concatenate([c_upd[uu, cc], c_old[fu, fc]]) * 1_000_000).astype(np.int64)).cast(
                pl.Datetime("us")
            ),
        }
    ).sort("user_id", "channel", "updated_ts")

    users = pl.DataFrame(
        {
            "user_id": uid_s,
            "timezone": pl.Series(landed_tz.tolist(), dtype=pl.String),
            "country": pl.Series(country.tolist(), dtype=pl.String),
            "updated_ts": pl.Series(updated_ts).cast(pl.Datetime("us")),
        }
    )
    holdout = holdout_score(user_ids) < holdout_fraction
    cols = {
        "user_id": uid_s,
        "user_idx": np.arange(n, dtype=np.int32),
        "timezone": pl.Series(np.array(tz_names, dtype=object)[tz_idx].tolist(), dtype=pl.String),
        "tz_idx": tz_idx.astype(np.int16),
        "country": country.tolist(),
        "is_holdout": holdout,
        "activity": act,
        "p_buy": p_buy,
        "settings_rate": settings_rate,
        "help_rate": help_rate,
        "chrono_shift": chrono.astype(np.int8),
        **({"activity_peak": lookalike["activity_peak"]} if lookalike is not None else {}),
        "base": base,
        "fatigue": fatigue,
        "hour_peak": peak,
        "hour_amp": hour_amp,
        "hour_width": hour_width,
    }
    for j, c in enumerate(CHANNELS):
        cols[f"consent_{c}"] = consent[:, j]
    for j, c in enumerate(CHANNELS):
        cols[f"pref_channel_{c}"] = pr["channel"][:, j]
    j = 0
    for d, vals in dims.items():
        for v, _ in vals:
            cols[f"pref_{d}__{v}"] = pr["labels"][:, j]
            j += 1
    world_users = pl.DataFrame(cols)
    return users, consents, world_users, tz_names


# message_id, channel, tone, offer, emoji
_BASE_MESSAGES = (
    ("push", "friendly", "none", "yes"),
    ("push", "urgent", "discount", "no"),
    ("push", "playful", "free_shipping", "yes"),
    ("push", "friendly", "discount", "no"),
    ("push", "urgent", "free_shipping", "yes"),
    ("push", "playful", "none", "no"),
    ("email", "friendly", "discount", "no"),
    ("email", "urgent", "none", "no"),
    ("email", "playful", "discount", "yes"),
    ("email", "friendly", "free_shipping", "yes"),
    ("email", "urgent", "discount", "yes"),
    ("in_app", "playful", "discount", "yes"),
    ("in_app", "friendly", "none", "no"),
    ("in_app", "urgent", "free_shipping", "no"),
    ("in_app", "friendly", "discount", "yes"),
    ("sms", "urgent", "discount", "no"),
)
_EXTRA_MESSAGES = (
    ("push", "friendly", "free_shipping", "no"),
    ("push", "playful", "discount", "yes"),
    ("email", "urgent", "free_shipping", "no"),
    ("email", "friendly", "none", "yes"),
    ("in_app", "playful", "free_shipping", "no"),
    ("in_app", "urgent", "discount", "yes"),
    ("push", "urgent", "none", "yes"),
    ("sms", "friendly", "free_shipping", "no"),
)
_OPENERS = {"friendly": "Hi there", "urgent": "Last chance", "playful": "Psst"}
_OFFERS = {
    "none": "new picks are waiting for you",
    "discount": "15% off your next order",
    "free_shipping": "free shipping on your next order",
}


def build_catalogue(seed: int, start: date, first_closed: date, params: dict) -> pl.DataFrame:
    rows = list(_BASE_MESSAGES) + (list(_EXTRA_MESSAGES) if params.get("many_labels") else [])
    n = len(rows)
    ts = lambda d: datetime(d.year, d.month, d.day)  # noqa: E731
    active = [True] * n
    active[7] = False  # msg_008
    active[13] = False  # msg_014
    valid_from: list = [None] * n
    valid_to: list = [None] * n
    valid_from[4], valid_to[4] = ts(start + timedelta(days=2)), ts(first_closed + timedelta(days=14))
    valid_from[9] = ts(first_closed + timedelta(days=7))  # a campaign starting later
    countries: list = [None] * n
    countries[8] = "FR,GB"
    countries[14] = "US"
    data = {
        "message_id": [f"msg_{i + 1:03d}" for i in range(n)],
        "channel": [r[0] for r in rows],
        "active": active,
        "valid_from": pl.Series(valid_from, dtype=pl.Datetime("us")),
        "valid_to": pl.Series(valid_to, dtype=pl.Datetime("us")),
        "countries": pl.Series(countries, dtype=pl.String),
        "title": [f"{_OPENERS[r[1]]}{' 🎉' if r[3] == 'yes' else ''}" for r in rows],
        "body": [f"{_OPENERS[r[1]]}: {_OFFERS[r[2]]}{' 🛍️' if r[3] == 'yes' else '.'}" for r in rows],
        "label_tone": [r[1] for r in rows],
        "label_offer": [r[2] for r in rows],
        "label_emoji": [r[3] for r in rows],
    }
    if params.get("many_labels"):
        g = rng_for(seed, S_CATALOGUE)
        for d, vals in LABEL_DIMS_EXTRA.items():
            names = [v for v, _ in vals]
            data[f"label_{d}"] = pl.Series(
                [names[g.integers(len(names))] if g.random() < 0.6 else None for _ in range(n)], dtype=pl.String
            )
    return pl.DataFrame(data)
