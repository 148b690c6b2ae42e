"""In-memory reward of the policy harness: mirrors the dbt measure models, in numpy.

Running dbt once per simulated day and per policy is far too slow for a harness that plays
hundreds of 28-day worlds, so :class:`Measurement` recomputes, in memory and for one as-of
time at a time, exactly what these dbt models compute (same parameters, same order of
operations):

* ``int_events__goal_followed`` + ``int_goals__followed_time`` + ``event_weights_history``:
  per weights date d, over the horizon [d - 28 d, d - 72 h) of length T (microseconds), an
  event at t is "followed" when a goal event of its user comes in (t, t + 72 h], strictly
  after t (a goal does not follow itself); a user's followed time is the union over its goals
  g of [g - 72 h, g) (per goal the disjoint piece [max(g - 72 h, previous goal), g)), F_u
  microseconds of it inside the horizon.  Per event name e, Mantel-Haenszel over users:
  mh_followed_e = sum_u a_ue (T - F_u) / T and mh_not_followed_e = sum_u b_ue F_u / T (a_ue,
  b_ue: the user's events e in the horizon that are / are not followed; the integer sums in
  microseconds computed exactly and divided once by T, like the SQL), llr_e =
  ln((mh_followed_e + 0.5) / (mh_not_followed_e + 0.5)).  w_e = llr_e for every name in the
  horizon but the goal event, whose weight is max(1, the largest llr of the other names at
  d) (1 if none; the dbt var goal_weight is not mirrored), whether or not a goal is in the horizon;
  names absent from the horizon weigh 0;
* ``int_user_features``: 28-day activity features, their z-scores (population sd), and the
  matching cell = UTC offset at as_of x goal-or-not x activity bucket of ~``cell_size`` users
  (rank by n_events, active days, md5(user_id), user_id);
* ``int_sends__to_score`` / ``int_sends__windows``: the sends matured by as_of (sent_ts +
  48 h <= as_of) and not yet scored (outcomes are frozen once measured), each scored with
  the event weights of its weights date (``event_weights_history``: the first midnight at or
  after its maturity, capped at as_of);
* ``int_user_features__dated`` + ``int_sends__controls``: the candidate controls of a send,
  the max(k = 10, ``pre_match_candidates``) nearest users of the treated user's cell on the
  send's day (features at date_trunc('day', sent_ts); Euclidean distance on the 4 z-scores;
  ties by md5(user_id), then user_id; their order is control_rank) without any send in
  [t - 48 h, t + 48 h) (control_pool 'cell');
* ``decayed_outcomes`` macro: y_pre / y_post = sum of w_e * 2^(-|t_e - t| / 24 h) over the
  user's events in [t - 48 h, t) / [t, t + 48 h), for the treated user and every candidate;
* ``int_sends__outcomes_controls``: with ``pre_match_candidates`` > 0 (default 30, the dbt
  var) the k candidates per send with the smallest distance^2 + ``pre_match_weight`` (4.0) *
  ((y_pre_c - y_pre_treated) / sd)^2, sd = population sd of y_pre over the candidates of all
  the batch's sends with the same sent_ts (a 0 sd drops the term), ties by control_rank, are
  the controls; with 0, the k nearest candidates are;
* ``marts.send_outcomes``: delta_y = (y_post - y_pre) - mean over controls of (y_post - y_pre),
  reward = 1 if delta_y > 0 else 0, scored when there is at least one control (min_controls);
* ``int_sends__actions`` / ``marts.send_actions`` / ``marts.action_outcomes``: the actions
  of each send (channel, local send hour, frequency bucket of the gap since the user's
  previous send, the message's labels) and per-(user, action) successes and trials, with
  forgetting: each send weighted 2^(-age / evidence_half_life_days) (the weighted pair that
  the pipeline reads).

Every parameter (``goal_event``, ``cell_size``, ``feature_window_days``,
``pre_match_candidates``, ``pre_match_weight``, ...) is the setting of the same name in
:class:`nudgeflow.config.Settings`, as the dbt vars are; ``pre_match_candidates=0`` matches on
the features only. ``control_pool`` 'group' and ``goal_weight`` are not mirrored (refused).
``controls=False`` is the harness's ablation "no neighbour controls": reward = 1 if
y_post - y_pre > 0 (an interrupted time series without the control's change).

Timestamps are integer microseconds since the Unix epoch (the warehouse's precision); users
and messages are indices into the :class:`nudgeflow.lab.world.World` arrays.
``tests/test_harness.py`` checks this module against ``marts.send_outcomes`` of a real dbt
build on a small home.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from scipy.special import ndtr

from nudgeflow.config import Settings
from nudgeflow.decide.action_space import frequency_labels, gap_bin_labels, gap_bucket
from nudgeflow.intervals import mh_event_weights

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US


def key_scale(lo: int, hi: int, n_users: int) -> np.int64:
    """The multiplier of the (user, time) keys ``user * scale + (t - lo)``: larger than any
    time offset in [lo, hi], so that the keys sort by user, then time (a fixed 2^42 us, 51
    days, broke past that span); refused where the keys would overflow int64."""
    scale = int(hi) - int(lo) + 1
    if n_users * scale >= 2**62:
        raise ValueError(f"{n_users} users over {scale / DAY_US:.0f} days overflow the int64 keys")
    return np.int64(scale)


def md5_hex(values) -> list[str]:
    return [hashlib.md5(str(v).encode()).hexdigest() for v in values]


@dataclass
class Log:
    """Append-only columnar log (numpy arrays grown by chunks)."""

    cols: dict[str, list] = field(default_factory=dict)
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def append(self, **arrays) -> None:
        for k, v in arrays.items():
            self.cols.setdefault(k, []).append(np.asarray(v))
        self._cache = {}

    def __getitem__(self, k: str) -> np.ndarray:
        if k not in self._cache:
            parts = self.cols.get(k, [])
            if len(parts) > 1:
                self.cols[k] = [np.concatenate(parts)]
            self._cache[k] = self.cols[k][0] if self.cols.get(k) else np.zeros(0)
        return self._cache[k]

    def __len__(self) -> int:
        first = next(iter(self.cols), None)
        return 0 if first is None else len(self[first])


class Measurement:
    """Event and send logs of one simulated world, and the dbt method applied to them.

    ``events``: u, code (index into ``event_names``), t (us), value.  ``sends``: u, m, c
    (channel index), t (us); filled with :meth:`add_events` / :meth:`add_sends`.
    :meth:`score` measures the sends matured by ``as_of`` and returns their rewards.
    """

    def __init__(self, world, settings: Settings | None = None, *, controls: bool = True, event_names=None):
        from nudgeflow.lab.world import EVENT_NAMES

        self.world = world
        self.s = settings or Settings()
        if self.s.goal_weight is not None or self.s.control_pool != "cell":
            raise ValueError("the in-memory reward mirrors goal_weight: null and control_pool: cell only")
        self.controls = controls
        self.fractional = False  # harness-only: fractional rewards (Agentic(fractional=True))
        # the method's parameters are the settings' (nudgeflow.config), like the dbt vars
        self.pre_match_candidates = int(self.s.pre_match_candidates)
        self.pre_match_weight = float(self.s.pre_match_weight)
        self.event_names = tuple(event_names or EVENT_NAMES)
        self.goal_code = self.event_names.index(self.s.goal_event)
        self.cell_size = self.s.cell_size
        self.feature_days = self.s.feature_window_days
        self.n = world.n
        self.user_ids = world.user_ids.to_list()
        hexes = md5_hex(self.user_ids)
        # rank of (md5(user_id), user_id): the dbt tie-breaker, as one integer
        order = sorted(range(self.n), key=lambda i: (hexes[i], self.user_ids[i]))
        self.hash_rank = np.empty(self.n, dtype=np.int64)
        self.hash_rank[order] = np.arange(self.n)
        self.tz_names = [world.tz_names[i] for i in world.tz_idx]
        self.events = Log()
        self.sends = Log()  # u, m, c, t, send_no, scored(-1 not yet / 0 / 1), reward
        self.reward = np.zeros(0)  # per send: nan until scored (or unscored), else 0/1
        self.scored_at = np.zeros(0, dtype=np.int64)  # as_of (us) the send was measured, -1
        self.delta_y = np.zeros(0)
        self.n_controls = np.zeros(0, dtype=np.int64)
        self.send_ids: list[str] = []
        self.send_hash: list[str] = []
        # placebo_outcomes: u, t (us), bin (index into gap_bin_labels), delta (unadjusted), scored
        self.placebos = Log()
        self.gap_bins = gap_bin_labels(self.s.window_hours, self.s.gap_bin_hours)
        self.adjustment = np.zeros(len(self.gap_bins))  # gap_adjustments of the last score()
        self.gap_adjustment = np.zeros(0)  # per send: the adjustment subtracted when scored
        self.measured_adjustment = np.zeros(0)  # per send: the gap adjustment measured (subtracted or not)
        self.features: dict | None = None
        self._ev_sorted = None
        self._send_sorted = None
        self._actions = None
        self.weights: np.ndarray | None = None
        # message labels (action sets label_<dim>) of the catalogue
        cat = world.catalogue
        self.label_sets = sorted(c for c in cat.columns if c.startswith("label_"))
        self.msg_labels = {c: cat[c].to_list() for c in self.label_sets}
        self.freq_labels = frequency_labels(self.s.frequency_bucket_hours)

    # ------------------------------------------------------------------ logs
    def add_events(self, u, code, t_us, value=None) -> None:
        u = np.asarray(u, dtype=np.int64)
        self.events.append(
            u=u,
            code=np.asarray(code, dtype=np.int8),
            t=np.asarray(t_us, dtype=np.int64),
            value=np.full(len(u), np.nan) if value is None else np.asarray(value, dtype=float),
        )
        self._ev_sorted = None

    def add_sends(self, u, m, c, t_us, ids=None) -> np.ndarray:
        """Append sends; returns their row numbers in the send log. ``ids``: their send_id
        (which sends get a placebo depends on md5(send_id)); by default 'h<row>'."""
        start = len(self.sends)
        u = np.asarray(u, dtype=np.int64)
        ids = [f"h{start + i:09d}" for i in range(len(u))] if ids is None else [str(x) for x in ids]
        self.send_ids.extend(ids)
        self.send_hash.extend(md5_hex(ids))
        self.sends.append(
            u=u, m=np.asarray(m, dtype=np.int64), c=np.asarray(c, dtype=np.int64), t=np.asarray(t_us, dtype=np.int64)
        )
        k = len(u)
        self.reward = np.concatenate([self.reward, np.full(k, np.nan)])
        self.delta_y = np.concatenate([self.delta_y, np.full(k, np.nan)])
        self.gap_adjustment = np.concatenate([self.gap_adjustment, np.zeros(k)])
        self.measured_adjustment = np.concatenate([self.measured_adjustment, np.zeros(k)])
        self.scored_at = np.concatenate([self.scored_at, np.full(k, -1, dtype=np.int64)])
        self.n_controls = np.concatenate([self.n_controls, np.zeros(k, dtype=np.int64)])
        self._send_sorted = None
        self._actions = None
        return np.arange(start, start + k)

    # ------------------------------------------------------------------ sorted views
    def _events_by_user(self):
        if getattr(self, "_ev_sorted", None) is None:
            u, t = self.events["u"], self.events["t"]
            o = np.lexsort((t, u))
            self._ev_sorted = (u[o], t[o], self.events["code"][o], o)
        return self._ev_sorted

    def _sends_by_user(self):
        if getattr(self, "_send_sorted", None) is None:
            u, t = self.sends["u"], self.sends["t"]
            o = np.lexsort((np.arange(len(u)), t, u))
            self._send_sorted = (u[o], t[o], o)
        return self._send_sorted

    def _send_keys(self, as_of_us: int, win: int):
        """The sends before as_of sorted by (user, time), and their keys user * big + (t -
        base): (users, times, base, big, keys); a (user, time) query is a searchsorted."""
        su, stt, _ = self._sends_by_user()
        vis = stt < as_of_us
        su, stt = su[vis], stt[vis]
        base = int(stt.min()) - 2 * win if len(stt) else 0
        big = key_scale(base, as_of_us + 2 * win, self.n)
        return su, stt, base, big, su * big + (stt - base)

    # ------------------------------------------------------------------ event weights
    def event_weights(self, as_of_us: int) -> np.ndarray:
        """event_weights_history at weights date d = as_of_us: weight per event code (0 for
        names not in the horizon; the goal event always weighted)."""
        s = self.s
        u, t, code, _ = self._events_by_user()
        win = int(round(s.weight_window_hours * HOUR_US))
        lo = as_of_us - int(round(s.weight_horizon_days * DAY_US))  # horizon_start
        hi = as_of_us - win  # horizon_end (events with a fully observed follow window)
        horizon_us = hi - lo
        n_codes = len(self.event_names)
        # goals that can follow a horizon event or make its followed time: [lo - W, d)
        goal = (code == self.goal_code) & (t >= lo - win) & (t < as_of_us)
        gu, gt = u[goal], t[goal]  # sorted by (u, t): a subset of a sorted array
        observed = (t >= lo) & (t < hi)
        ou, ot, oc = u[observed], t[observed], code[observed]
        # int_events__goal_followed: the user's next goal strictly after t within W
        base = lo - win
        big = np.int64(as_of_us - base + 1)  # > any relative time used here
        gkey = gu * big + (gt - base)
        pos = np.searchsorted(gkey, ou * big + (ot - base), side="right")
        followed = np.zeros(len(ou), dtype=bool)
        if len(gkey):
            pos_c = np.minimum(pos, len(gkey) - 1)
            followed = (pos < len(gkey)) & (gu[pos_c] == ou) & (gt[pos_c] - ot <= win)
        # int_goals__followed_time: per goal [max(g - W, previous goal), g), clipped to the
        # horizon; F_u = the user's followed microseconds in the horizon
        prev = np.full(len(gt), np.iinfo(np.int64).min)
        same = gu[1:] == gu[:-1]
        prev[1:][same] = gt[:-1][same]
        start = np.maximum(np.maximum(gt - win, prev), lo)
        piece = np.maximum(np.minimum(gt, hi) - start, 0)
        f_us = np.zeros(self.n, dtype=np.int64)
        if len(gu):
            # integer sums below 2^53 (each F_u <= T): exact in float64
            f_us = np.bincount(gu, weights=piece.astype(float), minlength=self.n).astype(np.int64)
        # Mantel-Haenszel sums over users: sum_u a_ue (T - F_u) and sum_u b_ue F_u, as exact
        # integers (split in 2^21 parts: no float rounding, no int64 overflow), divided once by T
        fo = f_us[ou]
        term = np.where(followed, horizon_us - fo, fo)
        split = np.int64(1 << 21)

        def exact_sums(mask):
            hi_part = np.bincount(oc[mask], weights=(term[mask] // split).astype(float), minlength=n_codes)
            lo_part = np.bincount(oc[mask], weights=(term[mask] % split).astype(float), minlength=n_codes)
            return np.array([float(int(h) * int(split) + int(l_)) for h, l_ in zip(hi_part, lo_part)])

        mh_f = exact_sums(followed) / horizon_us
        mh_n = exact_sums(~followed) / horizon_us
        present = np.bincount(oc, minlength=n_codes) > 0
        return mh_event_weights(mh_f, mh_n, self.goal_code, present)[1]

    # ------------------------------------------------------------------ user features
    def user_features(self, as_of_us: int) -> dict:
        """int_user_features: z-scores (U, 4), cell label per user, utc offset minutes."""
        u, t, code, _ = self._events_by_user()
        lo = as_of_us - self.feature_days * DAY_US
        sel = (t >= lo) & (t < as_of_us)
        su, st, sc = u[sel], t[sel], code[sel]
        n_ev = np.bincount(su, minlength=self.n)
        n_goal = np.bincount(su[sc == self.goal_code], minlength=self.n)
        day = st // DAY_US
        pairs = np.unique(su * np.int64(1 << 20) + day)
        active = np.bincount(pairs // (1 << 20), minlength=self.n)
        last = np.full(self.n, -1, dtype=np.int64)
        if len(su):
            np.maximum.at(last, su, st)
        since = np.where(
            last >= 0, np.minimum((as_of_us - last) / HOUR_US / 24.0, self.feature_days), self.feature_days
        )
        feats = np.stack([np.log1p(n_ev), np.log1p(n_goal), active.astype(float), since.astype(float)], axis=1)
        sd = feats.std(axis=0)
        z = np.where(sd > 0, (feats - feats.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)
        # UTC offset (minutes) of each timezone at as_of
        at = dt.datetime.fromtimestamp(as_of_us / US, tz=dt.UTC)
        off_by_tz = {}
        for name in set(self.tz_names):
            try:
                zone = ZoneInfo(name)
            except Exception:  # noqa: BLE001 - unknown zone: UTC, like DuckDB's coalesce
                zone = dt.UTC
            off_by_tz[name] = int(round(at.astimezone(zone).utcoffset().total_seconds() / 60))
        offset = np.array([off_by_tz[z_] for z_ in self.tz_names], dtype=np.int64)
        has_goal = n_goal > 0
        group = offset * 2 + has_goal
        # rank inside (offset, has_goal) by n_events, active_days, md5, user_id
        order = np.lexsort((self.hash_rank, active, n_ev, group))
        g_sorted = group[order]
        starts = np.r_[0, np.nonzero(np.diff(g_sorted))[0] + 1]
        sizes = np.diff(np.r_[starts, len(order)])
        rank = np.empty(self.n, dtype=np.int64)
        size = np.empty(self.n, dtype=np.int64)
        for s0, n0 in zip(starts, sizes):
            idx = order[s0 : s0 + n0]
            rank[idx] = np.arange(1, n0 + 1)
            size[idx] = n0
        n_buckets = np.maximum(1, np.floor(size / self.cell_size + 0.5))  # DuckDB round: half away from 0
        bucket = np.floor((rank - 1) * n_buckets / size).astype(np.int64)
        cell_id = group * 1000 + bucket
        # one label per distinct cell (formatting every user's is slow)
        cells, first, inv = np.unique(cell_id, return_index=True, return_inverse=True)
        names = np.array(
            [
                f"utc{'-' if o < 0 else '+'}{abs(o) // 60:02d}:{abs(o) % 60:02d}/g{int(g)}/a{b:02d}"
                for o, g, b in zip(offset[first], has_goal[first], bucket[first])
            ],
            dtype=object,
        )
        labels = names[inv].tolist()
        # prior cell: the local activity hour's bin (circular mean of the events' UTC hours,
        # at minute precision, plus the UTC offset at as_of) x the half by n_events
        minute_of_day = (st % DAY_US) // (60 * US)
        angle = 2 * np.pi * (minute_of_day / 60.0) / 24
        sin_h = np.bincount(su, weights=np.sin(angle), minlength=self.n)
        cos_h = np.bincount(su, weights=np.cos(angle), minlength=self.n)
        local = np.mod(np.degrees(np.arctan2(sin_h, cos_h)) / 15 + offset / 60.0, 24)
        hour_bin = np.floor(local * int(self.s.activity_hour_bins) / 24).astype(np.int64)
        half = np.empty(self.n, dtype=np.int64)
        half[np.lexsort((self.hash_rank, n_ev))] = np.where(np.arange(self.n) < (self.n + 1) // 2, 1, 2)
        prior_cell = [
            f"h{'-' if e == 0 else b}/n{h}" for e, b, h in zip(n_ev.tolist(), hour_bin.tolist(), half.tolist())
        ]
        self.features = {
            "as_of": as_of_us,
            "z": z,
            "cell_id": cell_id,
            "cell": labels,
            "prior_cell": prior_cell,
            "activity_hour": np.where(n_ev > 0, local, np.nan),
            "n_events": n_ev,
            "n_goal": n_goal,
            "active_days": active,
            "since": since,
        }
        return self.features

    # ------------------------------------------------------------------ outcomes
    def _decayed(self, pu: np.ndarray, pt: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """decayed_outcomes for (user, send time) pairs; ``w``: (pairs, codes) weights."""
        s = self.s
        eu, et, ec, _ = self._events_by_user()
        win = int(round(s.window_hours * HOUR_US))
        base = int(min(et.min(), pt.min())) - 2 * win if len(et) and len(pt) else 0
        top = int(max(et.max(), pt.max())) + 2 * win if len(et) and len(pt) else 0
        big = key_scale(base, top, self.n)
        key = eu * big + (et - base)
        a = np.searchsorted(key, pu * big + (pt - win - base), side="left")
        b = np.searchsorted(key, pu * big + (pt + win - base), side="left")
        cnt = b - a
        pair = np.repeat(np.arange(len(pu)), cnt)
        idx = np.repeat(a - np.cumsum(np.r_[0, cnt[:-1]]), cnt) + np.arange(cnt.sum())
        dt_h = (et[idx] - pt[pair]) / HOUR_US
        val = w[pair, ec[idx]] * np.power(2.0, -np.abs(dt_h) / s.half_life_hours)
        pre = np.bincount(pair, weights=np.where(dt_h < 0, val, 0.0), minlength=len(pu))
        post = np.bincount(pair, weights=np.where(dt_h >= 0, val, 0.0), minlength=len(pu))
        return pre, post

    def weights_at(self, d_us: int) -> np.ndarray:
        """event_weights_history for weights date d (computed once, then frozen)."""
        cache = self.__dict__.setdefault("_weights_cache", {})
        if d_us not in cache:
            cache[d_us] = self.event_weights(d_us)
        return cache[d_us]

    def features_at(self, d_us: int) -> dict:
        """int_user_features__dated at feature date d (cached; the current ``features`` kept)."""
        cache = self.__dict__.setdefault("_features_cache", {})
        if d_us not in cache:
            keep = self.features
            cache[d_us] = self.user_features(d_us)
            self.features = keep
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
        return cache[d_us]

    def score(self, as_of_us: int) -> np.ndarray:
        """Measure the sends matured by as_of and not yet measured; returns their row numbers.

        Like the dbt models since the 'incremental = full recompute' change: a send's event
        weights are those of its weights date (the first midnight at or after its maturity,
        capped at as_of) and its controls are matched on the features of its send day
        (behaviour before the send), so an outcome does not depend on the run that measured it.
        With controls, the placebos of the batch (int_sends__placebos) are measured the same
        way, and every send's delta_y is less the gap adjustment of its gap bin
        (gap_adjustments over the placebos of the last null_window_days).
        """
        s = self.s
        win = int(round(s.window_hours * HOUR_US))
        st = self.sends["t"]
        todo = np.nonzero((self.scored_at < 0) & (st + win <= as_of_us) & (st < as_of_us))[0]
        if len(todo) == 0:
            return todo
        tu, tt = self.sends["u"][todo], st[todo]
        matured = tt + win
        wdate = np.minimum(np.where(matured % DAY_US == 0, matured, (matured // DAY_US + 1) * DAY_US), as_of_us)
        self.weights = self.weights_at(as_of_us)
        bins = self._gap_bin(self.send_actions()["gap"][todo])
        if self.controls:
            delta, n_c, scored = self._measure(tu, tt, wdate, as_of_us)
            src, pu = self._placebos(todo, bins, wdate, as_of_us)
            if len(src):
                p_delta, _, p_scored = self._measure(pu, tt[src], wdate[src], as_of_us)
                pday = (tt[src] // DAY_US) * DAY_US
                cell = np.empty(len(src), dtype=object)
                for d in np.unique(pday):
                    cell[pday == d] = np.array(self.features_at(int(d))["cell"], dtype=object)[pu[pday == d]]
                self.placebos.append(u=pu, t=tt[src], bin=bins[src], delta=p_delta, scored=p_scored, cell=cell)
            measured = np.zeros(len(todo))
            for d in np.unique(wdate):
                measured[wdate == d] = self.gap_adjustments(int(d))[bins[wdate == d]]
            self.adjustment = self.gap_adjustments(as_of_us)
            self.measured_adjustment[todo] = measured
            adj = measured if self.s.gap_adjustment else np.zeros(len(todo))
            delta = delta - adj
        else:
            y_pre, y_post = self._decayed(tu, tt, self._weights_of(wdate))
            n_c = np.zeros(len(todo), dtype=np.int64)
            scored = np.ones(len(todo), dtype=bool)
            delta = y_post - y_pre
            adj = np.zeros(len(todo))
        self.delta_y[todo] = delta
        self.gap_adjustment[todo] = adj
        self.n_controls[todo] = n_c
        if self.fractional:
            # harness-only variant: a fractional success Phi(delta_y / sd of the null's delta_y)
            r = ndtr(delta / self._null_sd(as_of_us, delta[scored]))
        else:
            r = (delta > 0).astype(float)
        self.reward[todo] = np.where(scored, r, np.nan)
        self.scored_at[todo] = as_of_us
        self._actions = None
        return todo

    def _null_sd(self, as_of_us: int, fallback: np.ndarray) -> float:
        """The spread of a null send's delta_y: the sd of the placebos' adjusted delta_y of the
        last null_window_days (of ``fallback``, this batch's, without placebos)."""
        ok = self._placebos_before(as_of_us)
        if ok.sum() >= 2:
            p = self.placebos
            values = p["delta"][ok] - self.gap_adjustments(as_of_us)[p["bin"][ok]]
        else:
            values = fallback
        sd = float(np.std(values)) if len(values) >= 2 else 0.0
        return sd if sd > 0 else 1.0

    def _weights_of(self, wdate: np.ndarray) -> np.ndarray:
        w_pair = np.zeros((len(wdate), len(self.event_names)))
        for d in np.unique(wdate):
            w_pair[wdate == d] = self.weights_at(int(d))
        return w_pair

    def _measure(self, tu: np.ndarray, tt: np.ndarray, wdate: np.ndarray, as_of_us: int):
        """int_sends__differences for (user, time, weights date) rows of one kind (sends, or
        placebos: the pre-match sd is taken per kind): (delta_y_unadjusted, n_controls, scored)."""
        s = self.s
        w_pair = self._weights_of(wdate)
        y_pre, y_post = self._decayed(tu, tt, w_pair)
        d_t = y_post - y_pre
        # int_sends__controls: the candidates of each row (blocks: one matrix per (send day,
        # cell), a row per send, a column per control_rank, -1 past its candidates)
        sends_c, users_c, dist_c, blocks = [], [], [], []
        n_pairs = 0
        sday = (tt // DAY_US) * DAY_US
        for d in np.unique(sday):
            rows = np.nonzero(sday == d)[0]
            c_s, c_u, c_d, c_blocks = self._controls(tu[rows], tt[rows], self.features_at(int(d)), as_of_us)
            sends_c.append(rows[c_s])
            users_c.append(c_u)
            dist_c.append(c_d)
            blocks += [(rows[r], np.where(idx >= 0, idx + n_pairs, -1)) for r, idx in c_blocks]
            n_pairs += len(c_s)
        ctrl_send, ctrl_user, dist = (np.concatenate(x) for x in (sends_c, users_c, dist_c))
        # decayed outcomes of each distinct (candidate, send time) once
        _, t_grp = np.unique(tt, return_inverse=True)
        pair_key = t_grp[ctrl_send] * np.int64(self.n) + ctrl_user
        _, first, inv = np.unique(pair_key, return_index=True, return_inverse=True)
        p_pre, p_post = self._decayed(ctrl_user[first], tt[ctrl_send[first]], w_pair[ctrl_send[first]])
        c_pre, c_post = p_pre[inv], p_post[inv]
        if self.pre_match_candidates > 0 and len(ctrl_send):
            keep = self._pre_match(blocks, t_grp[ctrl_send], dist, c_pre, y_pre[ctrl_send])
            ctrl_send, c_pre, c_post = ctrl_send[keep], c_pre[keep], c_post[keep]
        n_c = np.bincount(ctrl_send, minlength=len(tu))
        c_d = np.bincount(ctrl_send, weights=c_post - c_pre, minlength=len(tu))
        d_c = np.where(n_c > 0, c_d / np.maximum(n_c, 1), np.nan)
        return d_t - d_c, n_c, n_c >= max(s.min_controls, 1)

    def _gap_bin(self, gap_hours: np.ndarray) -> np.ndarray:
        """The gap_bin macro: index into gap_bin_labels ('none', the last, for no send in the
        pre window)."""
        none = len(self.gap_bins) - 1
        g = np.nan_to_num(gap_hours, nan=np.inf)
        idx = np.floor(g / float(self.s.gap_bin_hours))
        return np.where(g < self.s.window_hours, np.minimum(idx, none - 1), none).astype(np.int64)

    def gap_adjustments(self, d_us: int) -> np.ndarray:
        """marts.gap_adjustments at weights date d: per gap bin, the sum of delta_y of the
        scored placebos matured by d and sent in [d - null_window_days, d) / (their number +
        gap_bias_shrinkage); 0 without placebos."""
        nb = len(self.gap_bins)
        ok = self._placebos_before(d_us)
        n = np.bincount(self.placebos["bin"][ok], minlength=nb).astype(float) if ok.any() else np.zeros(nb)
        total = (
            np.bincount(self.placebos["bin"][ok], weights=self.placebos["delta"][ok], minlength=nb)
            if ok.any()
            else np.zeros(nb)
        )
        den = n + float(self.s.gap_bias_shrinkage)
        return np.where(den > 0, total / np.where(den > 0, den, 1.0), 0.0)

    def _placebos_before(self, d_us: int) -> np.ndarray:
        """The scored placebos matured by d and sent in [d - null_window_days, d)."""
        p = self.placebos
        if len(p) == 0:
            return np.zeros(0, dtype=bool)
        win = int(round(self.s.window_hours * HOUR_US))
        lo = d_us - int(self.s.null_window_days) * DAY_US
        return p["scored"].astype(bool) & (p["t"] >= lo) & (p["t"] + win <= d_us)

    def null_counts(self, as_of_us: int) -> pl.DataFrame:
        """marts.null_rewards summed over the last null_window_days, per cell: cell,
        successes (delta - the bin's adjustment at as_of > 0), placebos."""
        ok = self._placebos_before(as_of_us)
        if not ok.any():
            return pl.DataFrame(schema={"cell": pl.String, "successes": pl.Float64, "placebos": pl.Float64})
        p = self.placebos
        wins = p["delta"][ok] - self.gap_adjustments(as_of_us)[p["bin"][ok]] > 0
        return (
            pl.DataFrame({"cell": p["cell"][ok].tolist(), "w": wins.astype(float)})
            .group_by("cell")
            .agg(successes=pl.col("w").sum(), placebos=pl.len().cast(pl.Float64))
        )

    def _placebos(
        self, todo: np.ndarray, bins: np.ndarray, wdate: np.ndarray, as_of_us: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """int_sends__placebos: for the placebo_sends sends of each weights date first in
        md5(send_id) order, the nearest user of the treated user's cell on the send's day (distance, then
        md5, user_id) not messaged in [t, t + window) whose last send in [t - window, t) has
        the treated user's gap bin. Returns (positions in todo, placebo users)."""
        s = self.s
        k = int(s.placebo_sends)
        if k <= 0 or len(todo) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        keys = [(self.send_hash[i], self.send_ids[i]) for i in todo]
        sample = np.sort(
            np.concatenate(
                [
                    np.array(sorted(np.nonzero(wdate == d)[0], key=keys.__getitem__)[:k], dtype=np.int64)
                    for d in np.unique(wdate)
                ]
            )
        )
        win = int(round(s.window_hours * HOUR_US))
        su, stt, base, big, skey = self._send_keys(as_of_us, win)
        tu_all, tt_all = self.sends["u"][todo], self.sends["t"][todo]
        src, out = [], []
        sday = (tt_all[sample] // DAY_US) * DAY_US
        for d in np.unique(sday):
            f = self.features_at(int(d))
            cell, z = f["cell_id"], f["z"]
            for c in np.unique(cell[tu_all[sample[sday == d]]]):
                rows = sample[(sday == d) & (cell[tu_all[sample]] == c)]
                members = np.nonzero(cell == c)[0]
                tu, tt = tu_all[rows], tt_all[rows]
                sq = (z[tu][:, None, :] - z[members][None, :, :]) ** 2
                dist = np.sqrt(((sq[:, :, 0] + sq[:, :, 1]) + sq[:, :, 2]) + sq[:, :, 3])
                cu = np.broadcast_to(members[None, :], dist.shape)
                at = cu * big + (tt[:, None] - base)
                busy = np.searchsorted(skey, at + win, side="left") > np.searchsorted(skey, at, side="left")
                before = np.searchsorted(skey, at, side="left") - 1  # the last send before t
                bc = np.maximum(before, 0)
                has_pre = (before >= 0) & (su[bc] == cu) & (stt[bc] >= tt[:, None] - win)
                gap = np.where(has_pre, (tt[:, None] - stt[bc]) / HOUR_US, np.nan)
                ok = ~busy & (cu != tu[:, None]) & (self._gap_bin(gap) == bins[rows][:, None])
                hr = np.broadcast_to(self.hash_rank[members][None, :], dist.shape)
                best = np.lexsort((hr, np.where(ok, dist, np.inf)), axis=-1)[:, 0]
                found = ok[np.arange(len(rows)), best]
                src.append(rows[found])
                out.append(members[best[found]])
        if not src:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(src), np.concatenate(out)

    def _pre_match(
        self, blocks: list, t_grp: np.ndarray, dist: np.ndarray, c_pre: np.ndarray, t_pre: np.ndarray
    ) -> np.ndarray:
        """int_sends__outcomes_controls with pre-matching: the candidate pairs kept, per send
        the k = neighbours with the smallest distance^2 + pre_match_weight * ((y_pre_c -
        y_pre_t) / sd)^2 (sd: population sd of y_pre over the candidates of all sends at the
        same sent_ts, ``t_grp``; a null or 0 sd drops the term), ties by control_rank."""
        k = int(self.s.neighbours)
        cnt = np.bincount(t_grp)
        mean = np.bincount(t_grp, weights=c_pre) / np.maximum(cnt, 1)
        sd = np.sqrt(np.bincount(t_grp, weights=(c_pre - mean[t_grp]) ** 2) / np.maximum(cnt, 1))[t_grp]
        z = np.where(sd > 0, (c_pre - t_pre) / np.where(sd > 0, sd, 1.0), 0.0)
        cost = dist**2 + self.pre_match_weight * z**2
        keep = []
        for _, idx in blocks:
            # a stable sort of each row: ties keep the column order, the control_rank
            o = np.argsort(np.where(idx >= 0, cost[idx], np.inf), axis=1, kind="stable")[:, :k]
            chosen = np.take_along_axis(idx, o, axis=1)
            keep.append(chosen[chosen >= 0])
        return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)

    def _controls(self, tu: np.ndarray, tt: np.ndarray, f: dict, as_of_us: int):
        """int_sends__controls: the max(neighbours, pre_match_candidates) nearest candidates of
        each (user tu, time tt) row (the k nearest without pre-matching), as pairs (row, user,
        distance) and blocks [(rows, (S, L) pair numbers by control_rank, -1 where a row has
        fewer candidates)], one block per cell."""
        s = self.s
        m = max(int(s.neighbours), self.pre_match_candidates)
        win = int(round(s.window_hours * HOUR_US))
        su, stt, base, big, skey = self._send_keys(as_of_us, win)
        cell = f["cell_id"]
        z = f["z"]
        order = np.argsort(cell, kind="stable")
        cs = cell[order]
        starts = np.searchsorted(cs, cell, side="left")
        ends = np.searchsorted(cs, cell, side="right")
        out, blocks = [], []
        n_pairs = 0
        # group sends by the treated user's cell: one distance matrix per cell
        tc = cell[tu]
        for c in np.unique(tc):
            rows = np.nonzero(tc == c)[0]
            members = order[starts[tu[rows[0]]] : ends[tu[rows[0]]]]
            if len(members) == 0:
                continue
            sq = (z[tu[rows]][:, None, :] - z[members][None, :, :]) ** 2  # (S, C, 4)
            # sqrt(pow(.., 2) + ...) summed left to right, like the SQL
            d = np.sqrt(((sq[:, :, 0] + sq[:, :, 1]) + sq[:, :, 2]) + sq[:, :, 3])
            cand_u = np.broadcast_to(members[None, :], d.shape)
            lo_k = cand_u * big + (tt[rows][:, None] - win - base)
            hi_k = cand_u * big + (tt[rows][:, None] + win - base)
            busy = np.searchsorted(skey, hi_k, side="left") > np.searchsorted(skey, lo_k, side="left")
            ok = ~busy & (cand_u != tu[rows][:, None])
            take = np.minimum(ok.sum(axis=1), m)
            width = int(take.max())
            if width == 0:
                continue
            dd = np.where(ok, d, np.inf)
            hr = np.broadcast_to(self.hash_rank[members][None, :], d.shape)
            ranked = np.lexsort((hr, dd), axis=-1)[:, :width]  # per send: distance, md5, user_id
            valid = np.arange(width)[None, :] < take[:, None]
            i, j = np.nonzero(valid)
            col = ranked[i, j]
            idx = np.full((len(rows), width), -1, dtype=np.int64)
            idx[i, j] = n_pairs + np.arange(len(i))
            n_pairs += len(i)
            out.append((rows[i], members[col], d[i, col]))
            blocks.append((rows, idx))
        if not out:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), []
        s_, u_, d_ = (np.concatenate(x) for x in zip(*out))
        return s_, u_, d_, blocks

    # ------------------------------------------------------------------ actions
    def send_actions(self) -> dict[str, np.ndarray]:
        """int_sends__actions for every logged send: local send hour and frequency bucket index."""
        if self._actions is not None:
            return self._actions
        w = self.world
        u, t = self.sends["u"], self.sends["t"]
        # local hour of sent_ts in the user's timezone
        hours = np.zeros(len(u), dtype=np.int64)
        days = t // DAY_US
        for d in np.unique(days):
            sel = days == d
            day = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
            from nudgeflow.lab.world import tz_offsets_hours

            offs = tz_offsets_hours(w.tz_names, day)
            hi = ((t[sel] - d * DAY_US) // HOUR_US).astype(np.int64)
            off = offs[w.tz_idx[u[sel]], hi]
            hours[sel] = np.floor(np.mod((t[sel] / US) / 3600.0 + off, 24.0)).astype(np.int64)
        su, stt, o = self._sends_by_user()
        gap = np.full(len(u), np.nan)
        same = np.r_[False, su[1:] == su[:-1]]
        g = np.r_[np.nan, (stt[1:] - stt[:-1]) / HOUR_US]
        gap[o] = np.where(same, g, np.nan)
        self._actions = {"hour": hours, "gap": gap, "bucket": gap_bucket(gap, self.s.frequency_bucket_hours)}
        return self._actions

    def action_outcomes(
        self, as_of_us: int, *, half_life_days: float | None = None, window_days: float | None = None
    ) -> pl.DataFrame:
        """marts.action_outcomes from the scored sends matured by as_of: user_id, action_set,
        action, successes, trials.  Harness-only forgetting (not in production): with
        ``half_life_days`` each send counts 2^(-age / half_life) (age from its maturity to
        as_of, in days); with ``window_days`` only sends matured in the last window count."""
        win = int(round(self.s.window_hours * HOUR_US))
        t = self.sends["t"]
        ok = (self.scored_at >= 0) & (t + win <= as_of_us) & ~np.isnan(self.reward)
        idx = np.nonzero(ok)[0]
        age_d = (as_of_us - (t[idx] + win)) / DAY_US
        wt = np.ones(len(idx))
        if half_life_days:
            wt = np.power(2.0, -age_d / half_life_days)
        if window_days:
            wt = np.where(age_d <= window_days, wt, 0.0)
        keep = wt > 0
        idx, wt = idx[keep], wt[keep]
        a = self.send_actions()
        u = self.sends["u"][idx]
        m = self.sends["m"][idx]
        r = self.reward[idx] * wt
        from nudgeflow.lab.world import CHANNELS

        ch = np.array(CHANNELS, dtype=object)[self.sends["c"][idx]]
        frames = [
            ("channel", ch),
            ("send_hour", a["hour"][idx].astype(str)),
            ("frequency", np.array(self.freq_labels, dtype=object)[a["bucket"][idx]]),
        ]
        for ls in self.label_sets:
            vals = np.array(self.msg_labels[ls], dtype=object)[m]
            frames.append((ls, vals))
        uid = np.array(self.user_ids, dtype=object)[u]
        parts = []
        for name, vals in frames:
            df = pl.DataFrame(
                {
                    "user_id": uid.tolist(),
                    "action_set": name,
                    "action": [None if v is None else str(v) for v in vals],
                    "r": r,
                    "w": wt,
                },
                schema={
                    "user_id": pl.String,
                    "action_set": pl.String,
                    "action": pl.String,
                    "r": pl.Float64,
                    "w": pl.Float64,
                },
            )
            parts.append(df.filter(pl.col("action").is_not_null()))
        if not parts:
            return pl.DataFrame(
                schema={
                    "user_id": pl.String,
                    "action_set": pl.String,
                    "action": pl.String,
                    "successes": pl.Float64,
                    "trials": pl.Float64,
                }
            )
        return (
            pl.concat(parts)
            .group_by("user_id", "action_set", "action")
            .agg(successes=pl.col("r").sum(), trials=pl.col("w").sum())
        )

    def cells_frame(self) -> pl.DataFrame:
        """user_id, cell: the priors' cells at the last as_of (settings.prior_cells), as
        steps/priors.py reads them from marts.user_features."""
        f = self.features
        key = "prior_cell" if self.s.prior_cells == "behaviour" else "cell"
        return pl.DataFrame({"user_id": self.user_ids, "cell": f[key]})

    def matching_cells_frame(self) -> pl.DataFrame:
        """user_id, cell: the matching cells at the last as_of (placebos' null per cell)."""
        return pl.DataFrame({"user_id": self.user_ids, "cell": self.features["cell"]})
