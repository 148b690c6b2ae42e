"""How a step reports progress: a callable taking one line of text, or None for silence.

A reporter may also count (``count(label, done, total)``, e.g. dbt's nodes): the command line
shows a live progress bar on a terminal (:class:`TerminalProgress`), and a reporter without
``count`` gets a plain line now and then instead (:func:`count`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

Progress = Callable[[str], None] | None


def say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)


def count(progress: Progress, label: str, done: int, total: int, *, last: dict) -> None:
    """Report ``done`` of ``total`` for ``label``: to the reporter's ``count`` if it has one,
    else as a line at most every 10 s and at the end (``last`` keeps the time of the last line)."""
    if not progress:
        return
    if hasattr(progress, "count"):
        progress.count(label, done, total)
        return
    now = time.perf_counter()
    if now - last.get("shown", 0.0) >= 10 or done == total:
        last["shown"] = now
        progress(f"{label}: {done}/{total or '?'} nodes")


class TerminalProgress:
    """Lines with the time of day, and on a terminal one live bar per counted label (rich);
    plain lines when the console is not a terminal (a log file, Airflow, a pipe)."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.live = console.is_terminal
        self._bars: dict[str, int] = {}
        self._last: dict = {}
        self._progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            if self.live
            else None
        )

    def __call__(self, message: str) -> None:
        import datetime as dt

        from rich.text import Text

        self.console.print(
            Text.assemble((f"{dt.datetime.now():%H:%M:%S} ", "dim"), str(message)), highlight=False, soft_wrap=True
        )

    def count(self, label: str, done: int, total: int) -> None:
        if not self.live:
            count(self.__call__, label, done, total, last=self._last)
            return
        if label not in self._bars:
            if not self._bars:
                self._progress.start()
            self._bars[label] = self._progress.add_task(label, total=total or None)
        self._progress.update(self._bars[label], completed=done, total=total or None)
        if total and done >= total:
            self._progress.remove_task(self._bars.pop(label))
            if not self._bars:
                self._progress.stop()
