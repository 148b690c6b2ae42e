"""The dbt project as Airflow tasks, one per model and its data tests (astronomer-cosmos).

`dags/nudgeflow_daily.py` renders `dbt_project/` with Cosmos in its *watcher* mode: one task,
`measure.dbt_producer_watcher`, runs a single `dbt build` (as `nudgeflow run` does in-process)
and reports each node as it finishes; every model is a sensor task that turns green when dbt
has built it and its data tests passed, and red when either failed, so an operator sees the
lineage in the grid and the graph and reads each model's log. A model's tests are part of its
task, as in `dbt build` and Cosmos's `TestBehavior.BUILD` (which Cosmos 1.15 refuses in watcher
mode, so it is done here): a task per model's tests cost as much again in Airflow's fixed
per-task work as the models' own (`docs/benchmarks.md`, "dbt in Airflow"). The sensors start in
the triggerer and, when their model and its tests succeeded, end there (`nudgeflow.dbt_trigger`):
no worker process per model, only the producer's; a failure, a skip or a cleared task resumes the
sensor in a worker, as in Cosmos.

DuckDB allows one writer per file, so only the producer writes: it runs in the one-slot pool
`nudgeflow_warehouse` and holds the home's lock (`nudgeflow.lock`) for as long as it runs.
Clearing a model's task builds that model and its tests alone (`dbt build --select <model>`,
Cosmos's retry path) under the same lock. Before dbt runs, `dbt_environment` gives it what
`nudgeflow.steps.measure` gives the in-process build: the home's settings as vars, the
warehouse, the as-of time and DuckDB's memory limit in the environment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pendulum

POOL = "nudgeflow_warehouse"  # one slot: the warehouse's single writer
LEAD = dt.timedelta(hours=3)  # the run at 21:00 UTC on D-1 plans D (logical date + 3 h)
GROUP_ID = "measure"
PRODUCER = f"{GROUP_ID}.dbt_producer_watcher"  # Cosmos's PRODUCER_WATCHER_TASK_ID in the group
RENDER_AS_OF = dt.datetime(2026, 1, 1)  # any fixed time: what `dbt ls` renders with (_render_profile)
# how the DAG shows dbt: "models" (a task per model and its tests, the default) or
# "one" (a single `measure` task running the build in-process, as `nudgeflow run` does: no
# task per model to watch or clear, and none of their fixed overhead; docs/operations.md)
DBT_TASKS = os.environ.get("NUDGEFLOW_DBT_TASKS", "models").strip().lower() or "models"
if DBT_TASKS not in ("models", "one"):
    raise ValueError(f"NUDGEFLOW_DBT_TASKS must be 'models' or 'one', not {DBT_TASKS!r}")
_held = contextlib.ExitStack()  # the home's lock while dbt runs in this task process
# Cosmos reports usage to a remote endpoint unless told not to: nothing leaves the machine
# (an operator may still set AIRFLOW__COSMOS__ENABLE_TELEMETRY=True); see _no_telemetry
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
# Cosmos's "reliable retry" rewrites a Variable holding every XCom the producer pushed, once per
# push (1,127 writes in a 2,000-user run, about a quarter of the build's time): off, the backup
# is written once, when the producer fails (`_cosmos_defaults`)
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY", "False")


def schedule_date(logical_date: dt.datetime) -> dt.date:
    """The date a run plans: the UTC date of its logical date + 3 h (21:00 UTC on D-1 -> D)."""
    return (pendulum.instance(logical_date).in_timezone("UTC") + LEAD).date()


def dbt_environment(context: Any, operator: Any) -> None:
    """Cosmos interceptor, called just before dbt runs: the home's settings as dbt vars, its
    warehouse, as-of time and memory limit in dbt's environment, and the home's lock held
    until the task ends (`release`). Bad settings fail the task at once, without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from nudgeflow.config import NudgeflowError, as_of, load_settings, resolve_home
    from nudgeflow.lock import home_lock
    from nudgeflow.steps.measure import dbt_env

    day = schedule_date(context["logical_date"])
    try:
        home = resolve_home(None)
        settings = load_settings(home)
    except NudgeflowError as exc:
        raise AirflowFailException(str(exc)) from None
    operator.vars = settings.dbt_vars()
    operator.env = {**(operator.env or {}), **dbt_env(home, as_of(day), settings)}
    _held.enter_context(home_lock(home, f"dbt for {day}", progress=print))


def keep_manifest(project_dir: str, context: Any = None, **_: Any) -> None:
    """Cosmos callback after each dbt command of the group (in a temporary copy of the project):
    its manifest (compiled SQL, lineage) goes to HOME/.dbt/target. After the producer's build,
    if every node of it succeeded, the producer also publishes the dbt docs site from it
    (`steps.measure.publish_dbt_docs`, under the lock the producer holds): dbt is loaded in its
    process (1.9 s at 100k users, against 3.4 s in `check`, which starts dbt again). `check` publishes them
    when the docs published are not of the manifest there (a model's task rebuilt alone)."""
    from nudgeflow.config import as_of as as_of_time
    from nudgeflow.config import load_settings, resolve_home
    from nudgeflow.steps.measure import publish_dbt_docs

    manifest = Path(project_dir) / "target" / "manifest.json"
    if not manifest.exists():
        return  # dbt failed before writing it: `check` does not run, or compiles
    home = Path(resolve_home(None))
    target = home / ".dbt" / "target"
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".manifest.json.{os.getpid()}.tmp"
    shutil.copyfile(manifest, tmp)
    os.replace(tmp, target / "manifest.json")
    task_id = getattr(context and context.get("ti"), "task_id", "") or ""
    if task_id == PRODUCER and _succeeded(Path(project_dir) / "target" / "run_results.json"):
        publish_dbt_docs(home, load_settings(home), as_of_time(schedule_date(context["logical_date"])), compiled=True)


def _succeeded(run_results: Path) -> bool:
    """Whether dbt's run_results.json lists nodes and none failed, errored or was skipped (an
    exposure's status is `no-op`)."""
    import json

    try:
        results = json.loads(run_results.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(results) and not any(r.get("status") in ("error", "fail", "skipped", "runtime error") for r in results)


def release(context: Any, result: Any = None) -> None:
    """post_execute: let go of the home's lock (a failed task lets go when its process ends)."""
    _held.close()


def dbt_task_group(default_args: dict) -> Any:
    """The `measure` task group: Cosmos's producer (`dbt build`, the writer) and one sensor per
    model, which also waits for the model's data tests. dbt unit tests are for CI and stay out,
    as in `nudgeflow run`."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior
    from cosmos.operators._watcher.base import BaseConsumerSensor

    from nudgeflow.config import DBT_PROJECT_DIR

    _cosmos_defaults()
    beside = Path(sys.executable).with_name("dbt")  # this environment's dbt, else $PATH's
    dbt = str(beside) if beside.exists() else shutil.which("dbt") or "dbt"
    group = DbtTaskGroup(
        group_id=GROUP_ID,
        # `dbt ls` renders the project when the DAG is parsed (cached by Cosmos until the
        # project or these change); nothing connects while it lists
        project_config=ProjectConfig(
            DBT_PROJECT_DIR,
            install_dbt_deps=False,  # the project has no packages
            **_render_profile(),
        ),
        profile_config=ProfileConfig(
            profile_name="nudgeflow", target_name="default", profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml"
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER, invocation_mode=InvocationMode.DBT_RUNNER, dbt_executable_path=dbt
        ),
        # no task per model's tests (NONE): each model's sensor waits for them (see below)
        render_config=RenderConfig(
            load_method=LoadMode.DBT_LS, exclude=["resource_type:unit_test"], test_behavior=TestBehavior.NONE
        ),
        operator_args={"interceptors": [dbt_environment], "post_execute": release, "callback": keep_manifest},
        default_args={**default_args, "pool": "default_pool"},
    )
    tested = {model for model, tests in group.dbt_graph.tests_per_model.items() if tests}
    sensors = {t.task_id: t for t in group.iter_tasks() if isinstance(t, BaseConsumerSensor)}
    for task in group.iter_tasks():
        tests = task.task_id in sensors and task.model_unique_id in tested
        task.doc_md = _doc(task.task_id.removeprefix(f"{GROUP_ID}."), tests)
        if task.task_id == PRODUCER:
            task.pool = POOL  # the writer; the sensors only read Airflow's XComs
            # Cosmos keeps the tests out of the producer's build under NONE: they stay in
            task.dbt_cmd_flags = _without_resource_types(task.dbt_cmd_flags)
        elif task.task_id in sensors:
            if tests:
                task.base_cmd = ["build"]  # a cleared model's task builds it and runs its tests
            _start_in_triggerer(task, sorted(sensors.keys() & task.upstream_task_ids), tests)
    return group


def _without_resource_types(flags: list[str]) -> list[str]:
    """dbt flags less each `--resource-type X` (Cosmos's way to keep a build to the models)."""
    kept: list[str] = []
    skip = False
    for flag in flags or []:
        if skip:
            skip = False
        elif flag == "--resource-type":
            skip = True
        else:
            kept.append(flag)
    return kept


def _render_profile() -> dict[str, Any]:
    """The vars and environment `dbt ls` renders the project with: the home's, as the producer
    gets them (`dbt_environment`), so that the parse the rendering leaves in Cosmos's cache is
    one the producer's `dbt build` can go on from. dbt parses everything again when the vars or
    the profile (the warehouse's path, the memory limit) differ: 4 s of a 45 s build at 100k
    users. The as-of time is fixed here (it is not part of dbt's parse; a new one each day
    would make Cosmos render again). Without a home or with bad settings, placeholders: the
    DAG still renders, and its producer fails with the settings' error."""
    from nudgeflow.config import NudgeflowError, load_settings, resolve_home
    from nudgeflow.steps.measure import dbt_env

    try:
        home = resolve_home(None)
        settings = load_settings(home)
    except NudgeflowError:
        return {
            "env_vars": {"NUDGEFLOW_WAREHOUSE": "unused-while-rendering.duckdb", "NUDGEFLOW_AS_OF": str(RENDER_AS_OF)}
        }
    return {"env_vars": dbt_env(home, RENDER_AS_OF, settings), "dbt_vars": settings.dbt_vars()}


def _cosmos_defaults() -> None:
    """This module's defaults for Cosmos, in every process that parses the DAG (the producer's
    worker included):

    * Cosmos reads its settings once, when `cosmos.settings` is first imported. A worker imports
      it at start-up (Cosmos's Airflow plugin), before this module's defaults are set, and then
      reported each task to Cosmos's endpoint: read telemetry and reliable retry again.
    * The producer pushes to XCom, one request each, a node's dbt event on each of dbt's node
      events (start, compiling, executing, finished), and its status and compiled SQL on both
      of dbt's final events of a node (its result line, then NodeFinished, with the same
      status): 1,023 pushes in a 2,000-user run, each in the way of dbt's thread. Only the last
      of each is read, so only NodeFinished (and dbt's error events) push; the result line is
      logged. Cosmos's private names are checked by tests/integration/test_dags.py.
    * Each push is a round trip to the API server (two per node: 5.8-6.7 s between the nodes of a
      45 s build at 100k users, measured) that dbt's thread waited for between one node and the next.
      They go, in order, through one thread beside dbt's (`_Pushes`), and the producer's dbt
      command returns only once all of them are done, so Cosmos's own ending sees them all.
    * A data test that passed pushes no dbt event of its own (157 of them at every run): no task
      reads it (a model's task reads the model's event and its tests' aggregate, which Cosmos
      pushes once the model's last test ended); a failed test's still goes."""
    from airflow.configuration import conf
    from cosmos import settings
    from cosmos.operators import watcher
    from cosmos.operators._watcher import base

    settings.enable_telemetry = conf.getboolean("cosmos", "enable_telemetry", fallback=False)
    settings.enable_watcher_reliable_retry = conf.getboolean("cosmos", "enable_watcher_reliable_retry", fallback=False)
    base._DBT_EVENT_ALLOWLIST = base._DBT_ERROR_EVENTS_TYPES | {"NodeFinished"}
    if not getattr(base._process_dbt_log_event, "skips_passed_tests", False):
        base._process_dbt_log_event = _skip_passed_tests(base._process_dbt_log_event)
    if not getattr(watcher.store_dbt_resource_status_from_log, "pushes_at_node_finished", False):
        watcher.store_dbt_resource_status_from_log = _push_at_node_finished(watcher.store_dbt_resource_status_from_log)
    producer = watcher.DbtProducerWatcherOperator
    for name in ("run_dbt_runner", "run_subprocess"):  # dbt in-process (ours), or as a subprocess
        if not getattr(getattr(producer, name), "drains_pushes", False):
            setattr(producer, name, _draining_pushes(getattr(producer, name)))


RESULT_LINES = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult", "LogNodeResult"})


def _push_at_node_finished(parse: Any) -> Any:
    """Cosmos's per-event parser, which skips (but logs) dbt's result line of a node: the
    NodeFinished after it carries the same final status, and pushes it."""
    import json

    from cosmos.operators._watcher.base import _log_dbt_msg

    def parse_at_node_finished(line: str, extra_kwargs: Any, **kwargs: Any) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = {}
        if isinstance(event, dict) and event.get("info", {}).get("name") in RESULT_LINES:
            _log_dbt_msg(event)
            return
        PUSHES.submit(parse, line, extra_kwargs, **kwargs)

    parse_at_node_finished.pushes_at_node_finished = True
    return parse_at_node_finished


def _skip_passed_tests(process: Any) -> Any:
    """Cosmos's push of a node's dbt event, except for a data test that passed."""
    from cosmos.operators._watcher.state import is_dbt_node_status_success

    def process_unless_passed_test(task_instance: Any, dbt_log: dict[str, Any]) -> None:
        node = (dbt_log.get("data") or {}).get("node_info") or {}
        if node.get("resource_type") == "test" and is_dbt_node_status_success(node.get("node_status")):
            return None
        return process(task_instance, dbt_log)

    process_unless_passed_test.skips_passed_tests = True
    return process_unless_passed_test


class _Pushes:
    """The producer's XCom pushes (Cosmos's parser of each dbt event), run in order in one
    thread beside dbt's, so that dbt goes on to the next node at once. `drain` waits for all
    of them and raises the first error one of them raised, as Cosmos does after dbt ends."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="nudgeflow-xcom-pushes", daemon=True)
            self._thread.start()
        self._queue.put((fn, args, kwargs))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, kwargs = item
            try:
                fn(*args, **kwargs)
            except BaseException as exc:  # raised again by drain, in the task's thread
                self._error = self._error or exc

    def drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error


PUSHES = _Pushes()


def _draining_pushes(run: Any) -> Any:
    """The producer's dbt command (`run_dbt_runner` or `run_subprocess`), returning once every
    push it queued is done (on an error too: the sensors then read the statuses of the nodes
    dbt reached)."""

    def run_then_drain(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = run(self, *args, **kwargs)
        except BaseException:
            with contextlib.suppress(Exception):
                PUSHES.drain()
            raise
        PUSHES.drain()
        return result

    run_then_drain.drains_pushes = True
    return run_then_drain


def _start_in_triggerer(sensor: Any, upstream: list[str], tests: bool) -> None:
    """Let a Cosmos sensor start in the triggerer when the run starts (Airflow's
    start_from_trigger, trigger rule `always`) with `NodeTrigger`, told which sensors it follows
    and whether its model has data tests to wait for:
    the scheduler defers it without a worker, and a success ends it there. dbt's build keeps
    the lineage's order; the edges stay for the graph and for a cleared task's rerun."""
    from airflow.triggers.base import StartTriggerArgs

    from nudgeflow.dbt_trigger import NodeTrigger

    sensor.trigger_rule = "always"
    sensor.start_from_trigger = True
    sensor.start_trigger_args = StartTriggerArgs(
        trigger_cls=f"{NodeTrigger.__module__}.{NodeTrigger.__name__}",
        trigger_kwargs=NodeTrigger.start_kwargs(sensor.model_unique_id, sensor.producer_task_id, upstream, tests),
        next_method="execute_complete",
        timeout=None,
    )


def _doc(name: str, tests: bool) -> str:
    """What a task of the `measure` group is, for the operator's task details (``tests``: a
    model's task that covers its data tests)."""
    docs = "its SQL, columns and lineage: the dbt docs (Browse, dbt docs)"
    if name == PRODUCER.removeprefix(f"{GROUP_ID}."):
        return (
            "**The one `dbt build` of this run** (models and data tests, not the unit tests): the "
            "warehouse's single writer, in the pool `nudgeflow_warehouse` and under the home's lock. "
            "Its log is dbt's; each model's task below turns green or red as dbt reaches it and its tests."
        )
    if name == PRODUCER.removeprefix(f"{GROUP_ID}.") + "_done":
        return "Marks the end of the producer's `dbt build`."
    if name.endswith("_run"):
        model = name.removesuffix("_run")
        if tests:
            return (
                f"dbt model `{model}` and its data tests: waits in the triggerer for the producer's `dbt build` "
                f"to build it and run its tests, and fails if either failed (the producer's log names the test). "
                f"Clearing it builds `{model}` and runs its tests alone under the home's lock; {docs}."
            )
        return (
            f"dbt model `{model}` (no data tests): waits in the triggerer for the producer's `dbt build` to "
            f"reach it and ends as dbt did. Clearing it rebuilds `{model}` alone under the home's lock; {docs}."
        )
    return f"dbt node `{name}`; {docs}."
