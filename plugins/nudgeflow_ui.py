"""Airflow plugin: the nudgeflow pages in the Airflow UI (the lift report, the dbt docs).

Airflow loads this file from its plugins folder (`plugins/`); the pages themselves are the
FastAPI app of `nudgeflow/ui.py`, mounted at /nudgeflow, with two links in the navigation.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from nudgeflow.ui import app


class NudgeflowPlugin(AirflowPlugin):
    name = "nudgeflow"
    fastapi_apps = [{"app": app, "url_prefix": "/nudgeflow", "name": "nudgeflow"}]
    external_views = [
        {"name": "Lift report", "href": "nudgeflow/report", "destination": "nav", "url_route": "nudgeflow-report"},
        {
            "name": "dbt docs",
            "href": "nudgeflow/dbt-docs/index.html",
            "destination": "nav",
            "url_route": "nudgeflow-dbt-docs",
        },
    ]
