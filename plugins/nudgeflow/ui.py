"""The Airflow UI's nudgeflow pages: the lift report and the dbt docs site (lineage, every
model and column), as a FastAPI app that the Airflow plugin `plugins/nudgeflow_ui.py`
mounts at /nudgeflow and links from the UI's navigation.

Everything is read from HOME/published/ (never the live warehouse): the report is rendered
from the published copy when it changed, the dbt docs are the files the last measure step
published.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse

DOCS_FILES = ("index.html", "manifest.json", "catalog.json")
app = FastAPI(title="nudgeflow", description="The lift report and the dbt docs of the nudgeflow home.")
_cache: dict[str, tuple[float, str]] = {}


def _home() -> Path:
    from nudgeflow.config import resolve_home

    return resolve_home(None, must_exist=False)


def _page(title: str, text: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>{html.escape(title)}</title><p>{html.escape(text)}</p>")


@app.get("/report", response_class=HTMLResponse)
def report() -> HTMLResponse:
    """The HTML lift report of the home, rendered from the published warehouse."""
    from nudgeflow.config import NudgeflowError
    from nudgeflow.html_report import figures, render
    from nudgeflow.warehouse import published_path

    home = _home()
    path = published_path(home)
    if not path.exists():
        return _page("nudgeflow report", f"No published warehouse in {home} yet: the first daily run makes one.")
    stamp = path.stat().st_mtime
    if _cache.get(str(path), (None,))[0] != stamp:
        try:
            _cache[str(path)] = (stamp, render(figures(home)))
        except NudgeflowError as exc:
            return _page("nudgeflow report", str(exc))
    return HTMLResponse(_cache[str(path)][1])


@app.get("/dbt-docs/{name}")
def dbt_docs(name: str):
    """The dbt docs site that the last measure step published (index.html and its JSON)."""
    if name not in DOCS_FILES:
        return _page("dbt docs", f"not found: {name}")
    path = _home() / "published" / "dbt-docs" / name
    if not path.exists():
        return _page("dbt docs", "No dbt docs published yet: the first daily run makes them.")
    return FileResponse(path)
