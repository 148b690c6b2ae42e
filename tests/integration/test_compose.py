"""docker-compose.yml, checked statically (no Docker engine here)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_airflow_on_the_repo_with_the_one_slot_pool():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"} <= set(
        services
    )
    assert "nudgeflow_warehouse 1" in services["airflow-init"]["command"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        svc = services[name]
        mounts = {v.split(":")[1] for v in svc["volumes"]}
        assert {"/opt/nudgeflow/dags", "/opt/nudgeflow/plugins", "/opt/nudgeflow/dbt_project", "/data"} <= mounts
        assert svc["environment"]["NUDGEFLOW_HOME"] == "/data"
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        for source in (v.split(":")[0] for v in svc["volumes"]):
            assert (ROOT / source).exists() or source == "./data"
    assert (ROOT / "Dockerfile").exists()
