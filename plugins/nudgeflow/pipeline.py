"""One daily run for schedule date D, as six steps that the CLI and the Airflow DAG share.

ingest -> measure (dbt) -> priors -> sample -> match -> schedule. Each step reads what the
previous one wrote to the warehouse for D and replaces its own partition for D, so a step
can be retried alone and a rerun over the same inputs gives the same schedule.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from nudgeflow import __version__
from nudgeflow.bayes import draw_keys, empirical_bayes_prior, posterior, thompson_sample
from nudgeflow.ingest import ingest
from nudgeflow.matching import Options, decide, frequency_labels, gap_bucket, local_send_times, propensity
from nudgeflow.measure import dbt_build
from nudgeflow.settings import Settings, as_of, load_settings
from nudgeflow.warehouse import connect, read, replace_partition, table_exists, write_parquet_atomically

Progress = Callable[[str], None] | None
POLICY = f"nudgeflow-agentic/{__version__}"
STEPS = ("ingest", "measure", "priors", "sample", "match", "schedule")


def _say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)


# ---------- 1. ingest and 2. measure

def step_ingest(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Load newly landed files into raw.*; bad files are quarantined, never block the rest."""
    with connect(home) as con:
        report = ingest(con, Path(home) / "landing", progress)
    return {"files": sum(report.loaded.values()), "rows": sum(report.rows.values()),
            "quarantined_files": len(report.quarantined)}


def step_measure(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """dbt build for as-of D 00:00 UTC: event weights, outcomes, treatment effects, action outcomes."""
    settings = load_settings(home)
    nodes = dbt_build(home, settings, as_of(day), progress)
    return {"dbt_nodes": len(nodes)}


# ---------- 3. priors

def action_space(con, settings: Settings) -> pl.DataFrame:
    """Every (action_set, action) of this run: catalogue channels and labels, send hours, frequencies."""
    channels = read(con, "select distinct 'channel' as action_set, channel as action from marts.catalogue")
    labels = read(con, "select distinct action_set, action from marts.catalogue_labels")
    hours = pl.DataFrame({"action_set": "send_hour", "action": [str(h) for h in settings.send_hours]})
    freq = pl.DataFrame({"action_set": "frequency", "action": frequency_labels(settings.frequency_bucket_hours)})
    return pl.concat([channels, hours, freq, labels]).unique(maintain_order=True).sort("action_set", "action")


def step_priors(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Empirical-Bayes prior per (cell, action) and the Beta posterior of every (user, action)."""
    settings = load_settings(home)
    with connect(home) as con:
        users = read(con, "select user_id, cell from marts.user_features where not is_holdout")
        # the evidence with forgetting (older sends weigh less; see action_outcomes)
        outcomes = read(con, "select user_id, action_set, action, weighted_successes as successes, "
                             "weighted_trials as trials from marts.action_outcomes")
        actions = action_space(con, settings)
        prior = empirical_bayes_prior(outcomes, read(con, "select user_id, cell from marts.user_features"),
                                      max_strength=settings.prior_max_strength,
                                      min_users=settings.prior_min_users)
        post = posterior(users, actions, prior, outcomes)
        replace_partition(con, "decide.priors", day, prior.with_columns(schedule_date=pl.lit(day)))
        replace_partition(con, "decide.posteriors", day, post.with_columns(schedule_date=pl.lit(day)))
    _say(progress, f"priors: {prior.height} (cell, action) priors; posteriors for {users.height} users "
                   f"x {actions.height} actions")
    return {"users": users.height, "actions": actions.height, "priors": prior.height}


# ---------- 4a. sample

def step_sample(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Thompson sampling: one theta ~ Beta(k alpha, k beta) per (user, action), keyed by (seed, D, user,
    action); k = sampling_sharpness."""
    settings = load_settings(home)
    with connect(home) as con:
        post = read(con, "select user_id, action_set, action, alpha, beta from decide.posteriors "
                         "where schedule_date = ? order by user_id, action_set, action", [day])
        alpha, beta, user_ids, action_keys = _dense(post)
        theta = thompson_sample(alpha, beta, draw_keys(settings.seed, day.toordinal(), user_ids, action_keys),
                                settings.sampling_sharpness)
        n_a = len(action_keys)
        samples = post.select("user_id", "action_set", "action").with_columns(
            theta=pl.Series(theta.reshape(-1)), schedule_date=pl.lit(day))
        replace_partition(con, "decide.samples", day, samples)
    _say(progress, f"sample: {theta.size} draws for {len(user_ids)} users x {n_a} actions")
    return {"draws": int(theta.size)}


def _dense(frame: pl.DataFrame, *values: str) -> tuple:
    """(user, action) rows sorted by user then action -> dense (U, A) matrices."""
    user_ids = frame["user_id"].unique(maintain_order=True).to_list()
    keys = (frame["action_set"] + "=" + frame["action"]).to_list()
    n_a = len(keys) // max(len(user_ids), 1)
    action_keys = keys[:n_a]
    cols = values or ("alpha", "beta")
    mats = [frame[c].to_numpy().reshape(len(user_ids), n_a) for c in cols]
    return (*mats, user_ids, action_keys)


# ---------- 4b. match

def _history(con, day: dt.date, settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Last send per user and last send per (user, message), landed before D or scheduled for dates before D."""
    # only sends before D: the same for the run for D and for a replay after later runs (explain)
    landed = read(con, "select user_id, message_id, sent_ts from marts.recent_sends where sent_ts < ?", [day])
    last_landed = read(con, "select user_id, last_sent_ts as sent_ts from marts.user_features "
                            "where last_sent_ts < ?", [day])
    scheduled = pl.DataFrame(schema={"user_id": pl.String, "message_id": pl.String, "sent_ts": pl.Datetime("us")})
    if table_exists(con, "main", "send_schedule"):
        scheduled = read(con, "select user_id, message_id, send_at as sent_ts from send_schedule "
                              "where schedule_date < ? and schedule_date >= ?",
                         [day, day - dt.timedelta(days=settings.min_days_before_repeat + 1)])
    sends = pl.concat([landed.with_columns(pl.col("sent_ts").cast(pl.Datetime("us"))),
                       scheduled.with_columns(pl.col("sent_ts").cast(pl.Datetime("us")))])
    last_user = (pl.concat([sends.select("user_id", "sent_ts"),
                            last_landed.with_columns(pl.col("sent_ts").cast(pl.Datetime("us")))])
                 .group_by("user_id").agg(pl.col("sent_ts").max()))
    last_message = sends.group_by("user_id", "message_id").agg(pl.col("sent_ts").max())
    return last_user, last_message


def build_options(con, day: dt.date, settings: Settings, user_ids: list[str], action_keys: list[str]) -> tuple:
    """Eligibility of every (user, message, hour) and the action indices, from the marts."""
    n_u = len(user_ids)
    a_index = {k: i for i, k in enumerate(action_keys)}
    users = pl.DataFrame({"user_id": user_ids, "u": np.arange(n_u)}).join(
        read(con, "select user_id, timezone, country from marts.user_features"), on="user_id", how="left")
    catalogue = read(con, "select message_id, channel, active, valid_from, valid_to, countries "
                          "from marts.catalogue order by message_id")
    labels = read(con, "select message_id, action_set, action from marts.catalogue_labels")
    label_sets = sorted(labels["action_set"].unique().to_list())
    hours = list(settings.send_hours)
    n_m, n_h = catalogue.height, len(hours)
    m_index = {m: i for i, m in enumerate(catalogue["message_id"].to_list())}

    # message actions: channel, then each label set
    message_actions = np.full((n_m, 1 + len(label_sets)), -1, dtype=np.int64)
    message_actions[:, 0] = [a_index.get(f"channel={c}", -1) for c in catalogue["channel"].to_list()]
    for row in labels.iter_rows(named=True):
        message_actions[m_index[row["message_id"]], 1 + label_sets.index(row["action_set"])] = \
            a_index.get(f"{row['action_set']}={row['action']}", -1)

    # UTC instant of each allowed local hour, per user
    tz = users["timezone"].fill_null("UTC").to_list()
    by_zone = local_send_times(day, tz, hours)
    send_at = np.stack([by_zone[z] for z in tz]) if n_u else np.empty((0, n_h), "datetime64[s]")
    t = send_at.astype("datetime64[s]").astype(np.int64).astype(float)
    t[np.isnat(send_at)] = np.nan

    # spacing and frequency: hours since the user's last send at each candidate instant
    last_user, last_message = _history(con, day, settings)
    last = np.full(n_u, np.nan)
    lu = users.select("user_id", "u").join(last_user, on="user_id")
    last[lu["u"].to_numpy()] = lu["sent_ts"].dt.epoch("s").to_numpy().astype(float)
    gap_hours = (t - last[:, None]) / 3600.0
    spacing_ok = ~np.isnan(t) & ~(gap_hours < settings.min_hours_between_sends)

    # consent and country per (user, message)
    consents = read(con, "select user_id, channel from marts.consents_current where opted_in")
    consent = np.zeros((n_u, n_m), dtype=bool)
    cm = consents.join(users.select("user_id", "u"), on="user_id").join(
        catalogue.select("message_id", "channel").with_columns(m=pl.col("message_id").replace_strict(m_index)),
        on="channel")
    consent[cm["u"].to_numpy(), cm["m"].to_numpy()] = True
    country = np.array([(c or "").strip().upper() for c in users["country"].to_list()])
    country_ok = np.ones((n_u, n_m), dtype=bool)
    for m, allowed in enumerate(catalogue["countries"].to_list()):
        codes = {c.strip().upper() for c in (allowed or "").split(",") if c.strip()}
        if codes:
            country_ok[:, m] = np.isin(country, list(codes))

    # activity and validity per (message, instant), repeat rule per (user, message, instant)
    def epoch(col: str) -> np.ndarray:
        return catalogue[col].cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy()

    vf, vt = epoch("valid_from"), epoch("valid_to")
    active = catalogue["active"].fill_null(True).to_numpy()
    tt = t[:, None, :]
    valid = (active[None, :, None] & ~(tt < vf[None, :, None]) & ~(tt >= vt[None, :, None]))
    last_msg = np.full((n_u, n_m), np.nan)
    lm = last_message.join(users.select("user_id", "u"), on="user_id").filter(
        pl.col("message_id").is_in(list(m_index)))
    last_msg[lm["u"].to_numpy(), lm["message_id"].replace_strict(m_index).to_numpy()] = \
        lm["sent_ts"].dt.epoch("s").to_numpy().astype(float)
    repeat_ok = ~(tt - last_msg[:, :, None] < settings.min_days_before_repeat * 86400.0)

    eligible = (consent & country_ok)[:, :, None] & valid & repeat_ok & spacing_ok[:, None, :]
    if settings.max_sends_per_day < 1:
        eligible[:] = False
    opts = Options(
        action_set=np.array([k.split("=", 1)[0] for k in action_keys]),
        action=np.array([k.split("=", 1)[1] for k in action_keys]),
        hour_actions=np.array([a_index[f"send_hour={h}"] for h in hours]),
        frequency_actions=np.array([a_index[f"frequency={f}"]
                                    for f in frequency_labels(settings.frequency_bucket_hours)]),
        message_actions=message_actions,
        send_at=send_at,
        eligible=eligible,
        gap_bucket=gap_bucket(gap_hours, settings.frequency_bucket_hours),
    )
    return opts, catalogue, label_sets


def step_match(home: Path, day: dt.date, progress: Progress = None) -> dict:
    """Pick the hour, the send-or-wait decision and the best-matching eligible message per user."""
    settings = load_settings(home)
    with connect(home) as con:
        frame = read(con, "select s.user_id, s.action_set, s.action, s.theta, p.alpha, p.beta "
                          "from decide.samples as s join decide.posteriors as p "
                          "using (schedule_date, user_id, action_set, action) "
                          "where schedule_date = ? order by user_id, action_set, action", [day])
        theta, alpha, beta, user_ids, action_keys = _dense(frame, "theta", "alpha", "beta")
        opts, catalogue, label_sets = build_options(con, day, settings, user_ids, action_keys)
        send, hour, message = decide(theta, opts)
        rng = np.random.default_rng([settings.seed, day.toordinal(), 1])
        prop = propensity(alpha, beta, opts, message, rng, settings.propensity_draws,
                          sharpness=settings.sampling_sharpness)
        chosen = np.nonzero(send)[0]
        h, m = hour[chosen], message[chosen]
        freq = frequency_labels(settings.frequency_bucket_hours)
        msg_actions = opts.message_actions[m]
        actions = [
            json.dumps({
                "channel": catalogue["channel"][int(mi)],
                "send_hour": str(settings.send_hours[hi]),
                "frequency": freq[opts.gap_bucket[u, hi]],
                **{s: str(opts.action[a]) for s, a in zip(label_sets, row[1:]) if a >= 0},
            }, sort_keys=False)
            for u, hi, mi, row in zip(chosen, h, m, msg_actions)
        ]
        choices = pl.DataFrame({
            "schedule_date": [day] * len(chosen),
            "user_id": [user_ids[u] for u in chosen],
            "message_id": catalogue["message_id"].gather(m).to_list() if len(chosen) else [],
            "channel": catalogue["channel"].gather(m).to_list() if len(chosen) else [],
            "send_at": opts.send_at[chosen, h].astype("datetime64[us]"),
            "actions": actions,
            "propensity": prop[chosen],
        }, schema={"schedule_date": pl.Date, "user_id": pl.String, "message_id": pl.String, "channel": pl.String,
                   "send_at": pl.Datetime("us"), "actions": pl.String, "propensity": pl.Float64})
        replace_partition(con, "decide.choices", day, choices)
    waiting = int((opts.eligible.any(axis=(1, 2)) & ~send).sum())
    _say(progress, f"match: {len(chosen)} sends chosen for {len(user_ids)} users; {waiting} wait "
                   f"(frequency), {int((~opts.eligible.any(axis=(1, 2))).sum())} have no eligible message")
    return {"sends": int(len(chosen)), "waiting": waiting}


# ---------- 5. schedule

def step_schedule(home: Path, day: dt.date, run_id: str, progress: Progress = None) -> dict:
    """Write D's rows of `send_schedule` and replace its Parquet export atomically."""
    with connect(home) as con:
        rows = read(con, "select schedule_date, user_id, message_id, channel, send_at, actions, propensity "
                         "from decide.choices where schedule_date = ? order by user_id", [day])
        rows = rows.with_columns(policy=pl.lit(POLICY), run_id=pl.lit(run_id))
        replace_partition(con, "main.send_schedule", day, rows)
    path = Path(home) / "exports" / "send_schedule" / f"date={day.isoformat()}" / "part-0.parquet"
    write_parquet_atomically(rows, path)
    _say(progress, f"schedule: {rows.height} rows -> {path}")
    return {"rows": rows.height, "export": str(path)}


def run(home: Path, day: dt.date, run_id: str | None = None, progress: Progress = None) -> dict:
    """The whole daily run for schedule date D."""
    run_id = run_id or f"manual__{day.isoformat()}"
    timings = {}
    for name, step in (("ingest", step_ingest), ("measure", step_measure), ("priors", step_priors),
                       ("sample", step_sample), ("match", step_match)):
        started = time.perf_counter()
        step(home, day, progress)
        timings[name] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    result = step_schedule(home, day, run_id, progress)
    timings["schedule"] = round(time.perf_counter() - started, 2)
    return {**result, "timings": timings}
