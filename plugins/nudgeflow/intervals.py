"""Intervals for the report and the evaluations: event weights by user bootstrap, and the
lift of the agentic group over the holdout (normal intervals from scipy).

The event-weight estimator is dbt's (`event_weights_history`); its per-user strata are
`marts.event_weight_strata`. :func:`mh_event_weights` is the estimator's last step on
Mantel-Haenszel sums, so that users can be resampled in memory.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats


def mh_event_weights(
    mh_followed: np.ndarray, mh_not_followed: np.ndarray, goal: int, present: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The last step of ``event_weights_history`` on Mantel-Haenszel sums (..., E): llr_e =
    ln((mh_followed_e + 0.5) / (mh_not_followed_e + 0.5)); the weight is llr_e for the names
    ``present`` in the horizon (all by default) but the goal, 0 for absent names, and the goal
    weighs max(1, the largest llr of the other present names) (1 if there is none).
    Returns (llr, weight)."""
    llr = np.log((mh_followed + 0.5) / (mh_not_followed + 0.5))
    proxy = np.ones(llr.shape[-1], dtype=bool) if present is None else np.asarray(present, dtype=bool).copy()
    proxy[goal] = False
    w = np.where(proxy, llr, 0.0)
    w[..., goal] = np.maximum(1.0, np.where(proxy, llr, -np.inf).max(axis=-1))
    return llr, w


def event_weight_intervals(
    strata: pl.DataFrame, goal: str, replicates: int, seed: int, level: float = 0.95
) -> list[dict]:
    """Event weights with user-bootstrap intervals from the per-user strata (user_id,
    event_name, n_followed, n_not_followed, us_followed, horizon_us): the within-user
    Mantel-Haenszel ratio (sum_u a_ue (T - F_u) / T + 0.5) / (sum_u b_ue F_u / T + 0.5), the
    goal weighing max(1, the largest other weight); users resampled with Poisson(1) weights.
    Rows sorted by weight: event_name, n_events, share_followed, llr, weight, ci, is_goal."""
    names = sorted(set(strata["event_name"].unique().to_list()) | {goal})
    uid = strata["user_id"].unique().sort()
    e_index = pl.DataFrame({"event_name": names, "_e": np.arange(len(names))})
    u_index = pl.DataFrame({"user_id": uid, "_u": np.arange(len(uid))})
    rows = strata.join(e_index, on="event_name").join(u_index, on="user_id")
    ei, ui = rows["_e"].to_numpy(), rows["_u"].to_numpy()
    nf = np.zeros((len(uid), len(names)))
    nn = np.zeros((len(uid), len(names)))
    nf[ui, ei] = rows["n_followed"].to_numpy()
    nn[ui, ei] = rows["n_not_followed"].to_numpy()
    share = np.zeros(len(uid))
    share[ui] = rows["us_followed"].to_numpy().astype(np.float64) / rows["horizon_us"].to_numpy()
    mh_f = nf * (1 - share)[:, None]  # a_ue (T - F_u) / T
    mh_n = nn * share[:, None]  # b_ue F_u / T
    g = names.index(goal)
    point_llr, point = mh_event_weights(mh_f.sum(axis=0), mh_n.sum(axis=0), g)
    # Poisson(1) weights per user, drawn and applied in blocks of users: memory stays
    # replicates x block, whatever the number of users
    rng = np.random.default_rng([seed, 777])
    sum_f, sum_n = np.zeros((replicates, len(names))), np.zeros((replicates, len(names)))
    for lo_u in range(0, len(uid), 50_000):
        bw = rng.poisson(1.0, (replicates, min(50_000, len(uid) - lo_u))).astype(np.float64)
        sum_f += bw @ mh_f[lo_u : lo_u + 50_000]
        sum_n += bw @ mh_n[lo_u : lo_u + 50_000]
    reps = mh_event_weights(sum_f, sum_n, g)[1]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(reps, [tail, 100 - tail], axis=0) if replicates else (point * np.nan, point * np.nan)
    out = []
    for j, name in enumerate(names):
        n_e = nf[:, j].sum() + nn[:, j].sum()
        out.append(
            {
                "event_name": name,
                "n_events": int(n_e),
                "share_followed": float(nf[:, j].sum() / max(n_e, 1)),
                "llr": float(point_llr[j]),
                "weight": float(point[j]),
                "ci": [float(lo[j]), float(hi[j])],
                "is_goal": name == goal,
            }
        )
    return sorted(out, key=lambda r: -r["weight"])


def z(level: float) -> float:
    """The two-sided normal quantile of a level, e.g. 0.99 -> 2.576."""
    return float(stats.norm.ppf(0.5 + level / 2))


def share_difference(hits_a: int, n_a: int, hits_b: int, n_b: int, level: float = 0.99) -> tuple[float, float, float]:
    """p_a - p_b, the difference of two shares, with its normal (Wald) interval."""
    if not n_a or not n_b:
        return math.nan, math.nan, math.nan
    pa, pb = hits_a / n_a, hits_b / n_b
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    d = pa - pb
    return d, d - z(level) * se, d + z(level) * se


def relative_increase(a: np.ndarray, b: np.ndarray, level: float = 0.99) -> tuple[float, float, float]:
    """mean(a) / mean(b) - 1 with a delta-method interval on the log of the ratio."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2 or a.mean() <= 0 or b.mean() <= 0:
        return math.nan, math.nan, math.nan
    ratio = a.mean() / b.mean()
    se = math.sqrt(a.var(ddof=1) / (len(a) * a.mean() ** 2) + b.var(ddof=1) / (len(b) * b.mean() ** 2))
    return ratio - 1, ratio * math.exp(-z(level) * se) - 1, ratio * math.exp(z(level) * se) - 1
