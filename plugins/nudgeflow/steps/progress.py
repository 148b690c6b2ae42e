"""How a step reports progress: a callable taking one line of text, or None for silence."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None] | None


def say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)
