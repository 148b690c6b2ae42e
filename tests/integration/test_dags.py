"""The DAGs import cleanly and follow the house rules (tags, retries, one warehouse writer)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"  # production: what a server deploys
DEV_DAGS = ROOT / "dev" / "dags"  # the simulated world's DAG, for the demo only


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    monkeypatch_module.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    prod = DagBag(dag_folder=str(DAGS))
    dev = DagBag(dag_folder=str(DEV_DAGS))
    return prod, dev


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_no_import_errors(dagbag):
    prod, dev = dagbag
    assert prod.import_errors == {} and dev.import_errors == {}
    # the production folder never ships the simulated world (it writes landing/)
    assert set(prod.dags) == {"nudgeflow_daily", "nudgeflow_delivery_example"}
    assert set(dev.dags) == {"nudgeflow_simulated_world"}


def test_daily_dag_is_the_method_in_order(dagbag):
    dag = dagbag[0].dags["nudgeflow_daily"]
    chain = ["ingest", "measure", "priors", "sample", "match", "schedule"]
    for upstream, downstream in zip(chain, chain[1:]):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    assert set(dag.task_ids) == set(chain)
    assert dag.max_active_runs == 1 and dag.max_active_tasks == 1


@pytest.mark.parametrize("dag_id", ["nudgeflow_daily", "nudgeflow_delivery_example", "nudgeflow_simulated_world"])
def test_tags_retries_and_docs(dagbag, dag_id):
    dag = {**dagbag[0].dags, **dagbag[1].dags}[dag_id]
    assert "nudgeflow" in dag.tags
    assert dag.doc_md
    for t in dag.tasks:
        assert t.retries >= 1
        assert t.doc_md


def test_warehouse_writers_share_a_one_slot_pool(dagbag):
    assert {t.pool for t in dagbag[0].dags["nudgeflow_daily"].tasks} == {"nudgeflow_warehouse"}


def test_the_run_for_d_starts_the_evening_before(dagbag):
    import datetime as dt
    import importlib.util

    spec = importlib.util.spec_from_file_location("daily", DAGS / "nudgeflow_daily.py")
    daily = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(daily)
    utc = dt.UTC
    assert daily.schedule_date(dt.datetime(2026, 3, 9, 21, 0, tzinfo=utc)) == dt.date(2026, 3, 10)
    assert daily.schedule_date(dt.datetime(2026, 3, 10, 0, 0, tzinfo=utc)) == dt.date(2026, 3, 10)  # dag.test(D)
    dag = dagbag[0].dags["nudgeflow_daily"]
    assert dag.timetable.expression == "0 21 * * *" and str(dag.timetable.timezone) == "UTC"


def test_an_error_a_retry_cannot_fix_fails_the_task_at_once(tmp_path, monkeypatch):
    import datetime as dt
    import importlib.util

    from airflow.sdk.exceptions import AirflowFailException

    spec = importlib.util.spec_from_file_location("daily", DAGS / "nudgeflow_daily.py")
    daily = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(daily)
    (tmp_path / "nudgeflow.yml").write_text("neighbours: many\n")
    monkeypatch.setenv("NUDGEFLOW_HOME", str(tmp_path))
    with pytest.raises(AirflowFailException, match="neighbours"):
        daily._step("priors", dt.datetime(2026, 3, 10, tzinfo=dt.UTC))


def test_the_schedule_task_updates_the_asset_the_delivery_example_waits_for(dagbag):
    prod = dagbag[0]
    outlets = prod.dags["nudgeflow_daily"].get_task("schedule").outlets
    assert [a.name for a in outlets] == ["nudgeflow_send_schedule"]
    delivery = prod.dags["nudgeflow_delivery_example"]
    assert "nudgeflow_send_schedule" in str(delivery.timetable.asset_condition)
