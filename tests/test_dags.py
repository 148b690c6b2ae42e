"""The DAGs import cleanly and follow the house rules (tags, retries, one warehouse writer)."""

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    monkeypatch_module.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"nudgeflow_daily", "nudgeflow_simulated_world"}


def test_daily_dag_is_the_method_in_order(dagbag):
    dag = dagbag.dags["nudgeflow_daily"]
    chain = ["ingest", "measure", "priors", "sample", "match", "schedule"]
    for upstream, downstream in zip(chain, chain[1:]):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    assert set(dag.task_ids) == set(chain)
    assert dag.max_active_runs == 1 and dag.max_active_tasks == 1


@pytest.mark.parametrize("dag_id", ["nudgeflow_daily", "nudgeflow_simulated_world"])
def test_tags_retries_and_docs(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "nudgeflow" in dag.tags
    assert dag.doc_md
    for t in dag.tasks:
        assert t.retries >= 1
        assert t.doc_md


def test_warehouse_writers_share_a_one_slot_pool(dagbag):
    assert {t.pool for t in dagbag.dags["nudgeflow_daily"].tasks} == {"nudgeflow_warehouse"}
