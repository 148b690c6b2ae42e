"""The lab's commands of `nudgeflow`: simulate a world, run the demo, evaluate the method.

Registered by :func:`register` through the plugin entry point (nudgeflow/plugins.py).
"""

from __future__ import annotations

from pathlib import Path

import typer

from nudgeflow.cli import HomeOption, _fail, _progress
from nudgeflow.config import parse_date, resolve_home


def register(app: typer.Typer) -> None:
    """Add simulate, demo and evaluate to the `nudgeflow` app."""
    app.command()(simulate)
    app.command()(demo)
    app.add_typer(evaluate_app, name="evaluate")


def simulate(
    home: Path | None = HomeOption,
    users: int = typer.Option(20_000, help="Number of users of a new world."),
    history_days: int = typer.Option(14, "--days", help="Days of history (legacy sender) of a new world."),
    start: str = typer.Option("2026-01-05", help="First day of history (YYYY-MM-DD)."),
    seed: int = typer.Option(0, help="Random seed of the world."),
    scenario: str = typer.Option(
        "default", help="default, strong_seasonality, drift, fatigue, many_labels, lookalike."
    ),
    deliver: bool = typer.Option(False, "--deliver", help="Deliver the schedule of --date and simulate that day."),
    date: str | None = typer.Option(None, "--date", help="With --deliver: the day to simulate (YYYY-MM-DD)."),
) -> None:
    """Create a simulated world under HOME/landing (or, with --deliver, simulate one more day)."""
    from nudgeflow.lab import simulate as sim

    if deliver:
        if not date:
            _fail("--deliver needs --date YYYY-MM-DD")
        root = resolve_home(home)
        summary = sim.deliver(root, parse_date(date), progress=lambda *a: _progress(" ".join(map(str, a))))
    else:
        root = resolve_home(home, must_exist=False)
        root.mkdir(parents=True, exist_ok=True)
        summary = sim.create_world(
            root,
            users=users,
            history_days=history_days,
            start=parse_date(start),
            seed=seed,
            scenario=scenario,
            progress=lambda *a: _progress(" ".join(map(str, a))),
        )
    _progress(f"done: {summary}")


def demo(
    home: Path | None = HomeOption,
    users: int = typer.Option(20_000, help="Users of the simulated world."),
    history_days: int = typer.Option(14, help="Days of history with the legacy sender."),
    loop_days: int = typer.Option(21, help="Days of closed loop, each run through Airflow."),
    seed: int = typer.Option(0, help="Random seed of the world."),
    airflow: bool = typer.Option(True, help="Run each day through `airflow dags test` (else in-process)."),
) -> None:
    """A fresh world, then days of closed loop (schedule -> deliver -> measure), then the report."""
    from nudgeflow.lab.demo import run_demo

    root = resolve_home(home, must_exist=False)
    run_demo(
        root,
        users=users,
        history_days=history_days,
        loop_days=loop_days,
        seed=seed,
        use_airflow=airflow,
        progress=_progress,
    )


evaluate_app = typer.Typer(no_args_is_help=True, help="Validate the method against a simulated world's truth.")


@evaluate_app.command("measurement")
def evaluate_measurement(
    home: Path | None = HomeOption,
    users: int = typer.Option(20_000, help="Users of the world created when HOME has none."),
    history_days: int = typer.Option(14, help="Days of legacy history of a created world."),
    loop_days: int = typer.Option(14, help="Days of random extra sends (every hour) of a created world."),
    scenario: str = typer.Option("default", help="Scenario of a created world (e.g. strong_seasonality)."),
    seed: int = typer.Option(1, help="Seed of a created world."),
    sweeps: bool = typer.Option(True, help="Also sweep neighbours, half-life and window (one dbt run each)."),
    replicates: int = typer.Option(200, help="Bootstrap replicates (users resampled)."),
    dbt_vars: str = typer.Option("", help="Method options as dbt vars (JSON), e.g. '{\"pre_match_candidates\": 50}'."),
) -> None:
    """Estimated vs true send effects for our estimator and four simpler ones (issue 3).

    Creates a simulated world in HOME if it has none; writes HOME/evaluation/measurement.{json,md}."""
    from nudgeflow.lab.evaluate_measurement import build_evaluation_world, evaluate

    root = resolve_home(home, must_exist=False)
    if not (root / "truth" / "state.json").exists():
        if (root / "landing").exists() and any(p.is_file() for p in (root / "landing").rglob("*")):
            _fail(f"{root} has landed data but no simulated truth: evaluate needs a simulated world")
        build_evaluation_world(
            root,
            users=users,
            history_days=history_days,
            loop_days=loop_days,
            scenario=scenario,
            seed=seed,
            progress=_progress,
        )
    import json

    try:
        extra = json.loads(dbt_vars) if dbt_vars.strip() else {}
    except json.JSONDecodeError as exc:
        _fail(f"--dbt-vars is not valid JSON: {exc}")
    result = evaluate(root, sweeps=sweeps, replicates=replicates, dbt_vars=extra, progress=_progress)
    print(Path(result["report"]).read_text())


@evaluate_app.command("policies")
def evaluate_policies(
    home: Path | None = HomeOption,
    out: Path | None = typer.Option(None, "--out", help="Output folder (default HOME/reports/policies)."),
    users: int = typer.Option(1000, help="Users per simulated world."),
    seeds: int = typer.Option(5, help="Seeds (worlds) per scenario; intervals are over seeds."),
    days: int = typer.Option(28, help="Closed-loop days per run."),
    history_days: int = typer.Option(14, help="Days of legacy history of each world."),
    worlds: str = typer.Option(
        "default,drift,fatigue,many_labels",
        help="Comma-separated scenarios (also strong_seasonality, lookalike).",
    ),
    policies: str = typer.Option("", help="Comma-separated policies (default: per world, see docs/policies.md)."),
    jobs: int = typer.Option(2, help="Parallel processes (one (world, seed) each)."),
) -> None:
    """Every policy on the same simulated worlds: increments over no messages, oracle share, regret."""
    from nudgeflow.lab.harness.report import evaluate

    root = resolve_home(home, must_exist=False)
    root.mkdir(parents=True, exist_ok=True)
    target = out or root / "reports" / "policies"
    result = evaluate(
        root / "harness_worlds",
        target,
        worlds=[w.strip() for w in worlds.split(",") if w.strip()],
        seeds=seeds,
        users=users,
        history_days=history_days,
        days=days,
        policies=[p.strip() for p in policies.split(",") if p.strip()] or None,
        jobs=jobs,
        progress=_progress,
    )
    print(result["markdown"])
    _progress(f"wrote {target} ({len(result['plots'])} regret plots) in {result['seconds']:.0f}s")


@evaluate_app.command("gap-bias")
def evaluate_gap_bias(
    home: Path | None = HomeOption,
    world: str = typer.Option("default", help="Scenario of the simulated worlds."),
    seeds: int = typer.Option(3, help="Worlds (seeds) pooled."),
    users: int = typer.Option(1000, help="Users per world."),
    days: int = typer.Option(28, help="Closed-loop days of the random policy."),
    send_prob: float = typer.Option(0.5, help="The random policy's daily send probability per eligible user."),
) -> None:
    """The reward by gap since the user's previous send, against the truth, before and after
    the gap adjustment: P(r=1) given a positive / negative true effect, and the null (the
    reward of sends with no effect)."""
    import polars as pl

    from nudgeflow.lab.harness.gap_bias import gap_bias

    root = resolve_home(home, must_exist=False)
    table = gap_bias(root / "harness_worlds", world=world, seeds=seeds, users=users, days=days, send_prob=send_prob)
    with pl.Config(tbl_cols=20, tbl_width_chars=250, float_precision=3):
        print(table)
