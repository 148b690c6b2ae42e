"""Airflow for real on loopback, for the browser check and the Airflow benchmark.

Each component is its own process, as in docker-compose.yml: `airflow api-server`,
`scheduler` (LocalExecutor), `dag-processor` and `triggerer`, with a SQLite metadata DB under
HOME/.airflow, the given DAG files linked into HOME/.airflow/dags and the repository's
`plugins/`. The simple auth manager lets everyone in as admin, so the REST API needs no
password (a token from /auth/token) and a browser needs no login.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from nudgeflow.config import REPO_ROOT

POOL = "nudgeflow_warehouse"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


class AirflowError(RuntimeError):
    """A component died or a wait timed out; the message ends with the components' logs."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 60):
    """JSON over HTTP; returns (status, decoded body)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(processes: list[subprocess.Popen], grace: float = 20) -> None:
    """SIGTERM each process's own group (the scheduler's executor workers and task processes,
    the API server's workers), then SIGKILL what is left after `grace` seconds."""
    for proc in processes:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
        except ProcessLookupError:
            pass
        proc.wait()


class LocalAirflow:
    """Airflow's four components on loopback for the home HOME, with DAG_FILES deployed.

    `with LocalAirflow(home, [dag]) as airflow:` migrates the DB (`before_components`, if
    given, runs meanwhile: e.g. building the home), starts the components, waits until all
    report healthy, gets an API token and creates the one-slot warehouse pool."""

    def __init__(self, home: Path, dag_files: list[Path], env: dict | None = None):
        self.home = Path(home)
        self.airflow_home = self.home / ".airflow"
        self.logs = self.airflow_home / "components"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token: str | None = None
        self.processes: list[subprocess.Popen] = []
        dags = self.airflow_home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for dag in dag_files:
            link = dags / Path(dag).name
            if not link.exists():
                link.symlink_to(Path(dag).resolve())
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env = {
            **base,
            "NUDGEFLOW_HOME": str(self.home),
            "AIRFLOW_HOME": str(self.airflow_home),  # SQLite metadata DB: airflow.db
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",  # Airflow 3 runs it on SQLite (as `airflow standalone`)
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # no login: everyone is admin
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",  # where task processes report
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),  # one for every component
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),  # default 8793
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),  # default 8794
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **(env or {}),
        }

    def _start(self, *args: str) -> subprocess.Popen:
        airflow_bin = str(Path(sys.executable).with_name("airflow"))
        with (self.logs / f"{args[0]}.log").open("w") as out:
            proc = subprocess.Popen(
                [airflow_bin, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(proc)
        return proc

    def start(self, before_components: Callable[[], None] | None = None) -> LocalAirflow:
        migrate = self._start("db", "migrate")
        if before_components:
            before_components()
        if migrate.wait(timeout=300) != 0:
            raise AirflowError(f"airflow db migrate failed\n{tail(self.logs / 'db.log')}")
        self.processes.remove(migrate)
        for component in COMPONENTS:
            self._start(component)

        def healthy():
            try:
                status, health = http("GET", f"{self.url}/api/v2/monitor/health", timeout=5)
            except OSError:
                return False
            return status == 200 and all(
                health.get(c, {}).get("status") == "healthy"
                for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )

        self.wait("every component to report healthy", healthy, 180)
        status, body = http("GET", f"{self.url}/auth/token")  # all admins: a token without credentials
        if status not in (200, 201):
            raise AirflowError(f"no API token: {status} {body}")
        self.token = body["access_token"]
        status, body = self.api("POST", "/api/v2/pools", {"name": POOL, "slots": 1, "description": "one writer"})
        if status not in (200, 201):
            raise AirflowError(f"creating the pool {POOL}: {status} {body}")
        return self

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) each component's process tree has used so far, its
        ended children (task processes, for the scheduler) included: read from /proc."""
        ticks = os.sysconf("SC_CLK_TCK")
        stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # ended meanwhile
                stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / ticks)
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in stats.items():
            children.setdefault(parent, []).append(pid)

        def tree(pid: int) -> float:
            return stats.get(pid, (0, 0.0))[1] + sum(tree(c) for c in children.get(pid, []))

        return {name: round(tree(proc.pid), 1) for name, proc in zip(COMPONENTS, self.processes)}

    def __enter__(self) -> LocalAirflow:
        return self

    def __exit__(self, *exc) -> None:
        stop(self.processes)

    def api(self, method: str, path: str, body: dict | None = None):
        return http(method, self.url + path, body, self.token)

    def wait(self, what: str, check: Callable, timeout: float, poll: float = 1.0):
        """Poll `check()` until it returns something truthy; raise early if a component died."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            dead = [p.args[1] for p in self.processes if p.poll() is not None]
            if dead:
                raise AirflowError(f"airflow {', '.join(dead)} exited while waiting for {what}\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise AirflowError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.diagnostics()}")
            time.sleep(poll)

    def wait_parsed(self, dag_id: str, timeout: float = 180) -> list[str]:
        """Wait for the DAG to be parsed without import errors; its task ids."""
        self.wait("the DAG to be parsed", lambda: self.api("GET", f"/api/v2/dags/{dag_id}")[0] == 200, timeout)
        status, errors = self.api("GET", "/api/v2/importErrors")
        if status != 200 or errors["total_entries"]:
            raise AirflowError(f"import errors: {errors}")
        status, body = self.api("GET", f"/api/v2/dags/{dag_id}/tasks")
        if status != 200:
            raise AirflowError(f"listing the tasks of {dag_id}: {status} {body}")
        return [t["task_id"] for t in body["tasks"]]

    def run(self, dag_id: str, run_id: str, logical_date: str, timeout: float) -> str:
        """Trigger one run with this logical date, unpause the DAG until it ends; its state."""
        status, body = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": logical_date}
        )
        if status not in (200, 201):
            raise AirflowError(f"triggering {run_id}: {status} {body}")
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

        def finished():
            state = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")[1]["state"]
            return state if state in ("success", "failed") else None

        try:
            return self.wait(f"DagRun {run_id} to finish", finished, timeout, poll=0.5)
        finally:
            self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})  # no further runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of the run, page by page (the API returns at most 100 at a time,
        whatever `limit` asks: a DAG with the dbt models has more)."""
        found: list[dict] = []
        while True:
            path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(found)}"
            status, body = self.api("GET", path)
            if status != 200:
                raise AirflowError(f"task instances of {run_id}: {status} {body}")
            found += body["task_instances"]
            if not body["task_instances"] or len(found) >= body["total_entries"]:
                return found

    def diagnostics(self) -> str:
        parts = [f"--- {log.name}\n{tail(log)}" for log in sorted(self.logs.glob("*.log"))]
        for log in sorted((self.airflow_home / "logs").glob("dag_id=*/run_id=*/task_id=*/attempt=*.log"))[-20:]:
            parts.append(f"--- {log.relative_to(self.home)}\n{tail(log, 15)}")
        return "\n".join(parts)
