"""The trigger of the `measure` group's sensors: a dbt node's task that lives in the triggerer.

Cosmos's watcher sensors (one per model and its data tests, `nudgeflow.airflow_dbt`) each
start a task process in a worker to defer and another to resume, and each waits for its
upstream sensors: about 200 process starts per run, and a round trip through the scheduler
and the triggerer (about 3 s) per level of the lineage after dbt reached it. On two cores
both cost far more than the models' work. So `nudgeflow.airflow_dbt` starts every sensor in
the triggerer when the run starts (Airflow's `start_from_trigger`, trigger rule `always`:
dbt's own build keeps the lineage's order, the graph still shows it), with this trigger,
Cosmos's `WatcherTrigger` (which reads the node's status from the producer's XComs), except:

* The run's ids come from the task instance: a task started in the triggerer has no
  `execute` to pass them.
* The sensors of one run share what they poll, in the triggerer's process (`_Run`): one
  reading of the producer's state per interval for all of them, and a node's status is read
  only once its upstream sensors have seen theirs (the frontier of the build), so a poll
  costs a few requests, not one per sensor.
* A node's status counts only once the producer has started its current try: a cleared
  producer's XComs of the try before stay until it starts.
* A model with data tests succeeds once dbt built it and all its tests passed (Cosmos's
  aggregate of them, which the producer pushes when the model's last test ended); a failed
  test fails the model's task, as a failed build of it does.
* A success ends the task in the triggerer (`TaskSuccessEvent`): no worker process at all;
  dbt's timing of the node goes to the task's log.
* Anything else resumes the sensor in a worker, as in Cosmos (`execute_complete`): a failed
  node (dbt skips what is downstream, and Cosmos reports those as failed too), a failed
  producer. A producer that never ran (its upstream failed) skips the sensor. A producer that
  skipped its retry (Cosmos's producer does not retry) has the nodes it did not report run
  alone, each once the sensors before it succeeded.
* A task cleared by hand once the producer has ended (try 2 and later) waits for its upstream
  sensors to succeed, then has Cosmos build that model, and run its tests, alone (under the
  home's lock); if one of them failed, it fails without running.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent, TriggerEvent
from asgiref.sync import sync_to_async
from cosmos.listeners.dag_run_listener import EventStatus
from cosmos.operators._watcher.aggregation import get_tests_status_xcom_key
from cosmos.operators._watcher.state import (
    DbtTestStatus,
    ProducerTaskState,
    get_dbt_event_xcom_key,
    is_dbt_node_status_failed,
    is_dbt_node_status_skipped,
    is_dbt_node_status_success,
    is_dbt_node_status_terminal,
    is_producer_task_terminated,
)
from cosmos.operators._watcher.triggerer import WatcherEventReason, WatcherTrigger

# the producer's states once its current try has started (its earlier XComs are then cleared)
STARTED = frozenset({"running", "success", "failed", "skipped"})
NEVER_RAN = frozenset({"upstream_failed", "removed"})
UPSTREAM_LOST = frozenset({"failed", "upstream_failed", "skipped", "removed"})
# how often the sensors of a run read the producer's state (one reading shared by all of them),
# in the environment of the dag-processor, which writes it into each sensor's trigger
POKE_INTERVAL_S = float(os.environ.get("NUDGEFLOW_DBT_POKE_SECONDS", "1") or 1)


@dataclass
class _Run:
    """What the sensors of one DagRun share in the triggerer: the producer's state, read at
    most once per interval, and the sensors that have seen their node's final status."""

    producer: str | None = None
    read_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: set[str] = field(default_factory=set)
    used_at: float = field(default_factory=time.monotonic)


_RUNS: dict[tuple[str, str], _Run] = {}
FORGET_AFTER_S = 2 * 86400  # a run's shared state, once no sensor of it has looked for two days


def _shared(dag_id: str, run_id: str) -> _Run:
    now = time.monotonic()
    for key in [k for k, r in _RUNS.items() if now - r.used_at > FORGET_AFTER_S]:
        del _RUNS[key]
    run = _RUNS.setdefault((dag_id, run_id), _Run())
    run.used_at = now
    return run


class NodeTrigger(WatcherTrigger):
    """WatcherTrigger for a sensor started in the triggerer: a success ends its task here."""

    def __init__(
        self,
        model_unique_id: str,
        producer_task_id: str,
        is_test_sensor: bool = False,
        upstream: list[str] | None = None,
        tests: bool = False,
        poke_interval: float = POKE_INTERVAL_S,
        dag_id: str = "",
        run_id: str = "",
        map_index: int | None = -1,
        **_: Any,
    ) -> None:
        super().__init__(
            model_unique_id=model_unique_id,
            producer_task_id=producer_task_id,
            dag_id=dag_id,
            run_id=run_id,
            map_index=map_index,
            poke_interval=poke_interval,
            is_test_sensor=is_test_sensor,
        )
        self.upstream = list(upstream or [])
        self.tests = tests

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{__name__}.{type(self).__name__}", {**kwargs, "upstream": self.upstream, "tests": self.tests}

    @staticmethod
    def start_kwargs(model_unique_id: str, producer_task_id: str, upstream: list[str], tests: bool) -> dict[str, Any]:
        """The kwargs a model sensor's `start_trigger_args` carries (the run's ids come from the
        run): ``upstream`` are the task ids of the sensors it follows in the lineage, ``tests``
        whether the model's data tests are part of its task (there are no test sensors)."""
        return {
            "model_unique_id": model_unique_id,
            "producer_task_id": producer_task_id,
            "is_test_sensor": False,
            "upstream": sorted(upstream),
            "tests": tests,
            "poke_interval": POKE_INTERVAL_S,
        }

    async def _producer(self, shared: _Run) -> str | None:
        async with shared.lock:
            if time.monotonic() - shared.read_at >= self.poke_interval:
                shared.producer = await self._get_producer_task_status()
                shared.read_at = time.monotonic()
            return shared.producer

    async def _task_states(self, task_ids: list[str]) -> dict[str, str | None]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=self.dag_id, task_ids=task_ids, run_ids=[self.run_id]
        )
        return {t: (str(s) if s is not None else None) for t, s in states.get(self.run_id, {}).items()}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ti = getattr(self, "task_instance", None)
        if ti is not None and not self.run_id:
            self.dag_id, self.run_id, self.map_index = ti.dag_id, ti.run_id, ti.map_index
        me = ti.task_id if ti is not None else self.model_unique_id
        shared = _shared(self.dag_id, self.run_id)
        producer = await self._producer(shared)
        tried = ti.try_number if ti is not None else 1
        if tried > 1 and is_producer_task_terminated(producer):
            yield await self._rerun_alone(tried)
            return
        event = await self._watch(shared, me, producer)
        if isinstance(event.payload, dict) and event.payload.get("reason") == WatcherEventReason.PRODUCER_SKIPPED:
            # the producer's retry skipped itself: what it did not report runs alone, in order
            event = await self._rerun_alone(tried)
        shared.done.add(me)
        yield event

    async def _watch(self, shared: _Run, me: str, producer: str | None) -> TriggerEvent:
        """The first try: the event for the node's final status as the producer reports it."""
        while producer not in STARTED:
            if producer in NEVER_RAN:
                self.log.info("the build did not run (the producer is %s): %s has nothing to report", producer, me)
                return TaskSkippedEvent()
            await asyncio.sleep(self.poke_interval)
            producer = await self._producer(shared)
        while True:
            if all(u in shared.done for u in self.upstream) or is_producer_task_terminated(producer):
                status, compiled_sql = await self._parse_dbt_node_status_and_compiled_sql()
                if not is_dbt_node_status_terminal(status):
                    status = None  # not finished (or not reported) yet
                elif self.tests and is_dbt_node_status_success(status):
                    status = await self._with_tests(status, producer)
                event = await self._final(status, compiled_sql, producer)
                if event is not None:
                    return event
            await asyncio.sleep(self.poke_interval)
            producer = await self._producer(shared)

    async def _with_tests(self, status: str, producer: str | None) -> str | None:
        """The built model's status with its data tests': `fail` if one failed, None until all
        of them ended (the producer's aggregate), the model's once they passed or the producer
        succeeded without reporting them (a producer that failed first decides in `_final`)."""
        verdict = await self.get_xcom_val(get_tests_status_xcom_key(self.model_unique_id))
        if verdict == DbtTestStatus.FAIL:
            self.log.error(
                "%s was built, but its data tests did not all pass: the producer's log names the failed test",
                self.model_unique_id,
            )
            return DbtTestStatus.FAIL.value
        if verdict == DbtTestStatus.PASS:
            self.log.info("the data tests of %s passed", self.model_unique_id)
            return status
        return status if producer == ProducerTaskState.SUCCESS else None

    async def _final(self, status: str | None, compiled_sql: str | None, producer: str | None) -> TriggerEvent | None:
        """The event for the node's final status, by WatcherTrigger.run's rules (a success ends
        the task here), or None while there is none yet."""
        if is_dbt_node_status_success(status) or (status is None and producer == ProducerTaskState.SUCCESS):
            await self._log_node(ran=status is not None)
            return TaskSuccessEvent()
        if is_dbt_node_status_skipped(status):
            return TriggerEvent({"status": EventStatus.SKIPPED})
        if is_dbt_node_status_failed(status):
            failed = {"status": EventStatus.FAILED, "reason": WatcherEventReason.NODE_FAILED}
            return TriggerEvent({**failed, **({"compiled_sql": compiled_sql} if compiled_sql else {})})
        if producer == ProducerTaskState.FAILED:
            return TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_FAILED})
        if producer == ProducerTaskState.SKIPPED:
            return TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})
        return None

    async def _rerun_alone(self, try_number: int) -> TriggerEvent:
        """A try after the producer ended: once the upstream sensors succeeded, Cosmos's
        execute_complete runs the node alone on this reason (the producer reports it no more)."""
        while self.upstream:
            states = await self._task_states(self.upstream)
            lost = sorted(t for t, s in states.items() if s in UPSTREAM_LOST)
            if lost:
                self.log.error("try %s: %s did not succeed, so %s is not rerun", try_number, lost, self.model_unique_id)
                return TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.NODE_FAILED})
            if all(states.get(t) == "success" for t in self.upstream):
                break
            await asyncio.sleep(self.poke_interval)
        self.log.info("try %s after the producer ended: %s runs alone", try_number, self.model_unique_id)
        return TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})

    async def _log_node(self, ran: bool) -> None:
        """dbt's record of the node, as Cosmos's sensor logs it when it resumes."""
        if not ran:
            self.log.info("the build ended without running %s (ephemeral or empty)", self.model_unique_id)
            return
        event = await self.get_xcom_val(get_dbt_event_xcom_key(self.model_unique_id)) or {}
        self.log.info(
            "%s: %s, %s to %s%s",
            self.model_unique_id,
            event.get("status", "success"),
            event.get("start_time"),
            event.get("finish_time"),
            f" ({event['msg']})" if event.get("msg") else "",
        )
