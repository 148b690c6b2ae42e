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
    # no metadata DB here: Cosmos renders with `dbt ls` each time instead of caching it in a Variable
    # (read when cosmos.settings is first imported, so set on the module too if it already was)
    monkeypatch_module.setenv("AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS", "False")
    import cosmos.settings

    monkeypatch_module.setattr(cosmos.settings, "enable_cache_dbt_ls", False)
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
    chain = ["ingest", "measure.dbt_producer_watcher", "check", "priors", "sample", "match", "schedule"]
    assert "ingest" in dag.get_task("measure.dbt_producer_watcher").upstream_task_ids
    for upstream, downstream in zip(chain[2:], chain[3:]):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    assert dag.max_active_runs == 1


def test_every_dbt_model_and_its_tests_is_a_task_after_ingest_and_before_check(dagbag):
    """Cosmos renders the dbt project: a task per model, which covers its data tests (the
    producer's build runs them, a cleared task builds its model and runs them); `check` waits
    for all of them, and none waits for anything outside the group but `ingest`."""
    import os
    import subprocess
    import sys

    dag = dagbag[0].dags["nudgeflow_daily"]
    listed = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "ls",
            "--resource-type",
            "model",
            "--output",
            "name",
            "--project-dir",
            str(ROOT / "dbt_project"),
            "--profiles-dir",
            str(ROOT / "dbt_project"),
            "--quiet",
        ],
        env={**os.environ, "NUDGEFLOW_WAREHOUSE": "x.duckdb", "NUDGEFLOW_AS_OF": "2026-01-01 00:00:00"},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    assert len(listed) > 30
    group = {t for t in dag.task_ids if t.startswith("measure.")}
    producer = {"measure.dbt_producer_watcher", "measure.dbt_producer_watcher_done"}
    assert group == {f"measure.{model}_run" for model in listed} | producer
    build = dag.get_task("measure.dbt_producer_watcher")
    assert "--resource-type" not in build.dbt_cmd_flags and build.base_cmd == ["build"]  # tests included
    tested = {t for t in group - producer if "and its data tests" in dag.get_task(t).doc_md}
    assert len(tested) > 20  # most models have data tests
    for task_id in group - producer:
        assert dag.get_task(task_id).base_cmd == (["build"] if task_id in tested else ["run"]), task_id
    upstream_of_check = dag.get_task("check").upstream_task_ids
    assert upstream_of_check and upstream_of_check <= group
    for task_id in group:
        assert dag.get_task(task_id).upstream_task_ids <= group | {"ingest"}, task_id


@pytest.mark.parametrize("dag_id", ["nudgeflow_daily", "nudgeflow_delivery_example", "nudgeflow_simulated_world"])
def test_tags_retries_and_docs(dagbag, dag_id):
    dag = {**dagbag[0].dags, **dagbag[1].dags}[dag_id]
    assert "nudgeflow" in dag.tags
    assert dag.doc_md
    for t in dag.tasks:
        assert t.retries >= 1
        assert t.doc_md


def test_warehouse_writers_share_a_one_slot_pool(dagbag):
    """Every task that writes the warehouse is in the one-slot pool; the model sensors, which
    only wait for the producer's build, are not (they would block it)."""
    dag = dagbag[0].dags["nudgeflow_daily"]
    writers = {"ingest", "measure.dbt_producer_watcher", "check", "priors", "sample", "match", "schedule"}
    assert {dag.get_task(t).pool for t in writers} == {"nudgeflow_warehouse"}
    assert {t.pool for t in dag.tasks if t.task_id not in writers} == {"default_pool"}


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


def test_dbt_runs_with_the_homes_settings_and_holds_its_lock(tmp_path, monkeypatch):
    """Cosmos's interceptor gives the producer's `dbt build` (and a model retried alone) what the
    in-process build gets: the settings as vars, the warehouse, as-of time and memory limit in
    its environment; it holds the home's lock until `release`. Bad settings fail at once."""
    import datetime as dt
    import fcntl
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from nudgeflow.airflow_dbt import dbt_environment, release
    from nudgeflow.config import load_settings
    from nudgeflow.lock import lock_path

    monkeypatch.setenv("NUDGEFLOW_HOME", str(tmp_path))
    (tmp_path / "nudgeflow.yml").write_text("duckdb_memory_limit: 3GB\n")
    operator = SimpleNamespace(env={"KEEP": "1"}, vars=None)
    dbt_environment({"logical_date": dt.datetime(2026, 3, 9, 21, tzinfo=dt.UTC)}, operator)
    try:
        assert operator.vars == load_settings(tmp_path).dbt_vars()
        assert operator.env == {
            "KEEP": "1",
            "NUDGEFLOW_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
            "NUDGEFLOW_AS_OF": "2026-03-10 00:00:00",  # the run at 21:00 on D-1 plans D
            "NUDGEFLOW_DUCKDB_MEMORY_LIMIT": "3GB",
        }
        with open(lock_path(tmp_path), "a+") as other:  # another writer cannot take the lock
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        release({})
    with open(lock_path(tmp_path), "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
        fcntl.flock(other, fcntl.LOCK_UN)
    (tmp_path / "nudgeflow.yml").write_text("neighbours: many\n")
    with pytest.raises(AirflowFailException, match="neighbours"):
        dbt_environment({"logical_date": dt.datetime(2026, 3, 9, 21, tzinfo=dt.UTC)}, operator)


def test_the_project_renders_with_the_profile_and_vars_the_producer_gets(tmp_path, monkeypatch):
    """`dbt ls` (rendering) and the producer's `dbt build` see the same vars and profile, so
    the build goes on from the parse the rendering cached instead of parsing everything again;
    only the as-of time differs (it is not part of dbt's parse). Without a home: placeholders."""
    import datetime as dt
    from types import SimpleNamespace

    from nudgeflow.airflow_dbt import _render_profile, dbt_environment, release

    monkeypatch.setenv("NUDGEFLOW_HOME", str(tmp_path / "absent"))
    assert "dbt_vars" not in _render_profile()
    monkeypatch.setenv("NUDGEFLOW_HOME", str(tmp_path))
    (tmp_path / "nudgeflow.yml").write_text("duckdb_memory_limit: 3GB\nneighbours: 7\n")
    rendered = _render_profile()
    operator = SimpleNamespace(env={}, vars=None)
    dbt_environment({"logical_date": dt.datetime(2026, 3, 9, 21, tzinfo=dt.UTC)}, operator)
    release({})
    assert rendered["dbt_vars"] == operator.vars and rendered["dbt_vars"]["neighbours"] == 7
    differ = {
        k
        for k in operator.env.keys() | rendered["env_vars"].keys()
        if operator.env.get(k) != rendered["env_vars"].get(k)
    }
    assert differ == {"NUDGEFLOW_AS_OF"}


def test_model_sensors_start_and_succeed_in_the_triggerer(dagbag):
    """Every model's sensor starts in the triggerer with NodeTrigger when the run
    starts (no worker process to defer, no wait for the sensors before it), and that survives
    the DAG's serialisation, which is what the scheduler and the triggerer read; the producer
    and the steps run in workers."""
    from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

    from nudgeflow.dbt_trigger import NodeTrigger

    dag = dagbag[0].dags["nudgeflow_daily"]
    sensors = [t for t in dag.tasks if t.task_id.startswith("measure.") and hasattr(t, "model_unique_id")]
    assert len(sensors) > 30 and len(sensors) == len([t for t in dag.task_ids if t.startswith("measure.")]) - 2
    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for sensor in sensors:
        task = served.get_task(sensor.task_id)
        assert task.start_from_trigger, sensor.task_id
        args = task.start_trigger_args
        assert args.trigger_cls == "nudgeflow.dbt_trigger.NodeTrigger" and args.next_method == "execute_complete"
        kwargs = BaseSerialization.deserialize(args.trigger_kwargs)  # stored encoded
        assert kwargs["model_unique_id"] == sensor.model_unique_id
        assert not kwargs["is_test_sensor"] and kwargs["tests"] == (sensor.base_cmd == ["build"])
        # it follows the sensors upstream of it in the lineage, but waits for none of them
        assert kwargs["upstream"] == sorted(sensor.upstream_task_ids - {"ingest"})
        assert task.trigger_rule == "always"
        trigger = NodeTrigger(**kwargs)  # what the triggerer builds from the row
        assert trigger.serialize() == (args.trigger_cls, {**kwargs, "dag_id": "", "run_id": "", "map_index": -1})
    for task_id in ("measure.dbt_producer_watcher", "measure.dbt_producer_watcher_done", "ingest", "check"):
        assert not served.get_task(task_id).start_from_trigger


def test_cosmos_defaults_hold_even_when_cosmos_was_imported_first(tmp_path):
    """A worker imports cosmos (its Airflow plugin) before the DAG file sets its defaults; the
    DAG still turns the reports and the per-push backup off, unless the operator turned them on."""
    import os
    import subprocess
    import sys

    code = (
        "import cosmos.settings, cosmos.telemetry\n"
        "from cosmos.operators._watcher import base\n"
        "from nudgeflow import airflow_dbt\n"
        "airflow_dbt._cosmos_defaults()\n"
        "airflow_dbt._cosmos_defaults()\n"  # twice, as a dag-processor parses the DAG again
        "from cosmos.operators import watcher\n"
        "print(cosmos.telemetry.should_emit(), cosmos.settings.enable_watcher_reliable_retry,\n"
        "      sorted(base._DBT_EVENT_ALLOWLIST & base._DBT_NODE_STATUS_EVENT_TYPES),\n"
        "      watcher.store_dbt_resource_status_from_log.pushes_at_node_finished)\n"
    )
    names = ("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(AIRFLOW_HOME=str(tmp_path), PYTHONPATH=str(ROOT / "plugins"))

    def settings(**extra) -> str:
        run = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.strip().splitlines()[-1]

    # no reports; the producer's backup written once, on failure; one dbt event per node
    assert settings() == "False False ['NodeFinished'] True"
    turned_on = {"AIRFLOW__COSMOS__ENABLE_TELEMETRY": "True", "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "True"}
    assert settings(**turned_on) == "True True ['NodeFinished'] True"


def test_the_producer_pushes_a_nodes_status_once_at_node_finished(tmp_path, monkeypatch):
    """dbt's result line of a node is logged, not pushed; the NodeFinished after it pushes the
    node's status once, as Cosmos would (its parser, on a fake task instance)."""
    import json
    from types import SimpleNamespace

    from cosmos.operators import watcher

    from nudgeflow import airflow_dbt

    airflow_dbt._cosmos_defaults()
    pushed = []
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.append(key), xcom_pull=lambda **_: [])

    def event(name: str, status: str, uid: str = "model.nudgeflow.catalogue") -> str:
        node = {"unique_id": uid, "node_status": status, "resource_type": uid.split(".")[0]}
        return json.dumps({"info": {"name": name, "msg": f"{name} line", "level": "info"}, "data": {"node_info": node}})

    parse = watcher.store_dbt_resource_status_from_log
    for name, status in (("NodeStart", "started"), ("NodeExecuting", "executing"), ("LogModelResult", "success")):
        parse(event(name, status), {"context": {"ti": ti}, "project_dir": str(tmp_path)})
    airflow_dbt.PUSHES.drain()
    assert pushed == []  # the result line is dbt's last word before NodeFinished
    parse(event("NodeFinished", "success"), {"context": {"ti": ti}, "project_dir": str(tmp_path)})
    airflow_dbt.PUSHES.drain()
    assert pushed == ["model__nudgeflow__catalogue_dbt_event", "model__nudgeflow__catalogue_status"]
    # a data test that passed pushes nothing of its own (its model's aggregate is Cosmos's);
    # one that failed pushes its event
    pushed.clear()
    tests, results = {"model.nudgeflow.catalogue": ["test.nudgeflow.a", "test.nudgeflow.b"]}, {}
    for uid, status in (("test.nudgeflow.a", "pass"), ("test.nudgeflow.b", "fail")):
        parse(
            event("NodeFinished", status, uid),
            {"context": {"ti": ti}, "project_dir": str(tmp_path)},
            tests_per_model=tests,
            test_results_per_model=results,
        )
    airflow_dbt.PUSHES.drain()
    assert pushed == ["test__nudgeflow__b_dbt_event", "model__nudgeflow__catalogue_tests_status"]


def test_the_producers_pushes_do_not_hold_dbt_up_and_are_all_done_when_its_command_returns():
    """The pushes run in order in a thread beside dbt's: dbt's callback returns before a slow
    push is done, the producer's dbt command returns only after all of them, and a push's
    error is raised then (as Cosmos raises a callback's error after dbt), on a failed command
    too, after the rest were pushed."""
    import threading
    import time

    from cosmos.operators import watcher

    from nudgeflow import airflow_dbt

    airflow_dbt._cosmos_defaults()
    pushed, release = [], threading.Event()

    def slow_push(key):
        release.wait(10)
        pushed.append(key)

    def fake_dbt(self, keys, fail=None):  # what dbt's thread does: a callback per node
        for key in keys:
            airflow_dbt.PUSHES.submit(fail if key == "bad" else slow_push, key)
        if not release.is_set():
            assert pushed == []  # dbt went on: the pushes wait in their thread
        if self == "failing":
            raise RuntimeError("dbt failed")
        return "result"

    run = airflow_dbt._draining_pushes(fake_dbt)
    started = time.monotonic()
    threading.Timer(0.3, release.set).start()
    assert run("producer", ["a", "b", "c"]) == "result"
    assert pushed == ["a", "b", "c"] and time.monotonic() - started >= 0.3  # waited for the pushes

    def broken(key):
        raise ValueError(f"push of {key} failed")

    pushed.clear()
    with pytest.raises(ValueError, match="push of bad failed"):
        run("producer", ["a", "bad", "c"], broken)
    assert pushed == ["a", "c"]
    pushed.clear()
    with pytest.raises(RuntimeError, match="dbt failed"):
        run("failing", ["a", "bad"], broken)  # dbt's error wins over a push's
    assert pushed == ["a"]
    assert watcher.DbtProducerWatcherOperator.run_dbt_runner.drains_pushes
    assert watcher.DbtProducerWatcherOperator.run_subprocess.drains_pushes


def test_the_builds_manifest_is_kept_and_its_docs_published_by_the_producer(tmp_path, monkeypatch):
    """Cosmos's callback after a dbt command (in a temporary copy of the project) puts its
    manifest where the docs are made from it without compiling again; after the producer's
    build, if every node of it succeeded, the producer publishes them (dbt is loaded there), and
    `check` then finds them published; after a model's task rebuilt alone, `check` makes them."""
    import datetime as dt
    import json
    from types import SimpleNamespace

    from nudgeflow.airflow_dbt import keep_manifest
    from nudgeflow.steps import measure

    published = []
    monkeypatch.setattr(measure, "publish_dbt_docs", lambda home, settings, at, compiled: published.append(at))

    (tmp_path / "home").mkdir()
    monkeypatch.setenv("NUDGEFLOW_HOME", str(tmp_path / "home"))
    copy = tmp_path / "copy"
    keep_manifest(str(copy))  # dbt failed before writing one: nothing to keep
    assert not (tmp_path / "home" / ".dbt").exists()
    (copy / "target").mkdir(parents=True)
    (copy / "target" / "manifest.json").write_text('{"nodes": {}}')
    keep_manifest(str(copy), context={})
    kept = tmp_path / "home" / ".dbt" / "target" / "manifest.json"
    assert kept.read_text() == '{"nodes": {}}' and [p.name for p in kept.parent.iterdir()] == ["manifest.json"]
    assert published == []  # no task: not the producer

    def results(*statuses):
        rows = [{"unique_id": f"n{i}", "status": s} for i, s in enumerate(statuses)]
        (copy / "target" / "run_results.json").write_text(json.dumps({"results": rows}))

    def after(task_id):
        ti = SimpleNamespace(task_id=task_id)
        keep_manifest(str(copy), context={"ti": ti, "logical_date": dt.datetime(2026, 3, 9, 21, tzinfo=dt.UTC)})

    results("success", "pass", "no-op")
    after("measure.some_model_run")  # a model's task rebuilt alone: `check` publishes
    assert published == []
    after("measure.dbt_producer_watcher")
    assert published == [dt.datetime(2026, 3, 10)]  # the as-of time of the date the run plans
    for bad in ("error", "fail", "skipped"):
        results("success", bad)
        after("measure.dbt_producer_watcher")
    assert len(published) == 1


def test_check_publishes_the_docs_unless_they_are_of_the_manifest_there(tmp_path, monkeypatch):
    from nudgeflow.config import load_settings
    from nudgeflow.steps import measure

    ran = []
    monkeypatch.setattr(measure, "run_dbt", lambda args, *a, **k: ran.append(args[:2]))
    home = tmp_path / "home"
    target, out = home / ".dbt" / "target", home / "published" / "dbt-docs"
    for folder in (target, out):
        folder.mkdir(parents=True)
        for name in ("index.html", "manifest.json", "catalog.json"):
            (folder / name).write_text(name)
    settings = load_settings(home)
    measure.publish_dbt_docs(home, settings, None, compiled=None)
    assert ran == []  # the producer published them: nothing to do
    (target / "manifest.json").write_text("a model rebuilt alone")
    measure.publish_dbt_docs(home, settings, None, compiled=None)
    assert ran == [["docs", "generate"]] and (out / "manifest.json").read_text() == "a model rebuilt alone"
    measure.publish_dbt_docs(home, settings, None, compiled=True)  # the in-process build: always
    assert len(ran) == 2


def test_success_task_callbacks_the_dag_processor_drops_are_not_queued(monkeypatch):
    """Airflow 3.3 queues a task callback for every task that ends in the triggerer, and its
    dag-processor parses the DAG file only to drop the success ones. On the Airflow installed
    here (one of `IGNORED_IN`) it still drops them, so not queueing them changes nothing;
    failure and retry callbacks and DAG callbacks are queued as before."""
    from types import SimpleNamespace

    from airflow.callbacks import database_callback_sink
    from airflow.callbacks.callback_requests import DagCallbackRequest, TaskCallbackRequest
    from airflow.callbacks.database_callback_sink import DatabaseCallbackSink
    from airflow.dag_processing.processor import _execute_task_callbacks
    from airflow.utils.state import TaskInstanceState

    from nudgeflow.airflow_callbacks import drop_ignored_success_callbacks

    assert drop_ignored_success_callbacks() and drop_ignored_success_callbacks()  # patched once, in 3.3
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", id="1")

    def request(state):
        return TaskCallbackRequest.model_construct(ti=ti, task_callback_type=state, filepath="f", bundle_name="b")

    warned = []
    log = SimpleNamespace(warning=lambda event, **kw: warned.append(event))
    # the dag-processor's handling of a success request: no DAG looked up (the bag is None), a warning
    assert _execute_task_callbacks(None, request(TaskInstanceState.SUCCESS), log) is None
    assert warned == ["Task callback requested but is not a failure callback"]

    added = []
    session = SimpleNamespace(add=added.append)  # the row the sink would write: its request
    monkeypatch.setattr(database_callback_sink, "DbCallbackRequest", lambda callback, priority_weight: callback)
    sink = DatabaseCallbackSink()
    sink.send(request(TaskInstanceState.SUCCESS), session=session)
    assert added == []
    sink.send(request(TaskInstanceState.FAILED), session=session)
    sink.send(request(TaskInstanceState.UP_FOR_RETRY), session=session)
    dag_callback = DagCallbackRequest.model_construct(dag_id="d", run_id="r", is_failure_callback=False)
    sink.send(dag_callback, session=session)
    assert [getattr(r, "task_callback_type", "dag") for r in added] == ["failed", "up_for_retry", "dag"]
