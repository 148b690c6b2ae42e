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
    assert set(prod.dags) == {"nudgeflow_daily"}
    assert set(dev.dags) == {"nudgeflow_simulated_world"}


def test_daily_dag_is_the_method_in_order(dagbag):
    dag = dagbag[0].dags["nudgeflow_daily"]
    chain = ["ingest", "measure", "priors", "sample", "match", "schedule"]
    for upstream, downstream in zip(chain, chain[1:]):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    assert set(dag.task_ids) == set(chain)
    assert dag.max_active_runs == 1 and dag.max_active_tasks == 1


@pytest.mark.parametrize("dag_id", ["nudgeflow_daily", "nudgeflow_simulated_world"])
def test_tags_retries_and_docs(dagbag, dag_id):
    dag = {**dagbag[0].dags, **dagbag[1].dags}[dag_id]
    assert "nudgeflow" in dag.tags
    assert dag.doc_md
    for t in dag.tasks:
        assert t.retries >= 1
        assert t.doc_md


def test_warehouse_writers_share_a_one_slot_pool(dagbag):
    assert {t.pool for t in dagbag[0].dags["nudgeflow_daily"].tasks} == {"nudgeflow_warehouse"}
