"""The `nudgeflow` command: run a day, rescore, report, explain (plugins add more: see plugins.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from nudgeflow.config import NudgeflowError, parse_date, resolve_home

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Personalised, incrementality-driven marketing messages.",
)
console = Console(stderr=True)


def _usage_errors() -> tuple[type, ...]:
    """click's usage errors, and typer's vendored copies of them (typer >= 0.20 raises these)."""
    import click

    found = [click.exceptions.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException

        found.append(VendoredClickException)
    except ImportError:
        pass
    return tuple(found)


USAGE_ERRORS = _usage_errors()
HomeOption = typer.Option(None, "--home", help="Home folder (default: $NUDGEFLOW_HOME, else ./data).")


def _fail(message: str, code: int = 1) -> None:
    """One line on stderr, no traceback, exit status ``code``; the message is printed
    literally (a path or a label like ``[/x]`` is not markup)."""
    console.print(Text.assemble(("error: ", "bold red"), str(message)), highlight=False, soft_wrap=True)
    raise SystemExit(code)


class _LazyProgress:
    """The command line's progress reporter (steps/progress.TerminalProgress), made on first use."""

    def __init__(self) -> None:
        self._impl = None

    def _get(self):
        if self._impl is None:
            from nudgeflow.steps.progress import TerminalProgress

            self._impl = TerminalProgress(console)
        return self._impl

    def __call__(self, message: str) -> None:
        self._get()(message)

    def count(self, label: str, done: int, total: int) -> None:
        self._get().count(label, done, total)


_progress = _LazyProgress()


@app.command()
def run(
    home: Path | None = HomeOption,
    date: str = typer.Option(..., "--date", help="Schedule date D (YYYY-MM-DD): plans sends in [D, D+1) UTC."),
    run_id: str | None = typer.Option(None, help="Run id written to send_schedule (default manual__D)."),
) -> None:
    """Plan the sends of one day: ingest, measure (dbt), priors, sampling, matching, schedule."""
    from nudgeflow.config import load_settings
    from nudgeflow.steps import run as run_day

    root = resolve_home(home)
    day = parse_date(date)
    load_settings(root)  # fail early on a malformed settings file
    started = time.perf_counter()
    result = run_day(root, day, run_id=run_id, progress=_progress)
    _progress(
        f"{result['rows']} sends scheduled for {day} in {time.perf_counter() - started:.1f}s "
        f"({', '.join(f'{k} {v}s' for k, v in result['timings'].items())})"
    )


@app.command()
def remeasure(
    home: Path | None = HomeOption,
    date: str = typer.Option(
        ..., "--date", help="As-of date D (YYYY-MM-DD): measures what was matured at D 00:00 UTC."
    ),
) -> None:
    """Rebuild the Measure step from scratch (dbt build --full-refresh): every send rescored,
    every event-weights date recomputed. Needed once after an upgrade that changes them."""
    from nudgeflow.config import as_of, load_settings
    from nudgeflow.lock import home_lock
    from nudgeflow.steps.measure import dbt_build
    from nudgeflow.warehouse import publish

    root = resolve_home(home)
    day = parse_date(date)
    settings = load_settings(root)
    started = time.perf_counter()
    with home_lock(root, f"remeasure as of {day}", progress=_progress):
        nodes = dbt_build(root, settings, as_of(day), _progress, full_refresh=True)
        publish(root)
    _progress(f"remeasured as of {day}: {len(nodes)} dbt nodes in {time.perf_counter() - started:.1f}s")


@app.command()
def report(
    home: Path | None = HomeOption,
    days: int = typer.Option(14, help="Measure over the last N days of events."),
    html_out: Path | None = typer.Option(None, "--html", help="Also write the HTML report with plots to this file."),
) -> None:
    """Goal events and GMV per user, agentic vs holdout (plugins add lines); --html writes the
    full report: Table-1 lift with 99% intervals, over time, per channel, weights, effects."""
    from nudgeflow.report import print_report

    root = resolve_home(home)
    print_report(root, days=days)
    if html_out:
        from nudgeflow.html_report import write_html_report

        _progress(f"wrote {write_html_report(root, html_out, days)}")


@app.command()
def explain(
    home: Path | None = HomeOption,
    user: str = typer.Option(..., "--user", help="The user_id."),
    date: str = typer.Option(..., "--date", help="Schedule date D (YYYY-MM-DD) of a run."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
) -> None:
    """Why the run for D chose what it did for one user: priors, posteriors, draws, scores."""
    import json

    from nudgeflow.explain import explain as explain_user
    from nudgeflow.explain import print_explanation

    result = explain_user(resolve_home(home), user, parse_date(date))
    if as_json:
        print(json.dumps(result, default=str, indent=2))
    else:
        print_explanation(result)


def main() -> None:
    from nudgeflow.plugins import plugins

    for plugin in plugins():  # the lab's simulate, demo and evaluate commands
        plugin.register(app)
    try:
        app(standalone_mode=False)
    except NudgeflowError as exc:
        _fail(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except USAGE_ERRORS as exc:  # a missing or unknown option or command, a value of the wrong type
        command = f"nudgeflow {exc.ctx.info_name} --help" if getattr(exc, "ctx", None) else "nudgeflow --help"
        command = command.replace("nudgeflow nudgeflow", "nudgeflow")
        _fail(f"{exc.format_message()} (see `{command}`)", code=2)


if __name__ == "__main__":
    main()
