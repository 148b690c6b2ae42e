"""The guardrails: which message may be sent to which user at which hour of day D.

One pure function, :func:`eligibility`, decides it for the daily run, for ``explain`` and
for the policy harness alike. A (user, message, hour) is eligible when, at the hour's UTC
instant in [D, D+1):

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
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np


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
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    out = {}
    for name in set(timezones):
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
        out[name] = np.array([found.get(h, np.datetime64("NaT", "s")) for h in hours], dtype="datetime64[s]")
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
    """eligible (U, M, H) and gap_hours (U, H), the hours since the user's last send at each
    candidate instant (NaN: never sent).

    send_at_s (U, H), last_send_s (U,), last_message_s (U, M), reachable (U, M) bool,
    active / valid_from_s / valid_to_s (M,); next_send_s (U,) and next_message_s (U, M): the
    user's first send scheduled after D (None or NaN: none)."""
    gap_hours = (send_at_s - last_send_s[:, None]) / 3600.0
    spacing_ok = ~np.isnan(send_at_s) & ~(gap_hours < rules.min_hours_between_sends)
    if next_send_s is not None:
        spacing_ok &= ~((next_send_s[:, None] - send_at_s) / 3600.0 < rules.min_hours_between_sends)
    # validity depends only on the instants, which users of one time zone share: compare per
    # distinct row of instants (Z x M x H), then spread to the users
    rows, inverse = np.unique(np.nan_to_num(send_at_s, nan=-1.0), axis=0, return_inverse=True)
    t = np.where(rows < 0, np.nan, rows)[:, None, :]
    valid = active[None, :, None] & ~(t < valid_from_s[None, :, None]) & ~(t >= valid_to_s[None, :, None])
    eligible = reachable[:, :, None] & valid[inverse.reshape(-1)] & spacing_ok[:, None, :]
    # the repeat rule, only where the user has a recent (or a later scheduled) send of the message
    repeat = rules.min_days_before_repeat * 86400.0
    for other, before in ((last_message_s, True), (next_message_s, False)):
        if other is None:
            continue
        u, m = np.nonzero(~np.isnan(other))
        if len(u):
            gap = send_at_s[u, :] - other[u, m][:, None] if before else other[u, m][:, None] - send_at_s[u, :]
            eligible[u, m, :] &= ~(gap < repeat)
    if rules.max_sends_per_day < 1:
        eligible[:] = False
    return eligible, gap_hours
