"""The trigger of the `measure` group's sensors: a dbt node's task that lives in the triggerer.

Cosmos's watcher sensors (one per model and per model's tests, `nudgeflow.airflow_dbt`) each
start a task process in a worker to defer, and another to resume when dbt reached their node:
about 200 process starts per run, which on two cores cost far more than the models' work.
`nudgeflow.airflow_dbt` makes them start in the triggerer instead (Airflow's
`start_from_trigger`), with this trigger: Cosmos's `WatcherTrigger`, which reads the node's
status from the producer's XComs, except that

* the run's ids come from the task instance (a task started from the triggerer has no
  `execute` to pass them);
* it trusts a node's status only once the producer has started its current try (a cleared
  producer's XComs of the try before are still there until it starts);
* a success ends the task in the triggerer (`TaskSuccessEvent`): no worker process at all,
  and the node's dbt timing goes to the task's log;
* anything else resumes the sensor in a worker, as Cosmos does (`execute_complete`): a failed
  or skipped node, a failed producer, and a task cleared by hand once the producer has ended
  (try 2 and later), which Cosmos answers by running that model or its tests alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TaskSuccessEvent, TriggerEvent
from cosmos.listeners.dag_run_listener import EventStatus
from cosmos.operators._watcher.state import get_dbt_event_xcom_key, is_producer_task_terminated
from cosmos.operators._watcher.triggerer import WatcherEventReason, WatcherTrigger

# the producer's states once its current try has started (its earlier XComs are then cleared)
STARTED = frozenset({"running", "success", "failed", "skipped", "upstream_failed"})
POKE_INTERVAL_S = 2.0


class NodeTrigger(WatcherTrigger):
    """WatcherTrigger for a sensor started in the triggerer: a success ends its task here."""

    def __init__(
        self,
        model_unique_id: str,
        producer_task_id: str,
        is_test_sensor: bool = False,
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

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{__name__}.{type(self).__name__}", kwargs

    @staticmethod
    def start_kwargs(model_unique_id: str, producer_task_id: str, is_test_sensor: bool) -> dict[str, Any]:
        """The kwargs a sensor's `start_trigger_args` carries (the ids come from the run)."""
        return {
            "model_unique_id": model_unique_id,
            "producer_task_id": producer_task_id,
            "is_test_sensor": is_test_sensor,
            "poke_interval": POKE_INTERVAL_S,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ti = getattr(self, "task_instance", None)
        if ti is not None and not self.run_id:
            self.dag_id, self.run_id, self.map_index = ti.dag_id, ti.run_id, ti.map_index
        producer = await self._get_producer_task_status()
        if ti is not None and ti.try_number > 1 and is_producer_task_terminated(producer):
            # cleared by hand after the build: Cosmos's execute_complete reruns the node alone
            # on this reason (the producer will not report it again)
            self.log.info("try %s after the producer ended: %s runs alone", ti.try_number, self.model_unique_id)
            yield TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})
            return
        while producer not in STARTED:
            await asyncio.sleep(self.poke_interval)
            producer = await self._get_producer_task_status()
        async for event in super().run():
            if event.payload.get("status") == EventStatus.SUCCESS:
                await self._log_node()
                yield TaskSuccessEvent()
            else:
                yield event  # resumes the sensor in a worker (execute_complete)
            return

    async def _log_node(self) -> None:
        """dbt's record of the node, as Cosmos's sensor logs it when it resumes."""
        if self.is_test_sensor:
            self.log.info("the data tests of %s passed", self.model_unique_id)
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
