"""The action space of a run: the action sets and their actions, as the paper's modular design.

Action sets: ``channel`` (the catalogue's channels), ``send_hour`` (the allowed local hours,
as text), ``frequency`` (buckets of the gap since the user's previous send) and one set
``label_<dimension>`` per label column of the catalogue, whose distinct values are its
actions. An action is the pair (action_set, action); ``action_key`` is its stable text key,
used only to key random draws.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl


def frequency_labels(edges) -> list[str]:
    """Bucket names for gap edges in hours, e.g. [36, 84, 180] -> <36h, 36-84h, 84-180h, >=180h."""
    edges = [int(e) for e in edges]
    return [f"<{edges[0]}h"] + [f"{a}-{b}h" for a, b in zip(edges, edges[1:])] + [f">={edges[-1]}h"]


def gap_bin_labels(window_hours: float, bin_hours: float) -> list[str]:
    """The gap bins of the gap adjustment (the dbt macro gap_bin_labels): [0, b), [b, 2b), ...
    inside the pre window (the last cut at window_hours), then 'none' (no send in it)."""
    n = math.ceil(window_hours / bin_hours)
    return [f"{i * bin_hours:g}-{min((i + 1) * bin_hours, window_hours):g}h" for i in range(n)] + ["none"]


def gap_bucket(gap_hours: np.ndarray, edges) -> np.ndarray:
    """Bucket index of each gap since the previous send (NaN: no previous send -> last bucket)."""
    b = np.searchsorted(np.asarray(edges, dtype=float), np.nan_to_num(gap_hours, nan=np.inf), side="right")
    return b.astype(np.int64)


def action_space(channels: list[str], labels: pl.DataFrame, send_hours, frequency_edges) -> pl.DataFrame:
    """Every (action_set, action) of a run, sorted: the channels, the allowed send hours, the
    frequency buckets and the catalogue's labels (``labels``: action_set, action)."""
    frames = [
        pl.DataFrame(
            {"action_set": "channel", "action": list(channels)}, schema={"action_set": pl.String, "action": pl.String}
        ),
        pl.DataFrame({"action_set": "send_hour", "action": [str(h) for h in send_hours]}),
        pl.DataFrame({"action_set": "frequency", "action": frequency_labels(frequency_edges)}),
        labels.select(pl.col("action_set").cast(pl.String), pl.col("action").cast(pl.String)),
    ]
    return pl.concat(frames).unique(maintain_order=True).sort("action_set", "action")


def action_key(action_set: str, action: str) -> str:
    """The text key of an action, for keying draws: ``set=action``."""
    return f"{action_set}={action}"


def dense(frame: pl.DataFrame, *values: str) -> tuple:
    """(user, action) rows sorted by user then action -> dense (U, A) matrices of ``values``
    (default alpha, beta), the user ids and the actions as (action_set, action) pairs."""
    user_ids = frame["user_id"].unique(maintain_order=True).to_list()
    n_a = frame.height // max(len(user_ids), 1)
    actions = list(zip(frame["action_set"][:n_a].to_list(), frame["action"][:n_a].to_list()))
    cols = values or ("alpha", "beta")
    mats = [frame[c].to_numpy().reshape(len(user_ids), n_a) for c in cols]
    return (*mats, user_ids, actions)


def message_actions(
    message_ids: list[str], catalogue_actions: pl.DataFrame, sets: list[str], actions: list[tuple[str, str]]
) -> np.ndarray:
    """(M, S) index into ``actions`` of each message's action in each of ``sets`` (-1: none).

    catalogue_actions: message_id, action_set, action; one row per message and set it has
    (its channel, each of its labels)."""
    a_index = {a: i for i, a in enumerate(actions)}
    m_index = {m: i for i, m in enumerate(message_ids)}
    s_index = {s: i for i, s in enumerate(sets)}
    out = np.full((len(message_ids), len(sets)), -1, dtype=np.int64)
    for m, s, a in catalogue_actions.select("message_id", "action_set", "action").iter_rows():
        if m in m_index and s in s_index:
            out[m_index[m], s_index[s]] = a_index.get((s, a), -1)
    return out
