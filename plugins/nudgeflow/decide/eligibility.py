"""The guardrails: which message may be sent to which user at which hour of day D.

One pure function, :func:`eligibility_by_zone`, decides it for the daily run and for
``explain`` (as an :class:`Eligibility`, never a users x messages x hours tensor), and through
:func:`eligibility` (its dense form) for the policy harness. A (user, message, hour) is
eligible when, at the hour's UTC instant in [D, D+1):

* the user consents to the message's channel and the message is allowed in the user's
  country (``reachable``, per user and message);
* the message is active and inside [valid_from, valid_to);
* the same message was not sent to the user in the last ``min_days_before_repeat`` days, and
  is not scheduled for the user in the next ``min_days_before_repeat`` days (a backfill
  planned before later dates);
* at least ``min_hours_between_sends`` have passed since the user's last send, and remain
  until the user's next scheduled send;
* the local hour is one of ``send_hours`` and occurs on D (``send_at`` is not NaT);
* ``max_sends_per_day`` is at least 1.

Times are float epoch seconds, NaN where there is none.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numba import njit


@dataclass(frozen=True)
class Rules:
    """The spacing rules of the settings (hours, days, sends)."""

    min_hours_between_sends: float
    min_days_before_repeat: float
    max_sends_per_day: int

    @classmethod
    def of(cls, settings) -> Rules:
        return cls(settings.min_hours_between_sends, settings.min_days_before_repeat, settings.max_sends_per_day)


def local_send_times(day: dt.date, timezones, hours) -> dict[str, np.ndarray]:
    """For each timezone, the UTC instant in [D, D+1) at which each local hour starts (NaT if none)."""
    return {name: _zone_send_times(day, name, tuple(hours)) for name in set(timezones)}


@functools.lru_cache(maxsize=4096)
def _zone_send_times(day: dt.date, name: str, hours: tuple) -> np.ndarray:
    """local_send_times of one zone (read-only: remembered for the next chunk of the day)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    found: dict[int, np.datetime64] = {}
    for quarter in range(96):  # every quarter hour covers zones offset by :30 and :45
        instant = start + dt.timedelta(minutes=15 * quarter)
        local = instant.astimezone(zone)
        if local.minute == 0 and local.hour not in found:
            found[local.hour] = np.datetime64(instant.replace(tzinfo=None), "s")
    out = np.array([found.get(h, np.datetime64("NaT", "s")) for h in hours], dtype="datetime64[s]")
    out.flags.writeable = False
    return out


def send_instants(day: dt.date, timezones: list[str], hours) -> tuple[np.ndarray, np.ndarray]:
    """(U, H) UTC instants of each user's allowed local hours on D: as datetime64[s] (NaT if
    the hour does not occur) and as float epoch seconds (NaN)."""
    by_zone = local_send_times(day, timezones, hours)
    send_at = np.stack([by_zone[z] for z in timezones]) if timezones else np.empty((0, len(hours)), "datetime64[s]")
    t = send_at.astype("datetime64[s]").astype(np.int64).astype(float)
    t[np.isnat(send_at)] = np.nan
    return send_at, t


def country_allowed(user_countries: list[str | None], message_countries: list[str | None]) -> np.ndarray:
    """(U, M): the message's comma-separated ISO codes include the user's country (case and
    spaces ignored); an empty list allows every country."""
    country = np.array([(c or "").strip().upper() for c in user_countries])
    ok = np.ones((len(country), len(message_countries)), dtype=bool)
    for m, allowed in enumerate(message_countries):
        codes = {c.strip().upper() for c in (allowed or "").split(",") if c.strip()}
        if codes:
            ok[:, m] = np.isin(country, list(codes))
    return ok


@dataclass(frozen=True)
class Eligibility:
    """Which (user, message, hour) may be sent, factored so that no (U, M, H) tensor is needed:

    eligible[u, m, h] = reachable[u, m] & valid[zone[u], m, h] & spacing[u, h], and at the sparse
    pairs p = (pair_user[p], pair_message[p]) with a send of that message within the repeat
    horizon also repeat_ok[p, h]. feasible[u, h]: at least one message is eligible at h."""

    reachable: np.ndarray  # (U, M) consent and country
    zone: np.ndarray  # (U,) row of ``valid`` of the user's time zone
    valid: np.ndarray  # (Z, M, H) active and inside the validity window at the zone's instant
    spacing: np.ndarray  # (U, H) the hour exists, spacing from the previous and next sends, cap >= 1
    pair_user: np.ndarray  # (P,)
    pair_message: np.ndarray  # (P,)
    repeat_ok: np.ndarray  # (P, H) the repeat rule at each pair
    feasible: np.ndarray  # (U, H)

    @classmethod
    def from_dense(cls, eligible: np.ndarray) -> Eligibility:
        """The factored form of a dense (U, M, H) eligibility (one zone per user, no pairs)."""
        n_u, n_m, n_h = eligible.shape
        none = np.zeros(0, dtype=np.int64)
        return cls(
            reachable=np.ones((n_u, n_m), dtype=bool),
            zone=np.arange(n_u),
            valid=eligible,
            spacing=np.ones((n_u, n_h), dtype=bool),
            pair_user=none,
            pair_message=none,
            repeat_ok=np.ones((0, n_h), dtype=bool),
            feasible=eligible.any(axis=1),
        )

    def at(self, hour: np.ndarray) -> np.ndarray:
        """(..., U, M): eligible[u, m, hour[..., u]], the messages eligible at each user's hour."""
        users = np.arange(self.zone.size)
        out = self.reachable & self.valid[self.zone, :, hour] & self.spacing[users, hour][..., None]
        if self.pair_user.size:
            pairs = np.arange(self.pair_user.size)
            out[..., self.pair_user, self.pair_message] &= self.repeat_ok[pairs, hour[..., self.pair_user]]
        return out

    def of_message(self, message: np.ndarray) -> np.ndarray:
        """(U, H): eligible[u, message[u], h], one message per user at every hour."""
        users = np.arange(self.zone.size)
        out = self.reachable[users, message][:, None] & self.valid[self.zone, message] & self.spacing
        hit = message[self.pair_user] == self.pair_message
        out[self.pair_user[hit]] &= self.repeat_ok[hit]
        return out

    def dense(self) -> np.ndarray:
        """The (U, M, H) tensor: for a few users (explain, the policy harness), never for a run."""
        out = self.reachable[:, :, None] & self.valid[self.zone] & self.spacing[:, None, :]
        out[self.pair_user, self.pair_message] &= self.repeat_ok
        return out

    def take(self, users: np.ndarray) -> Eligibility:
        """The eligibility of the users at these (distinct) positions, in this order."""
        position = np.full(self.zone.size, -1)
        position[users] = np.arange(users.size)
        keep = position[self.pair_user] >= 0
        return Eligibility(
            reachable=self.reachable[users],
            zone=self.zone[users],
            valid=self.valid,
            spacing=self.spacing[users],
            pair_user=position[self.pair_user[keep]],
            pair_message=self.pair_message[keep],
            repeat_ok=self.repeat_ok[keep],
            feasible=self.feasible[users],
        )


def _repeat_pairs(send_at_s, n_m, rules, last_pairs, next_pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (user, message) pairs with a send in the repeat horizon, and where the repeat rule
    allows the message at each hour (both the last send before D and the first after it)."""
    repeat = rules.min_days_before_repeat * 86400.0
    users, ok = [], []
    for (u, m, t), before in ((last_pairs, True), (next_pairs, False)):
        gap = send_at_s[u] - t[:, None] if before else t[:, None] - send_at_s[u]
        users.append(u * n_m + m)
        ok.append(~(gap < repeat))
    pairs, inverse = np.unique(np.concatenate(users), return_inverse=True)
    repeat_ok = np.ones((pairs.size, send_at_s.shape[1]), dtype=bool)
    _and_rows_at(repeat_ok, inverse.reshape(-1), np.concatenate(ok))
    return pairs // n_m, pairs % n_m, repeat_ok


@njit(cache=True, nogil=True)
def _and_rows_at(out, rows, values):
    """out[rows[i]] &= values[i] for every i (np.logical_and.at, as a loop)."""
    for i in range(rows.size):
        for h in range(out.shape[1]):
            out[rows[i], h] &= values[i, h]


@njit(cache=True, nogil=True)
def _subtract_rows_at(out, rows, values):
    """out[rows[i]] -= values[i] for every i (np.subtract.at, as a loop)."""
    for i in range(rows.size):
        for h in range(out.shape[1]):
            out[rows[i], h] -= values[i, h]


def _no_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)


def eligibility_by_zone(
    zone_send_at_s: np.ndarray,
    zone: np.ndarray,
    last_send_s: np.ndarray,
    reachable: np.ndarray,
    active: np.ndarray,
    valid_from_s: np.ndarray,
    valid_to_s: np.ndarray,
    rules: Rules,
    next_send_s: np.ndarray | None = None,
    last_pairs: tuple | None = None,
    next_pairs: tuple | None = None,
) -> tuple[Eligibility, np.ndarray]:
    """The eligibility of U users (see the module docstring) and gap_hours (U, H), the hours
    since the user's last send at each candidate instant (NaN: never sent).

    zone_send_at_s (Z, H) epoch seconds of each allowed hour in each time zone (NaN: none on D),
    zone (U,) each user's row of it; last_send_s, next_send_s (U,) the user's last send before D
    and first send scheduled after D (None or NaN: none); reachable (U, M) bool; active /
    valid_from_s / valid_to_s (M,); last_pairs, next_pairs: (user, message, epoch s) arrays of
    the last send of a message before D and its first scheduled after D, per (user, message)."""
    send_at_s = zone_send_at_s[zone]
    gap_hours = (send_at_s - last_send_s[:, None]) / 3600.0
    spacing = ~np.isnan(send_at_s) & ~(gap_hours < rules.min_hours_between_sends) & (rules.max_sends_per_day >= 1)
    if next_send_s is not None:
        spacing &= ~((next_send_s[:, None] - send_at_s) / 3600.0 < rules.min_hours_between_sends)
    # validity depends only on the instants, which the users of one time zone share
    t = zone_send_at_s[:, None, :]
    valid = active[None, :, None] & ~(t < valid_from_s[None, :, None]) & ~(t >= valid_to_s[None, :, None])
    pair_user, pair_message, repeat_ok = _repeat_pairs(
        send_at_s, reachable.shape[1], rules, last_pairs or _no_pairs(), next_pairs or _no_pairs()
    )
    # messages eligible per (user, hour), counted once per distinct (reachable row, zone) ...
    rows = np.concatenate([np.packbits(reachable, axis=1), zone.astype(np.int64)[:, None].view(np.uint8)], axis=1)
    _, first, inverse = np.unique(
        np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel(),
        return_index=True,
        return_inverse=True,
    )
    count = (reachable[first][:, :, None] & valid[zone[first]]).sum(axis=1)[inverse.reshape(-1)]
    # ... less the pairs the repeat rule blocks
    blocked = ~repeat_ok & reachable[pair_user, pair_message, None] & valid[zone[pair_user], pair_message]
    _subtract_rows_at(count, pair_user, blocked)
    elig = Eligibility(
        reachable, zone, valid, spacing, pair_user, pair_message, repeat_ok, feasible=spacing & (count > 0)
    )
    return elig, gap_hours


def eligibility(
    send_at_s: np.ndarray,
    last_send_s: np.ndarray,
    last_message_s: np.ndarray,
    reachable: np.ndarray,
    active: np.ndarray,
    valid_from_s: np.ndarray,
    valid_to_s: np.ndarray,
    rules: Rules,
    next_send_s: np.ndarray | None = None,
    next_message_s: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """eligible (U, M, H) dense and gap_hours (U, H), for callers with few users (the policy
    harness): :func:`eligibility_by_zone` with the zones as the distinct rows of instants.

    send_at_s (U, H), last_message_s and next_message_s (U, M) epoch seconds (NaN: none);
    the other arguments as in :func:`eligibility_by_zone`."""
    rows, zone = np.unique(np.nan_to_num(send_at_s, nan=-1.0), axis=0, return_inverse=True)

    def pairs(times):
        if times is None:
            return None
        u, m = np.nonzero(~np.isnan(times))
        return u, m, times[u, m]

    elig, gap_hours = eligibility_by_zone(
        np.where(rows < 0, np.nan, rows),
        zone.reshape(-1),
        last_send_s,
        reachable,
        active,
        valid_from_s,
        valid_to_s,
        rules,
        next_send_s,
        pairs(last_message_s),
        pairs(next_message_s),
    )
    return elig.dense(), gap_hours
