"""Off-policy checks of the logged propensities, on one day of a harness world.

* :func:`calibration`: the production ``matching.propensity`` logged for the chosen message
  against how often re-runs of the same day with other seeds (``bayes.draw_keys`` seeds,
  everything else equal) pick that message for that user.
* :func:`snips_check`: a uniformly random logging policy (random send with probability
  ``send_prob``, random feasible hour, random eligible message; exact propensities) is
  replayed ``log_runs`` times on the day; the self-normalised IPS estimate of the value of
  ``ours`` (mean true expected incremental purchases per user and day, 0 without a send) from
  those logs is compared with ``ours``'s simulated value over ``target_runs`` re-runs with
  other seeds.  The target's action probabilities over (send, hour, message) come from
  resampling its Beta posteriors through ``matching.decide`` (like ``matching.propensity``,
  joint over the hour as well, since the reward depends on it).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from nudgeflow.decide.matching import Options, decide, propensity
from nudgeflow.decide.sampling import DrawKeys, draw_keys, thompson_sample
from nudgeflow.lab.harness.loop import DayContext, Sim, run_policy
from nudgeflow.lab.harness.policies import Agentic, random_choice
from nudgeflow.lab.simulate import simulate_day


def warm_state(home, days: int, settings=None) -> tuple[Sim, Agentic, DayContext]:
    """Play ``ours`` for ``days`` days, then return the sim, the policy and the next day's context."""
    pol = Agentic("ours")
    r = run_policy(home, pol, days, settings)
    sim = r["sim"]
    day = sim.first_day + dt.timedelta(days=days)
    ctx = sim.context(day)
    return sim, pol, ctx


def calibration(sim: Sim, pol: Agentic, ctx: DayContext, reruns: int = 200, draws: int | None = None) -> dict:
    """Logged propensity of the chosen message vs its empirical pick frequency over re-runs."""
    actions, keys, alpha, beta = pol.posterior_arrays(ctx)
    from nudgeflow.lab.harness.policies import build_options

    opts = build_options(ctx, actions)
    seed = pol.seed
    k = sim.s.sampling_sharpness
    theta = thompson_sample(alpha, beta, draw_keys(seed, ctx.day.toordinal(), ctx.user_ids, keys), k)
    send, hour, message = decide(theta, opts)
    resample = DrawKeys.of(seed, ctx.day.toordinal(), ctx.user_ids, keys)
    logged = propensity(alpha, beta, opts, message, resample, draws or sim.s.propensity_draws, sharpness=k)
    hits = np.zeros(len(ctx.users))
    for r in range(reruns):
        th = thompson_sample(alpha, beta, draw_keys(seed + 1000 + r, ctx.day.toordinal(), ctx.user_ids, keys), k)
        s2, _, m2 = decide(th, opts)
        hits += s2 & (m2 == message)
    chosen = message >= 0
    return {"logged": logged[chosen], "empirical": hits[chosen] / reruns, "users": int(chosen.sum())}


def joint_probabilities(
    alpha, beta, opts: Options, rng: np.random.Generator, draws: int, sharpness: float = 1.0
) -> np.ndarray:
    """P(action) per user over index h * M + m (send at hour h message m), last = no send: (U, H*M+1)."""
    n_u, n_m, n_h = opts.eligible.shape
    out = np.zeros((n_u, n_h * n_m + 1))
    theta = rng.beta(alpha * sharpness, beta * sharpness, size=(draws, n_u, alpha.shape[1]))
    for d in range(draws):  # decide takes one draw (users x actions) at a time
        send, hour, message = decide(theta[d], opts)
        np.add.at(out, (np.arange(n_u), np.where(send, hour * n_m + message, n_h * n_m)), 1.0)
    return out / draws


def _true_effects(sim: Sim, ctx: DayContext, ui, m, h) -> np.ndarray:
    """True expected incremental purchases of sends (ui, m, h) of the day, per user position."""
    w = sim.world
    u = ctx.users[ui]
    t = ctx.send_at_s[ui, h]
    d0 = ctx.as_of_us / 1e6
    keep = sim.meas.sends["t"] / 1e6 >= d0 - 7 * 86400
    prev = (sim.meas.sends["u"][keep], sim.meas.sends["t"][keep] / 1e6, sim.tau[keep])
    out = simulate_day(w, ctx.day, {"u": u, "m": m, "c": w.msg_channel[m], "t": t}, np.full(len(u), "x"), prev)
    eff = out["effects"]
    order = np.lexsort((m, u, t))  # simulate_day sorts its sends by (t, u, m)
    te = np.zeros(len(ctx.users))
    te[ui[order]] = eff["true_effect"].to_numpy()
    return te


def snips_check(
    sim: Sim,
    pol: Agentic,
    ctx: DayContext,
    *,
    log_runs: int = 40,
    target_runs: int = 40,
    send_prob: float = 0.5,
    draws: int = 400,
) -> dict:
    from nudgeflow.lab.harness.policies import build_options

    actions, keys, alpha, beta = pol.posterior_arrays(ctx)
    opts = build_options(ctx, actions)
    n_u, n_m, n_h = ctx.eligible.shape
    rng = np.random.default_rng([pol.seed, 777])
    k = sim.s.sampling_sharpness
    p_target = joint_probabilities(alpha, beta, opts, rng, draws, k)
    has_option = ctx.eligible.any(axis=(1, 2))
    # logs of the random policy
    pairs = []  # (importance weights, true values) of each logged run's users with options
    for run in range(log_runs):
        g = np.random.default_rng([pol.seed, 999, run])
        mask = g.random(n_u) < send_prob
        ui, m, h = random_choice(ctx, g, mask)
        te = _true_effects(sim, ctx, ui, m, h)
        n_hh = ctx.eligible.any(axis=1).sum(axis=1)
        action = np.full(n_u, n_h * n_m)
        p_log = np.where(has_option, 1.0 - send_prob, 1.0)
        action[ui] = h * n_m + m
        p_log[ui] = send_prob / (n_hh[ui] * ctx.eligible[ui, :, h].sum(axis=1))
        w = p_target[np.arange(n_u), action] / p_log
        pairs.append((w[has_option], te[has_option]))
    w_all = np.concatenate([p[0] for p in pairs])
    te_all = np.concatenate([p[1] for p in pairs])
    den, den2 = float(w_all.sum()), float((w_all**2).sum())
    snips = float((w_all * te_all).sum()) / den if den > 0 else float("nan")
    # its standard error by the delta method: var = sum w_i^2 (te_i - snips)^2 / (sum w_i)^2
    se = float(np.sqrt((w_all**2 * (te_all - snips) ** 2).sum()) / den) if den > 0 else float("nan")
    # simulated value of the target policy: re-runs with other draw seeds
    values = []
    for r in range(target_runs):
        th = thompson_sample(alpha, beta, draw_keys(pol.seed + 5000 + r, ctx.day.toordinal(), ctx.user_ids, keys), k)
        send, hour, message = decide(th, opts)
        ui = np.nonzero(send)[0]
        te = _true_effects(sim, ctx, ui, message[ui], hour[ui])
        values.append(float(te[has_option].mean()))
    values = np.array(values)
    return {
        "snips": snips,
        "snips_se": se,
        "snips_interval": (snips - 1.96 * se, snips + 1.96 * se),
        "target_mean": float(values.mean()),
        "target_sd": float(values.std(ddof=1)),
        "interval": (
            float(values.mean() - 1.96 * values.std(ddof=1)),
            float(values.mean() + 1.96 * values.std(ddof=1)),
        ),
        "logged_decisions": len(w_all),
        "effective_n": den**2 / den2 if den2 > 0 else 0.0,
        "logging_value": float(te_all.mean()) if len(te_all) else float("nan"),
    }
