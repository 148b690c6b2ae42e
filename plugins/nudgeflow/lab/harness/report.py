"""`nudgeflow evaluate policies`: every policy on the same worlds, seeds and guardrails.

For each world (scenario) and seed, one world is created (``create_world``: the same users,
preferences, catalogue and legacy history for every policy) and every policy plays the same
``days`` closed-loop days on it (:func:`nudgeflow.lab.harness.loop.run_policy`).  Organic events
use common random numbers, so per seed the difference between two policies is (almost
only) the effect of their sends: intervals are paired over seeds (mean +- t(0.975, n-1) x
sd / sqrt(n) of the per-seed differences).

Outputs in ``out``: ``runs.csv`` (one row per world x policy x seed), ``daily.csv``,
``summary.csv`` (per world x policy: increments over ``none`` with intervals, share of the
oracle's increment, decisions per second), ``report.md`` (the tables and checks),
``regret_<world>.png`` (cumulative regret against the oracle, true expected incremental
purchases, mean over seeds with its interval) and ``frequency.csv`` (sends per user by
tercile of the user's true fatigue).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import polars as pl

WORLDS = ("default", "drift", "fatigue", "many_labels")
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    14: 2.145,
    19: 2.093,
    29: 2.045,
}


def t975(df: int) -> float:
    if df in T975:
        return T975[df]
    keys = sorted(T975)
    for k in keys:
        if k >= df:
            return T975[k]
    return 1.96


def mean_ci(x) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if len(x) < 2:
        return (m, math.nan, math.nan)
    h = t975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return (m, m - h, m + h)


def fmt(ci, nd=1) -> str:
    m, lo, hi = ci
    if not np.isfinite(m):
        return "n/a"
    if not np.isfinite(lo):
        return f"{m:.{nd}f}"
    return f"{m:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}]"


# ----------------------------------------------------------------------------- running


def run_world_seed(
    root: str, world: str, seed: int, users: int, history_days: int, days: int, policies: tuple[str, ...]
) -> dict:
    """All policies on one (world, seed); returns frames (picklable)."""
    from nudgeflow.lab.harness.loop import ensure_world, run_policy
    from nudgeflow.lab.harness.policies import make_policy

    home = ensure_world(Path(root), world, seed, users, history_days)
    runs, daily, freq, lines = [], [], [], []
    for name in policies:
        started = time.perf_counter()
        pol = make_policy(name)
        r = run_policy(home, pol, days)
        secs = time.perf_counter() - started
        d = r["daily"].with_columns(world=pl.lit(world), seed=pl.lit(seed), policy=pl.lit(name))
        daily.append(d)
        sim, rows = r["sim"], r["loop_sends"]
        w = sim.world
        rew = sim.meas.reward[rows] if len(rows) else np.zeros(0)
        te = sim.true_effect[rows]
        ok = ~np.isnan(rew)
        # sends per non-holdout user and the user's true fatigue (frequency check)
        per_user = np.bincount(sim.meas.sends["u"][rows], minlength=w.n)[sim.users]
        freq.append(
            pl.DataFrame(
                {
                    "world": world,
                    "seed": seed,
                    "policy": name,
                    "u": sim.users,
                    "sends": per_user,
                    "fatigue": w.prefs0.fatigue[sim.users],
                }
            )
        )
        runs.append(
            {
                "world": world,
                "seed": seed,
                "policy": name,
                "seconds": secs,
                "sends": int(d["sends"].sum()),
                "purchases": int(d["purchases"].sum()),
                "gmv": float(d["gmv"].sum()),
                "true_effect": float(d["true_effect"].sum()),
                "decisions": int(d["decisions"].sum()),
                "decide_s": float(d["decide_s"].sum()),
                "reward_rate": float(np.nanmean(rew)) if ok.any() else math.nan,
                "p_reward_if_te_pos": float(rew[ok & (te > 0)].mean()) if (ok & (te > 0)).any() else math.nan,
                "p_reward_if_te_neg": float(rew[ok & (te < 0)].mean()) if (ok & (te < 0)).any() else math.nan,
                "users_with_send": int((per_user > 0).sum()),
                "reward_te_corr_within_user": within_user_corr(sim.meas.sends["u"][rows][ok], rew[ok], te[ok]),
            }
        )
        lines.append(
            f"{world} seed={seed} {name}: {secs:.1f}s, {runs[-1]['sends']} sends, "
            f"{runs[-1]['purchases']} purchases, true effect {runs[-1]['true_effect']:.1f}"
        )
        print(f"[{time.strftime('%H:%M:%S')}] {lines[-1]}", flush=True)
    return {"runs": pl.DataFrame(runs), "daily": pl.concat(daily), "freq": pl.concat(freq), "lines": lines}


def within_user_corr(u: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of x and y after removing each user's mean (users with >= 2 rows): how
    much a user's rewards say about which of their own sends worked."""
    if len(u) == 0:
        return math.nan
    n = np.bincount(u)
    keep = n[u] >= 2
    u, x, y = u[keep], x[keep], y[keep]
    if len(u) < 3:
        return math.nan
    n = np.maximum(np.bincount(u), 1)
    xd = x - (np.bincount(u, x) / n)[u]
    yd = y - (np.bincount(u, y) / n)[u]
    den = math.sqrt(float((xd**2).sum() * (yd**2).sum()))
    return float((xd * yd).sum() / den) if den > 0 else math.nan


def evaluate(
    root: Path,
    out: Path,
    *,
    worlds=WORLDS,
    seeds: int = 5,
    users: int = 1000,
    history_days: int = 14,
    days: int = 28,
    policies=None,
    jobs: int = 2,
    progress=print,
) -> dict:
    from nudgeflow.lab.harness.policies import policies_for

    def chosen(world: str) -> tuple[str, ...]:
        names = tuple(policies) if policies else policies_for(world)
        return names if "none" in names else ("none", *names)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # seed-major: a run cut short still has every world
    tasks = [(str(root), w, s, users, history_days, days, chosen(w)) for s in range(seeds) for w in worlds]
    results = []
    partial = out / "partial"
    partial.mkdir(exist_ok=True)

    def keep(res: dict) -> None:
        results.append(res)
        tag = f"{res['runs']['world'][0]}-s{res['runs']['seed'][0]}"
        for k in ("runs", "daily", "freq"):
            res[k].write_parquet(partial / f"{k}-{tag}.parquet")

    if jobs > 1:
        import multiprocessing
        import os

        # one thread per worker process: BLAS / polars thread pools of several processes on
        # the same cores slow every policy down 2-3x
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
            os.environ.setdefault(var, "1")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            futs = [ex.submit(run_world_seed, *t) for t in tasks]
            for f in as_completed(futs):
                keep(f.result())
                progress(
                    f"done {len(results)}/{len(tasks)} (world, seed) tasks after {time.perf_counter() - started:.0f}s"
                )
    else:
        for t in tasks:
            keep(run_world_seed(*t))
            progress(f"done {len(results)}/{len(tasks)} (world, seed) tasks after {time.perf_counter() - started:.0f}s")
    return write_reports(
        out,
        pl.concat([r["runs"] for r in results]),
        pl.concat([r["daily"] for r in results]),
        pl.concat([r["freq"] for r in results]),
        time.perf_counter() - started,
        dict(users=users, seeds=seeds, days=days, history_days=history_days, worlds=list(worlds)),
    )


def write_reports(
    out: Path, runs: pl.DataFrame, daily: pl.DataFrame, freq: pl.DataFrame, elapsed: float, cfg: dict
) -> dict:
    runs = runs.sort("world", "policy", "seed")
    daily = daily.sort("world", "policy", "seed", "day")
    runs.write_csv(out / "runs.csv")
    daily.write_csv(out / "daily.csv")
    summary = summarise(runs)
    summary.write_csv(out / "summary.csv")
    plots = plot_regret(daily, out)
    fq = frequency_table(freq)
    fq.write_csv(out / "frequency.csv")
    md = markdown(runs, summary, fq, elapsed, cfg)
    (out / "report.md").write_text(md)
    return {"summary": summary, "runs": runs, "plots": plots, "markdown": md, "seconds": elapsed}


# ----------------------------------------------------------------------------- summaries


def summarise(runs: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for world in runs["world"].unique(maintain_order=True).to_list():
        r = runs.filter(pl.col("world") == world)
        base = r.filter(pl.col("policy") == "none").select(
            "seed", pl.col("purchases").alias("p0"), pl.col("gmv").alias("g0")
        )
        orac = (
            r.filter(pl.col("policy") == "oracle")
            .join(base, on="seed")
            .select("seed", (pl.col("purchases") - pl.col("p0")).alias("o_inc"), pl.col("true_effect").alias("o_te"))
        )
        ours = (
            r.filter(pl.col("policy") == "ours")
            .join(base, on="seed")
            .select(
                "seed", (pl.col("purchases") - pl.col("p0")).alias("ours_inc"), pl.col("true_effect").alias("ours_te")
            )
        )
        for pol in r["policy"].unique(maintain_order=True).to_list():
            x = (
                r.filter(pl.col("policy") == pol)
                .join(base, on="seed")
                .with_columns(inc=pl.col("purchases") - pl.col("p0"), inc_gmv=pl.col("gmv") - pl.col("g0"))
            )
            x = x.join(orac, on="seed", how="left").join(ours, on="seed", how="left")
            share = (x["inc"] / x["o_inc"]).to_numpy() if orac.height else np.array([np.nan])
            share_te = (x["true_effect"] / x["o_te"]).to_numpy() if orac.height else np.array([np.nan])
            vs_ours = (x["ours_inc"] - x["inc"]).to_numpy() if ours.height else np.array([np.nan])
            vs_ours_te = (x["ours_te"] - x["true_effect"]).to_numpy() if ours.height else np.array([np.nan])
            rows.append(
                {
                    "world": world,
                    "policy": pol,
                    "seeds": x.height,
                    **{f"inc_purchases_{k}": v for k, v in zip(("mean", "lo", "hi"), mean_ci(x["inc"]))},
                    **{f"inc_gmv_{k}": v for k, v in zip(("mean", "lo", "hi"), mean_ci(x["inc_gmv"]))},
                    **{f"true_effect_{k}": v for k, v in zip(("mean", "lo", "hi"), mean_ci(x["true_effect"]))},
                    **{f"oracle_share_{k}": v for k, v in zip(("mean", "lo", "hi"), mean_ci(share))},
                    **{f"oracle_share_te_{k}": v for k, v in zip(("mean", "lo", "hi"), mean_ci(share_te))},
                    **{f"ours_minus_{k}": v for k, v in zip(("mean", "lo", "hi"), mean_ci(vs_ours))},
                    **{f"ours_minus_te_{k}": v for k, v in zip(("mean", "lo", "hi"), mean_ci(vs_ours_te))},
                    "sends_per_seed": float(x["sends"].mean()),
                    "decisions_per_s": float(x["decisions"].sum() / max(x["decide_s"].sum(), 1e-9)),
                    "reward_rate": float(x["reward_rate"].mean()) if x["reward_rate"].is_not_null().any() else math.nan,
                    "p_reward_if_te_pos": float(x["p_reward_if_te_pos"].mean()),
                    "p_reward_if_te_neg": float(x["p_reward_if_te_neg"].mean()),
                    "reward_te_corr_within_user": float(x["reward_te_corr_within_user"].mean())
                    if "reward_te_corr_within_user" in x.columns
                    else math.nan,
                    "seconds_per_run": float(x["seconds"].mean()),
                }
            )
    return pl.DataFrame(rows)


def frequency_table(freq: pl.DataFrame) -> pl.DataFrame:
    """Sends per user over the loop by tercile of the user's true fatigue, per world x policy."""
    q = freq.with_columns(
        tercile=pl.col("fatigue")
        .qcut(3, labels=["low", "mid", "high"], allow_duplicates=True)
        .over("world", "seed", "policy")
        .cast(pl.String)
    )
    t = q.group_by("world", "policy", "tercile").agg(sends_per_user=pl.col("sends").mean())
    corr = (
        freq.group_by("world", "policy", "seed")
        .agg(corr=pl.corr("sends", "fatigue", method="spearman"))
        .group_by("world", "policy")
        .agg(spearman_sends_fatigue=pl.col("corr").mean())
    )
    wide = t.pivot(on="tercile", index=["world", "policy"], values="sends_per_user")
    return wide.join(corr, on=["world", "policy"]).sort("world", "policy")


def plot_regret(daily: pl.DataFrame, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for world in daily["world"].unique(maintain_order=True).to_list():
        d = daily.filter(pl.col("world") == world).with_columns(
            cum=pl.col("true_effect").cum_sum().over("policy", "seed"),
            t=pl.col("day").rank("dense").over("policy", "seed"),
        )
        orac = d.filter(pl.col("policy") == "oracle").select("seed", "t", pl.col("cum").alias("o"))
        if orac.height == 0:
            continue
        d = d.join(orac, on=["seed", "t"]).with_columns(regret=pl.col("o") - pl.col("cum"))
        fig, ax = plt.subplots(figsize=(8, 5))
        colours = plt.cm.tab20(np.linspace(0, 1, 20))
        for i, pol in enumerate(sorted(d["policy"].unique().to_list())):
            if pol == "oracle":
                continue
            x = d.filter(pl.col("policy") == pol).pivot(on="seed", index="t", values="regret").sort("t")
            vals = x.drop("t").to_numpy()
            m = vals.mean(axis=1)
            n = vals.shape[1]
            h = t975(n - 1) * vals.std(axis=1, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(m)
            style = "-" if pol in ("ours", "none") else ("--" if pol.startswith("ours") else ":")
            c = "black" if pol == "ours" else colours[i % 20]
            ax.plot(x["t"], m, style, label=pol, lw=2.4 if pol == "ours" else 1.3, color=c)
            ax.fill_between(x["t"], m - h, m + h, alpha=0.08, color=c)
        ax.set_xlabel("closed-loop day")
        ax.set_ylabel("cumulative regret vs oracle\n(true expected incremental purchases)")
        ax.set_title(f"world: {world}")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        p = out / f"regret_{world}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(str(p))
    return paths


def markdown(runs, summary, fq, elapsed, cfg) -> str:
    from nudgeflow.lab.harness.policies import ABLATIONS, PEERS

    lines = [
        "# Policy evaluation\n",
        f"{cfg['users']} users per world, {cfg['history_days']} days of legacy history, "
        f"{cfg['days']} closed-loop days, {cfg['seeds']} seeds per world; worlds: "
        f"{', '.join(cfg['worlds'])}. Run time {elapsed:.0f}s.\n",
        "Increments are over `none` on the same world and seed (paired); intervals are 95% "
        "t-intervals over seeds. `true effect` = sum of the sends' expected incremental purchases "
        "(simulator truth). Oracle share = policy increment / oracle increment (realised purchases; "
        "in brackets the same with true effects).\n",
    ]
    for world in summary["world"].unique(maintain_order=True).to_list():
        s = summary.filter(pl.col("world") == world)
        lines.append(f"\n## {world}\n")
        lines.append(
            "| policy | incr. purchases | incr. GMV | true effect | oracle share | oracle share (true eff.) "
            "| ours - policy (purchases) | sends/seed | decisions/s | P(r=1 given te>0) | P(r=1 given te<0) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for row in s.iter_rows(named=True):

            def g(k, nd=1, row=row):
                return fmt((row[f"{k}_mean"], row[f"{k}_lo"], row[f"{k}_hi"]), nd)

            lines.append(
                f"| {row['policy']} | {g('inc_purchases')} | {g('inc_gmv', 0)} | {g('true_effect')} | "
                f"{g('oracle_share', 2)} | {g('oracle_share_te', 2)} | {g('ours_minus')} | "
                f"{row['sends_per_seed']:.0f} | {row['decisions_per_s']:.0f} | "
                f"{row['p_reward_if_te_pos']:.3f} | {row['p_reward_if_te_neg']:.3f} |"
            )
        ours = s.filter(pl.col("policy") == "ours").row(0, named=True) if "ours" in s["policy"] else None
        if ours:
            lines.append("")
            for p in PEERS:
                if p in s["policy"]:
                    pr = s.filter(pl.col("policy") == p).row(0, named=True)
                    sep = ours["inc_purchases_lo"] > pr["inc_purchases_hi"]
                    sep_te = ours["true_effect_lo"] > pr["true_effect_hi"]
                    lines.append(
                        f"- ours vs {p}: ours - {p} = "
                        f"{fmt((pr['ours_minus_mean'], pr['ours_minus_lo'], pr['ours_minus_hi']))}"
                        f" purchases (paired), intervals {'do not overlap' if sep else 'OVERLAP'}; "
                        "true effect "
                        f"{fmt((pr['ours_minus_te_mean'], pr['ours_minus_te_lo'], pr['ours_minus_te_hi']))}, "
                        f"intervals {'do not overlap' if sep_te else 'OVERLAP'}"
                    )
            for a in ABLATIONS + ("ours_forget", "ours_no_forget", "ours_true_reward", "ours_forget_true_reward"):
                if a in s["policy"]:
                    pr = s.filter(pl.col("policy") == a).row(0, named=True)
                    lines.append(
                        f"- {a}: ours - {a} = "
                        f"{fmt((pr['ours_minus_mean'], pr['ours_minus_lo'], pr['ours_minus_hi']))}"
                        f" purchases (paired); true effect "
                        f"{fmt((pr['ours_minus_te_mean'], pr['ours_minus_te_lo'], pr['ours_minus_te_hi']))}"
                    )
            lines.append(
                f"- share of the oracle's increment reached by ours: "
                f"{fmt((ours['oracle_share_mean'], ours['oracle_share_lo'], ours['oracle_share_hi']), 2)} "
                "(true effects: "
                f"{fmt((ours['oracle_share_te_mean'], ours['oracle_share_te_lo'], ours['oracle_share_te_hi']), 2)})"
            )
        if ours and "reward_te_corr_within_user" in s.columns and not math.isnan(ours["reward_te_corr_within_user"]):
            lines.append(
                f"- information in ours' reward about which of a user's own sends worked: within-user "
                f"correlation of the reward with the send's true effect {ours['reward_te_corr_within_user']:.3f}"
            )
        if "oracle_population" in s["policy"]:
            pr = s.filter(pl.col("policy") == "oracle_population").row(0, named=True)
            lines.append(
                f"- the best policy that treats all users alike (oracle_population, by the truth) reaches "
                f"{fmt((pr['oracle_share_te_mean'], pr['oracle_share_te_lo'], pr['oracle_share_te_hi']), 2)} "
                "of the oracle (true effects): the rest needs each user's own preferences"
            )
    lines.append("\n## Sends per user by tercile of the user's true fatigue\n")
    lines.append("| world | policy | low | mid | high | Spearman(sends, fatigue) |")
    lines.append("|---|---|---|---|---|---|")
    for row in fq.iter_rows(named=True):
        lines.append(
            f"| {row['world']} | {row['policy']} | {row.get('low', float('nan')):.2f} | "
            f"{row.get('mid', float('nan')):.2f} | {row.get('high', float('nan')):.2f} | "
            f"{row['spearman_sends_fatigue']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def report_from_partial(out: Path, cfg: dict, elapsed: float = float("nan")) -> dict:
    """Rebuild the reports from ``out/partial`` (e.g. of a run cut short)."""
    out = Path(out)
    read = lambda k: pl.concat([pl.read_parquet(p) for p in sorted((out / "partial").glob(f"{k}-*.parquet"))])  # noqa: E731
    return write_reports(out, read("runs"), read("daily"), read("freq"), elapsed, cfg)
