"""Keep Airflow from queueing task callbacks that its dag-processor only logs and drops.

When a task ends in the triggerer (`TaskSuccessEvent`, how the `measure` group's model
sensors end, `nudgeflow.dbt_trigger`), Airflow 3.3's triggerer queues a task callback
request with the state SUCCESS for it, whether or not the task has a callback. The
dag-processor then parses the DAG file to serve it, and `_execute_task_callbacks` returns at
once with the warning "Task callback requested but is not a failure callback": Airflow 3.3
runs no task success callback there. In a daily run at 100k users that was 94 requests, the
DAG file parsed again for each batch of them (Cosmos renders 100 tasks each time), 13 CPU
seconds of the dag-processor taken from DuckDB's two cores.

`drop_ignored_success_callbacks` makes Airflow's database callback sink skip exactly those
requests (a task callback whose state is not a failure or a retry), in the process that
loads the nudgeflow plugin (`plugins/nudgeflow_ui.py`: every Airflow component). Nothing else
changes: DAG callbacks and failure and retry callbacks go as before. It applies only to the
Airflow versions in `IGNORED_IN`, where the dag-processor drops them (checked by
tests/integration/test_dags.py on the installed Airflow); on any other version it does nothing.
"""

from __future__ import annotations

from typing import Any

IGNORED_IN = ("3.3.",)  # Airflow versions whose dag-processor drops task success callbacks


def drop_ignored_success_callbacks() -> bool:
    """Patch DatabaseCallbackSink.send (once); True when it is patched in this process."""
    import airflow
    from airflow.callbacks.callback_requests import TaskCallbackRequest
    from airflow.callbacks.database_callback_sink import DatabaseCallbackSink

    if not airflow.__version__.startswith(IGNORED_IN):
        return False
    send = DatabaseCallbackSink.send
    if getattr(send, "drops_ignored_success_callbacks", False):
        return True

    def send_unless_ignored(self: Any, callback: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(callback, TaskCallbackRequest) and not callback.is_failure_callback:
            return  # the dag-processor would parse the DAG file only to log and drop it
        send(self, callback, *args, **kwargs)

    send_unless_ignored.drops_ignored_success_callbacks = True
    DatabaseCallbackSink.send = send_unless_ignored
    return True
