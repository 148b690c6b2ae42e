"""The measure group's sensor trigger (nudgeflow.dbt_trigger): a dbt node that succeeded ends
its task in the triggerer; everything else resumes the sensor in a worker, as Cosmos does."""

import asyncio
import itertools
from types import SimpleNamespace

import pytest
from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent

from nudgeflow import dbt_trigger
from nudgeflow.dbt_trigger import NodeTrigger

PRODUCER = "measure.dbt_producer_watcher"
RUNS = itertools.count()


def status_key(model: str, test: bool = False) -> str:
    return f"model__nudgeflow__{model}_{'tests_' if test else ''}status"


class World:
    """The producer's state over successive readings, the XComs it pushed (a dict that a test
    may change between polls), and the Airflow states of other tasks."""

    def __init__(self, producer_states, xcoms=None, task_states=None):
        self.states, self.xcoms = list(producer_states), dict(xcoms or {})
        self.task_states = list(task_states or [{}])
        self.producer_reads, self.xcom_reads = 0, []

    async def state(self):
        self.producer_reads += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    async def xcom(self, key):
        self.xcom_reads.append(key)
        return self.xcoms.get(key)

    async def tasks(self, task_ids):
        states = self.task_states.pop(0) if len(self.task_states) > 1 else self.task_states[0]
        return {t: states.get(t) for t in task_ids}


def trigger(world: World, model: str, *, tests=False, upstream=(), try_number=1, run_id=None) -> NodeTrigger:
    kwargs = NodeTrigger.start_kwargs(f"model.nudgeflow.{model}", PRODUCER, list(upstream), tests)
    t = NodeTrigger(**kwargs)  # as the triggerer builds it from the trigger's row
    t.poke_interval = 0.001
    task_id = f"measure.{model}_run"
    t.task_instance = SimpleNamespace(
        task_id=task_id, dag_id="d", run_id=run_id or f"r{next(RUNS)}", map_index=-1, try_number=try_number
    )
    t._get_producer_task_status = world.state
    t.get_xcom_val = world.xcom
    t._task_states = world.tasks
    return t


async def events(t: NodeTrigger) -> list:
    return [e async for e in t.run()]


def run(world: World, model="int_sends__controls", **kw) -> list:
    t = trigger(world, model, **kw)
    out = asyncio.run(events(t))
    assert (t.dag_id, t.run_id) == ("d", t.task_instance.run_id)  # the ids come from the run
    return out


def test_a_node_that_succeeded_ends_its_task_in_the_triggerer():
    (event,) = run(World(["running"], {status_key("int_sends__controls"): {"status": "success"}}))
    assert isinstance(event, TaskSuccessEvent)


@pytest.mark.parametrize(
    ("states", "xcoms", "reason"),
    [
        (["running"], {status_key("int_sends__controls"): {"status": "error"}}, "node_failed"),
        (["running", "failed"], {}, "producer_failed"),
    ],
)
def test_a_failure_resumes_the_sensor_in_a_worker(states, xcoms, reason):
    (event,) = run(World(states, xcoms))
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "failed" and event.payload["reason"] == reason


def test_a_model_with_data_tests_succeeds_once_they_passed_and_fails_if_one_failed():
    """The model's task covers its tests: built is not enough, Cosmos's aggregate of the tests
    decides; until it is pushed the task waits."""
    built = {status_key("int_sends__controls"): {"status": "success"}}
    world = World(["running"], built)
    t = trigger(world, "int_sends__controls", tests=True)

    async def scenario():
        task = asyncio.create_task(events(t))
        await asyncio.sleep(0.05)
        assert not task.done()  # built, tests still running
        world.xcoms[status_key("int_sends__controls", test=True)] = "pass"
        return await asyncio.wait_for(task, 5)

    (event,) = asyncio.run(scenario())
    assert isinstance(event, TaskSuccessEvent)
    (event,) = run(World(["running"], {**built, status_key("int_sends__controls", test=True): "fail"}), tests=True)
    assert event.payload["status"] == "failed" and event.payload["reason"] == "node_failed"
    # a model without tests does not wait for an aggregate that never comes
    (event,) = run(World(["running"], built))
    assert isinstance(event, TaskSuccessEvent)


def test_a_model_whose_tests_were_not_reported_follows_the_producer():
    built = {status_key("int_sends__controls"): {"status": "success"}}
    (event,) = run(World(["running", "success"], built), tests=True)
    assert isinstance(event, TaskSuccessEvent)  # the build ended well: nothing failed
    (event,) = run(World(["running", "failed"], built), tests=True)
    assert event.payload["reason"] == "producer_failed"  # the tests may never have run


def test_a_build_that_never_ran_skips_the_sensor():
    (event,) = run(World(["scheduled", "upstream_failed"]))
    assert isinstance(event, TaskSkippedEvent)


def test_a_status_is_trusted_only_once_the_producer_started_its_try():
    """A cleared producer's XComs of its last try stay until it starts again: until then the
    trigger waits, however the node's old status reads."""
    world = World(
        ["queued", "queued", "scheduled", "running"], {status_key("int_sends__controls"): {"status": "success"}}
    )
    (event,) = run(world, try_number=2)
    assert isinstance(event, TaskSuccessEvent) and world.producer_reads >= 4


def test_a_node_is_polled_only_once_its_upstream_sensors_saw_theirs():
    """The sensors of a run share one reading of the producer per interval, and a node's status
    is read only when the sensors it follows are done: the frontier of the build."""
    world = World(["running"])
    up, down = "int_sends__to_measure", "int_sends__controls"
    run_id = f"r{next(RUNS)}"
    first = trigger(world, up, run_id=run_id)
    second = trigger(world, down, upstream=[f"measure.{up}_run"], run_id=run_id)

    async def scenario():
        tasks = [asyncio.create_task(events(t)) for t in (first, second)]
        await asyncio.sleep(0.05)
        assert status_key(down) not in world.xcom_reads  # its upstream is still building
        assert status_key(up) in world.xcom_reads
        world.xcoms[status_key(up)] = {"status": "success"}
        await asyncio.sleep(0.05)
        assert status_key(down) in world.xcom_reads
        world.xcoms[status_key(down)] = {"status": "success"}
        return await asyncio.wait_for(asyncio.gather(*tasks), 5)

    done = asyncio.run(scenario())
    assert all(isinstance(e, TaskSuccessEvent) for (e,) in done)


def test_the_sensors_of_a_run_read_the_producer_once_per_interval():
    world = World(["running"])
    sensors = [trigger(world, f"m{i}", run_id="shared-reading") for i in range(20)]
    shared = dbt_trigger._RUNS.setdefault(("d", "shared-reading"), dbt_trigger._Run())
    for t in sensors:
        t.poke_interval = 60.0

    async def everyone_reads():
        return await asyncio.gather(*(t._producer(shared) for t in sensors))

    assert asyncio.run(everyone_reads()) == ["running"] * 20
    assert world.producer_reads == 1


def test_after_the_build_every_node_is_resolved_whatever_its_upstream():
    """Once the producer ended, a sensor whose upstream ran elsewhere (another triggerer, a
    restart) reads its node at once; a node the build never reached succeeds as 'not run'."""
    (event,) = run(World(["success"]), upstream=["measure.elsewhere_run"])
    assert isinstance(event, TaskSuccessEvent)


def test_a_task_cleared_after_the_build_reruns_its_node_alone_once_its_upstream_succeeded():
    """Try 2 once the producer ended: it waits for the sensors it follows, then Cosmos's
    execute_complete builds the model (and runs its tests) alone on this reason; a first try never does."""
    up = ["measure.int_sends__to_measure_run"]
    world = World(["success"], task_states=[{up[0]: "running"}, {up[0]: "running"}, {up[0]: "success"}])
    (event,) = run(world, tests=True, upstream=up, try_number=2)
    assert event.payload == {"status": "failed", "reason": "producer_skipped"}
    assert world.task_states == [{up[0]: "success"}]  # it waited through both 'running' readings
    (event,) = run(World(["success"], task_states=[{up[0]: "failed"}]), upstream=up, try_number=2)
    assert event.payload == {"status": "failed", "reason": "node_failed"}  # no rerun on a failed upstream
    (event,) = run(World(["success"], {status_key("int_sends__controls"): {"status": "success"}}), try_number=1)
    assert isinstance(event, TaskSuccessEvent)


def test_shared_state_is_per_run():
    world = World(["running"], {status_key("a"): {"status": "success"}})
    run(world, model="a", run_id="same")
    assert "measure.a_run" in dbt_trigger._RUNS[("d", "same")].done
    assert all("measure.a_run" not in r.done for k, r in dbt_trigger._RUNS.items() if k != ("d", "same"))


def test_a_producer_that_skipped_its_retry_has_each_node_run_alone_in_lineage_order():
    """Cosmos's producer skips a retry; the nodes it had not reported then run alone, each once
    the sensors it follows succeeded (all at once would build on stale tables)."""
    up = ["measure.int_sends__to_measure_run"]
    world = World(["running", "skipped"], task_states=[{up[0]: "deferred"}, {up[0]: "success"}])
    (event,) = run(world, upstream=up)
    assert event.payload == {"status": "failed", "reason": "producer_skipped"}
    assert world.task_states == [{up[0]: "success"}]


def test_a_runs_shared_state_is_forgotten_once_unused(monkeypatch):
    dbt_trigger._shared("d", "old-run")
    monkeypatch.setattr(dbt_trigger, "FORGET_AFTER_S", -1.0)
    dbt_trigger._shared("d", "new-run")
    assert ("d", "old-run") not in dbt_trigger._RUNS
