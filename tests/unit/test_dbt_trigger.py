"""The measure group's sensor trigger (nudgeflow.dbt_trigger): a dbt node that succeeded ends
its task in the triggerer; everything else resumes the sensor in a worker, as Cosmos does."""

import asyncio
from types import SimpleNamespace

import pytest
from airflow.triggers.base import TaskSuccessEvent

from nudgeflow.dbt_trigger import NodeTrigger

MODEL = "model.nudgeflow.int_sends__controls"


class World:
    """The producer's state over successive polls, and its XComs."""

    def __init__(self, producer_states, xcoms):
        self.states, self.xcoms, self.polls = list(producer_states), xcoms, 0

    async def state(self):
        self.polls += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    async def xcom(self, key):
        return self.xcoms.get(key)


def run(world: World, try_number: int = 1, is_test_sensor: bool = False) -> list:
    trigger = NodeTrigger(**NodeTrigger.start_kwargs(MODEL, "measure.dbt_producer_watcher", is_test_sensor))
    trigger.poke_interval = 0
    trigger.task_instance = SimpleNamespace(task_id="t", dag_id="d", run_id="r", map_index=-1, try_number=try_number)
    trigger._get_producer_task_status = world.state
    trigger.get_xcom_val = world.xcom

    async def collect():
        return [event async for event in trigger.run()]

    events = asyncio.run(collect())
    assert (trigger.dag_id, trigger.run_id) == ("d", "r")  # from the task instance
    return events


STATUS = "model__nudgeflow__int_sends__controls_status"


def test_a_node_that_succeeded_ends_its_task_in_the_triggerer():
    events = run(World(["running"], {STATUS: {"status": "success", "outlet_uris": []}}))
    assert len(events) == 1 and isinstance(events[0], TaskSuccessEvent)


@pytest.mark.parametrize(
    ("states", "xcoms", "reason"),
    [
        (["running"], {STATUS: {"status": "error", "outlet_uris": []}}, "node_failed"),
        (["failed"], {}, "producer_failed"),
    ],
)
def test_a_failure_resumes_the_sensor_in_a_worker(states, xcoms, reason):
    (event,) = run(World(states, xcoms))
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "failed" and event.payload["reason"] == reason


def test_a_status_is_trusted_only_once_the_producer_started_its_try():
    """A cleared producer's XComs of its last try stay until it starts again: until then the
    trigger waits, however the node's old status reads."""
    world = World(["queued", "queued", "scheduled", "running"], {STATUS: {"status": "success"}})
    (event,) = run(world, try_number=2)
    assert isinstance(event, TaskSuccessEvent) and world.polls >= 4


def test_a_task_cleared_after_the_build_reruns_its_node_alone():
    """Try 2 once the producer ended: Cosmos's execute_complete runs the model (or its tests)
    alone on this reason; a first try never does."""
    (event,) = run(World(["success"], {STATUS: {"status": "success"}}), try_number=2, is_test_sensor=True)
    assert event.payload == {"status": "failed", "reason": "producer_skipped"}
    (event,) = run(World(["success"], {STATUS: {"status": "success"}}), try_number=1)
    assert isinstance(event, TaskSuccessEvent)
