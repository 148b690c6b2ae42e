"""Plugins: packages that add commands to `nudgeflow` and lines to its report.

The product never imports the lab; the lab registers itself as the entry point
`nudgeflow.plugins: lab = nudgeflow.lab.plugin` (pyproject.toml). A plugin module may define
``register(app)`` (typer commands), ``report_lines(home, figures)`` and
``report_sections(home)``; the missing ones count as empty.
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

GROUP = "nudgeflow.plugins"


@cache
def plugins() -> tuple:
    """The installed plugins, each with register / report_lines / report_sections."""
    from importlib.metadata import entry_points

    found = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        module = ep.load()
        found.append(
            SimpleNamespace(
                name=ep.name,
                register=getattr(module, "register", lambda app: None),
                report_lines=getattr(module, "report_lines", lambda home, figures: []),
                report_sections=getattr(module, "report_sections", lambda home: []),
            )
        )
    return tuple(found)
