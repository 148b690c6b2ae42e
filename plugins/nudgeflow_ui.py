"""Airflow plugin: the nudgeflow pages in the Airflow UI (the lift report, the dbt docs).

Airflow loads this file from its plugins folder (`plugins/`); the pages themselves are the
FastAPI app of `nudgeflow/ui.py`, mounted at /nudgeflow, with two links in the navigation.
Every Airflow component loads it, so it also keeps Airflow from queueing the task callbacks
its dag-processor only drops (`nudgeflow/airflow_callbacks.py`).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from nudgeflow.airflow_callbacks import drop_ignored_success_callbacks
from nudgeflow.ui import app

drop_ignored_success_callbacks()


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
