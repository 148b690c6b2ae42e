"""Checked in a real browser: Airflow 3 runs the daily DAG, and headless Chromium shows it.

A tiny simulated home, then Airflow for real on loopback, each component its own process as
in docker-compose.yml: `airflow api-server`, `scheduler` (LocalExecutor), `dag-processor` and
`triggerer`, with a SQLite metadata DB under HOME/.airflow and the repository's `plugins/`.
The simple auth manager lets everyone in as admin, so the browser needs no login. One run of
`nudgeflow_daily`, triggered through the REST API, must succeed; then Chromium, driven over
chromedriver's WebDriver HTTP interface (the standard library only, no Selenium), loads the
DAG's grid and graph views and the plugin's lift report, and the test reads the rendered DOM:
every task of the DAG is shown, and shown as succeeded, and the report's SVG plots render.

The home is dated from the clock: its history ends where the DAG's last scheduled tick
(21:00 UTC) plans, and the run is triggered with that tick as its logical date. Unpausing a
DAG with `catchup=False` makes the scheduler want a run for exactly that tick, so it finds
ours and creates no other run.

`NUDGEFLOW_SCREENSHOTS=1` also writes docs/screenshots/airflow_grid.png, airflow_graph.png
and report_in_airflow.png. Skipped when Chromium or chromedriver is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "nudgeflow_daily"
RUN_ID = "browser_check"
CHAIN = ("ingest", "measure", "priors", "sample", "match", "schedule")  # at least these, in this order
POOL = "nudgeflow_warehouse"
SCREENSHOTS = ROOT / "docs" / "screenshots"
RUN_TIMEOUT = 600  # s, for the DAG run; every other wait is shorter
SKIP_MESSAGE = "chromium not installed: apt-get install chromium chromium-driver"
WEBDRIVER_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key


def _chromium() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(SKIP_MESSAGE)
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 60):
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


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(processes: list[subprocess.Popen], grace: float = 20) -> None:
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


def _last_tick(now: dt.datetime) -> dt.datetime:
    """The DAG's most recent scheduled tick (cron `0 21 * * *` UTC) at or before `now`."""
    tick = now.replace(hour=21, minute=0, second=0, microsecond=0)
    return tick if tick <= now else tick - dt.timedelta(days=1)


class Airflow:
    """The running Airflow of the test: its URL, a token for the REST API and its logs."""

    def __init__(self, home: Path, url: str, logs: Path):
        self.home, self.url, self.logs = home, url, logs
        self.token: str | None = None
        self.tasks: list[str] = []

    def api(self, method: str, path: str, body: dict | None = None):
        return _http(method, self.url + path, body, self.token)

    def diagnostics(self) -> str:
        parts = [f"--- {log.name}\n{_tail(log)}" for log in sorted(self.logs.glob("*.log"))]
        for log in sorted((self.home / ".airflow" / "logs").glob(f"dag_id={DAG_ID}/run_id=*/task_id=*/attempt=*.log")):
            parts.append(f"--- {log.relative_to(self.home)}\n{_tail(log, 15)}")
        return "\n".join(parts)


def _wait(what: str, check, timeout: float, airflow: Airflow, processes: list[subprocess.Popen]):
    """Poll `check()` until it returns something truthy; fail early if a component died."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        dead = [p.args[1] for p in processes if p.poll() is not None]
        if dead:
            pytest.fail(f"airflow {', '.join(dead)} exited while waiting for {what}\n{airflow.diagnostics()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{airflow.diagnostics()}")
        time.sleep(1)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> Iterator[Airflow]:
    """A tiny home, Airflow's four components on loopback, and one successful run of the DAG."""
    _chromium()  # skip before starting anything
    from nudgeflow.lab.simulate import create_world

    home = tmp_path_factory.mktemp("browser_home")
    airflow_home = home / ".airflow"
    dags = airflow_home / "dags"
    logs = airflow_home / "components"
    dags.mkdir(parents=True)
    logs.mkdir()
    (dags / "nudgeflow_daily.py").symlink_to(ROOT / "dags" / "nudgeflow_daily.py")  # the production DAG only
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        NUDGEFLOW_HOME=str(home),
        AIRFLOW_HOME=str(airflow_home),  # SQLite metadata DB: airflow.db
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",  # Airflow 3 runs it on SQLite (as `airflow standalone` does)
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",  # no login: everyone is admin
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",  # where task processes report
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(16),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),  # one for every component
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),  # default 8793
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),  # default 8794
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    processes: list[subprocess.Popen] = []
    handle = Airflow(home, url, logs)

    def start(*args: str) -> subprocess.Popen:
        with (logs / f"{args[0]}.log").open("w") as out:
            proc = subprocess.Popen(
                [airflow_bin, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        processes.append(proc)
        return proc

    try:
        migrate = start("db", "migrate")
        now = dt.datetime.now(dt.UTC)
        to_next_tick = (_last_tick(now) + dt.timedelta(days=1) - now).total_seconds()
        if to_next_tick < 240:  # a tick during the test would make the scheduler add a run of its own
            time.sleep(to_next_tick + 1)
        tick = _last_tick(dt.datetime.now(dt.UTC))
        day = (tick + dt.timedelta(hours=3)).date()  # the date the run plans (dags/nudgeflow_daily.py)
        create_world(home, users=200, history_days=4, start=day - dt.timedelta(days=4), seed=7)
        if migrate.wait(timeout=300) != 0:
            pytest.fail(f"airflow db migrate failed\n{_tail(logs / 'db.log')}")
        processes.remove(migrate)
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            start(component)

        def healthy():
            try:
                status, health = _http("GET", f"{url}/api/v2/monitor/health", timeout=5)
            except OSError:
                return False
            return status == 200 and all(
                health.get(c, {}).get("status") == "healthy"
                for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )

        _wait("every component to report healthy", healthy, 180, handle, processes)
        status, body = _http("GET", f"{url}/auth/token")  # all admins: a token without credentials
        assert status in (200, 201), body
        handle.token = body["access_token"]
        status, body = handle.api("POST", "/api/v2/pools", {"name": POOL, "slots": 1, "description": "one writer"})
        assert status in (200, 201), body
        _wait(
            "the DAG to be parsed",
            lambda: handle.api("GET", f"/api/v2/dags/{DAG_ID}")[0] == 200,
            120,
            handle,
            processes,
        )
        status, errors = handle.api("GET", "/api/v2/importErrors")
        assert status == 200 and errors["total_entries"] == 0, errors
        status, body = handle.api("GET", f"/api/v2/dags/{DAG_ID}/tasks")
        assert status == 200, body
        handle.tasks = [t["task_id"] for t in body["tasks"]]
        assert set(CHAIN) <= set(handle.tasks), handle.tasks
        status, body = handle.api(
            "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"dag_run_id": RUN_ID, "logical_date": tick.isoformat()}
        )
        assert status in (200, 201), body
        status, body = handle.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        assert status == 200, body

        def finished():
            state = handle.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}")[1]["state"]
            return state if state in ("success", "failed") else None

        state = _wait(f"DagRun {RUN_ID} to finish", finished, RUN_TIMEOUT, handle, processes)
        handle.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": True})  # no further runs while we look
        if state != "success":
            tis = handle.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances")[1]
            states = {t["task_id"]: t["state"] for t in tis["task_instances"]}
            pytest.fail(f"DagRun {RUN_ID} ended {state}: {states}\n{handle.diagnostics()}")
        runs = handle.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")[1]
        assert [r["dag_run_id"] for r in runs["dag_runs"]] == [RUN_ID], runs  # the scheduler added none
        yield handle
    finally:
        _stop(processes)


class Browser:
    """Headless Chromium through chromedriver's W3C WebDriver HTTP interface."""

    def __init__(self, browser: str, driver: str, log: Path):
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [driver, f"--port={port}"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.session = None
        deadline = time.monotonic() + 30
        while True:
            try:
                if _http("GET", f"{self.base}/status", timeout=2)[1]["value"]["ready"]:
                    break
            except (OSError, TypeError, KeyError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"chromedriver did not start: {_tail(log)}")
            time.sleep(0.2)
        options = {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"],
        }
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        status, reply = _http(method, self.base + path, body, timeout=120)
        if status != 200:
            raise RuntimeError(f"WebDriver {method} {path}: {status} {str(reply)[:1000]}")
        return reply["value"]

    def command(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def size(self, width: int, height: int) -> None:
        self.command("POST", "/window/rect", {"width": width, "height": height})

    def open(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def js(self, script: str, *args):
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_js(self, what: str, script: str, *args, timeout: float = 60):
        """Run `script` until it returns something truthy; fail with the page's text if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                text = self.js("return document.body ? document.body.innerText : ''")[:2000]
                pytest.fail(f"timed out waiting for {what} on {self.js('return location.href')}:\n{text}")
            time.sleep(0.25)

    def hover(self, css: str) -> None:
        element = self.command("POST", "/element", {"using": "css selector", "value": css})[WEBDRIVER_ELEMENT]
        move = {"type": "pointerMove", "origin": {WEBDRIVER_ELEMENT: element}, "x": 0, "y": 0, "duration": 50}
        pointer = {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [move]}
        self.command("POST", "/actions", {"actions": [pointer]})

    def screenshot(self, name: str) -> None:
        """Write docs/screenshots/NAME only when NUDGEFLOW_SCREENSHOTS=1 (CI never rewrites the docs)."""
        if os.environ.get("NUDGEFLOW_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / name).write_bytes(base64.b64decode(self.command("GET", "/screenshot")))

    def quit(self) -> None:
        try:
            if self.session:
                self.command("DELETE", "")  # closes Chromium
        finally:
            _stop([self.proc], grace=10)


@pytest.fixture(scope="module")
def browser(airflow) -> Iterator[Browser]:
    chromium, driver = _chromium()
    b = Browser(chromium, driver, airflow.logs / "chromedriver.log")
    try:
        b.size(1400, 900)
        yield b
    finally:
        b.quit()


def _run_page(airflow: Airflow, browser: Browser, view: str) -> None:
    """The DAG run's page with the grid or the graph on its left: the UI keeps the choice in
    localStorage (`default_dag_view`), so set it on the UI's origin before loading the page."""
    browser.open(f"{airflow.url}/api/v2/version")
    browser.js("localStorage.setItem('default_dag_view', JSON.stringify(arguments[0]))", view)
    browser.open(f"{airflow.url}/dags/{DAG_ID}/runs/{RUN_ID}")


def test_grid_shows_every_task_succeeded(airflow, browser):
    _run_page(airflow, browser, "grid")
    cells = [f"a[data-testid='grid-{RUN_ID}-{task}']" for task in airflow.tasks]
    browser.wait_js(
        "a grid cell per task",
        "return arguments[0].every(c => document.querySelector(c))",
        cells,
    )
    names = browser.js(  # the task column, top to bottom
        "return [...document.querySelectorAll('[data-task-id][data-testid^=\"task-\"]')].map(e => e.innerText.trim())"
    )
    assert sorted(names) == sorted(airflow.tasks), names
    assert [n for n in names if n in CHAIN] == list(CHAIN), names  # in the DAG's order
    browser.screenshot("airflow_grid.png")
    # a cell shows its state as a colour and an icon; its tooltip spells it out
    for task, cell in zip(airflow.tasks, cells):
        browser.hover(cell)
        tip = browser.wait_js(
            f"the tooltip of {task}'s cell",
            "return [...document.querySelectorAll('[data-scope=tooltip][data-part=content]')]"
            ".map(e => e.innerText).find(t => t.includes('Task ID: ' + arguments[0] + '\\n')) || null",
            task,
            timeout=15,
        )
        assert "State: Success" in tip, tip
        assert f"Run ID: {RUN_ID}" in tip, tip


def test_graph_shows_every_task_succeeded(airflow, browser):
    _run_page(airflow, browser, "graph")
    nodes = browser.wait_js(
        "a graph node with a state per task",
        "const nodes = arguments[0].map(t => document.querySelector(`[data-testid='rf__node-${t}']`));"
        " const badge = n => n && n.querySelector('[data-testid=state-badge]');"
        " return nodes.every(n => badge(n) && badge(n).innerText.trim()) && nodes.map(n =>"
        " [n.querySelector('a').innerText.trim(), badge(n).innerText.trim(), n.getBoundingClientRect().width]);",
        airflow.tasks,
    )
    assert [name for name, _, _ in nodes] == airflow.tasks, nodes
    assert {state for _, state, _ in nodes} == {"success"}, nodes
    assert all(width > 0 for _, _, width in nodes), nodes  # laid out, not just in the DOM
    edges = browser.js("return document.querySelectorAll('.react-flow__edge').length")
    assert edges >= len(CHAIN) - 1
    browser.screenshot("airflow_graph.png")


def test_report_renders_its_plots_inside_airflow(airflow, browser):
    """The plugin's nav entry "Lift report" (/plugin/nudgeflow-report) frames /nudgeflow/report."""
    browser.size(1400, 1100)
    try:
        browser.open(f"{airflow.url}/plugin/nudgeflow-report")
        frame_src = browser.wait_js(
            "the report's frame to load",
            "const f = document.querySelector('iframe'); const d = f && f.contentDocument;"
            " return d && d.readyState === 'complete' && d.querySelectorAll('svg').length ? f.src : null",
        )
        assert frame_src == f"{airflow.url}/nudgeflow/report"
        title, heading, plots = browser.js(
            "const d = document.querySelector('iframe').contentDocument;"
            " return [d.title, d.querySelector('h1').innerText,"
            " [...d.querySelectorAll('svg')].map(s => { const r = s.getBoundingClientRect();"
            " return [r.width, r.height, s.querySelectorAll('rect, path, line, polyline, circle').length,"
            " s.textContent.trim().slice(0, 80)]; })];"
        )
        assert title == "nudgeflow report"
        assert heading.startswith("nudgeflow: the lift over the holdout")
        assert len(plots) >= 4, plots  # daily lift, effects per channel, event weights, effects, ...
        for width, height, shapes, text in plots:
            assert width > 100 and height > 50 and shapes >= 2 and text, plots
        nav = browser.js("return document.body.innerText")
        assert "Plugins" in nav  # the Airflow UI around the frame
        browser.screenshot("report_in_airflow.png")
    finally:
        browser.size(1400, 900)
