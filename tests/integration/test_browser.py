"""Checked in a real browser: Airflow 3 runs the daily DAG, and headless Chromium shows it.

A tiny simulated home, then Airflow for real on loopback, each component its own process as
in docker-compose.yml: `airflow api-server`, `scheduler` (LocalExecutor), `dag-processor` and
`triggerer`, with a SQLite metadata DB under HOME/.airflow and the repository's `plugins/`.
The simple auth manager lets everyone in as admin, so the browser needs no login. One run of
`nudgeflow_daily`, triggered through the REST API, must succeed; then Chromium, driven over
chromedriver's WebDriver HTTP interface (the standard library only, no Selenium), loads the
DAG's grid and graph views (every task group open) and the plugin's lift report, and the test
reads the rendered DOM: every task of the DAG, each dbt model's task
of the `measure` group included, is shown, and shown as succeeded, and the report's SVG
plots render. Last, a model's task is cleared through the API: its second try builds the model
and runs its data tests alone (`dbt build --select`), and succeeds.

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
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nudgeflow.lab.local_airflow import AirflowError, LocalAirflow, free_port, http, stop, tail

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "nudgeflow_daily"
RUN_ID = "browser_check"
CHAIN = ("ingest", "measure.dbt_producer_watcher", "check", "priors", "sample", "match", "schedule")  # in this order
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


def _last_tick(now: dt.datetime) -> dt.datetime:
    """The DAG's most recent scheduled tick (cron `0 21 * * *` UTC) at or before `now`."""
    tick = now.replace(hour=21, minute=0, second=0, microsecond=0)
    return tick if tick <= now else tick - dt.timedelta(days=1)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> Iterator[LocalAirflow]:
    """A tiny home, Airflow's four components on loopback, and one successful run of the DAG."""
    _chromium()  # skip before starting anything
    from nudgeflow.lab.simulate import create_world

    home = tmp_path_factory.mktemp("browser_home")
    handle = LocalAirflow(home, [ROOT / "dags" / "nudgeflow_daily.py"])  # the production DAG only
    ticks = {}

    def build_home():  # while the metadata DB migrates
        now = dt.datetime.now(dt.UTC)
        to_next_tick = (_last_tick(now) + dt.timedelta(days=1) - now).total_seconds()
        if to_next_tick < 240:  # a tick during the test would make the scheduler add a run of its own
            time.sleep(to_next_tick + 1)
        ticks["tick"] = tick = _last_tick(dt.datetime.now(dt.UTC))
        day = (tick + dt.timedelta(hours=3)).date()  # the date the run plans (dags/nudgeflow_daily.py)
        create_world(home, users=200, history_days=4, start=day - dt.timedelta(days=4), seed=7)

    try:
        with handle:
            handle.start(before_components=build_home)
            handle.tasks = handle.wait_parsed(DAG_ID)
            assert set(CHAIN) <= set(handle.tasks), handle.tasks
            state = handle.run(DAG_ID, RUN_ID, ticks["tick"].isoformat(), RUN_TIMEOUT)
            if state != "success":
                states = {t["task_id"]: t["state"] for t in handle.task_instances(DAG_ID, RUN_ID)}
                pytest.fail(f"DagRun {RUN_ID} ended {state}: {states}\n{handle.diagnostics()}")
            runs = handle.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")[1]
            assert [r["dag_run_id"] for r in runs["dag_runs"]] == [RUN_ID], runs  # the scheduler added none
            yield handle
    except AirflowError as exc:
        pytest.fail(str(exc))


class Browser:
    """Headless Chromium through chromedriver's W3C WebDriver HTTP interface."""

    def __init__(self, browser: str, driver: str, log: Path):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [driver, f"--port={port}"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.session = None
        deadline = time.monotonic() + 30
        while True:
            try:
                if http("GET", f"{self.base}/status", timeout=2)[1]["value"]["ready"]:
                    break
            except (OSError, TypeError, KeyError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"chromedriver did not start: {tail(log)}")
            time.sleep(0.2)
        options = {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"],
        }
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        status, reply = http(method, self.base + path, body, timeout=120)
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
            stop([self.proc], grace=10)


@pytest.fixture(scope="module")
def browser(airflow) -> Iterator[Browser]:
    chromium, driver = _chromium()
    b = Browser(chromium, driver, airflow.logs / "chromedriver.log")
    try:
        b.size(1400, 900)
        yield b
    finally:
        b.quit()


def _groups(tasks: list[str]) -> list[str]:
    """The task groups around these tasks: `measure`, `measure.<model>`, ..."""
    return sorted({".".join(t.split(".")[:i]) for t in tasks for i in range(1, t.count(".") + 1)})


def _run_page(airflow: LocalAirflow, browser: Browser, view: str) -> None:
    """The DAG run's page with the grid or the graph on its left, every task group open: the UI
    keeps both choices in localStorage (`default_dag_view`, `<dag>/open-groups`), so set them on
    the UI's origin before loading the page."""
    browser.open(f"{airflow.url}/api/v2/version")
    browser.js("localStorage.setItem('default_dag_view', JSON.stringify(arguments[0]))", view)
    browser.js(
        "localStorage.setItem(arguments[0], JSON.stringify(arguments[1]))",
        f"{DAG_ID}/open-groups",
        _groups(airflow.tasks),
    )
    browser.open(f"{airflow.url}/dags/{DAG_ID}/runs/{RUN_ID}")


# the rows of the grid in view: each task's id and its cell's state badge (icon and colour)
GRID_ROWS = """
return [...document.querySelectorAll('[data-task-id][data-testid^="task-"]')].map(row => {
  const id = row.getAttribute('data-task-id');
  const cell = document.querySelector(`a[data-testid="grid-${arguments[0]}-${CSS.escape(id)}"]`);
  const badge = cell && cell.querySelector('[data-testid=task-state-badge]');
  const icon = badge && badge.querySelector('path');
  return [id, row.getBoundingClientRect().top + scroller(row).scrollTop,
          badge ? getComputedStyle(badge).backgroundColor : null, icon ? icon.getAttribute('d') : null];
});
function scroller(e) { while (e && getComputedStyle(e).overflowY !== 'auto') e = e.parentElement; return e; }
"""
SCROLL_GRID = """
const row = document.querySelector('[data-task-id][data-testid^="task-"]');
let e = row; while (e && getComputedStyle(e).overflowY !== 'auto') e = e.parentElement;
const before = e.scrollTop; e.scrollTop = before + e.clientHeight * 0.8; return e.scrollTop > before;
"""


def test_grid_shows_every_task_succeeded(airflow, browser):
    """Every task, each dbt model's (with its tests) included, has a row in the grid and a cell
    with the success badge. The grid draws only the rows in view, so scroll it through."""
    _run_page(airflow, browser, "grid")
    browser.wait_js(
        "the grid's first rows", "return document.querySelector(arguments[0])", f"a[data-testid='grid-{RUN_ID}-ingest']"
    )
    rows: dict[str, tuple] = {}
    for _ in range(200):  # screens, at most
        for task_id, top, colour, icon in browser.js(GRID_ROWS, RUN_ID):
            if task_id not in rows or None in rows[task_id]:
                rows[task_id] = (top, colour, icon)
        if rows.keys() >= set(airflow.tasks) or not browser.js(SCROLL_GRID):
            break
        time.sleep(0.3)  # the rows scrolled into view draw
    missing = sorted(set(airflow.tasks) - rows.keys())
    assert not missing, missing
    order = sorted(rows, key=lambda t: rows[t][0])
    assert [t for t in order if t in CHAIN] == list(CHAIN), order  # in the DAG's order
    # the states: `ingest`'s tooltip spells its state out; every task's badge looks like it
    _run_page(airflow, browser, "grid")
    cell = f"a[data-testid='grid-{RUN_ID}-ingest']"
    browser.wait_js("the grid's first rows", "return document.querySelector(arguments[0])", cell)
    browser.hover(cell)
    tip = browser.wait_js(
        "the tooltip of ingest's cell",
        "return [...document.querySelectorAll('[data-scope=tooltip][data-part=content]')]"
        ".map(e => e.innerText).find(t => t.includes('Task ID: ingest\\n')) || null",
        timeout=15,
    )
    assert "State: Success" in tip and f"Run ID: {RUN_ID}" in tip, tip
    success = rows["ingest"][1:]
    assert all(success), rows["ingest"]
    wrong = {t: rows[t][1:] for t in airflow.tasks if rows[t][1:] != success}
    assert not wrong, (success, wrong)
    browser.screenshot("airflow_grid.png")


def test_graph_shows_every_task_succeeded(airflow, browser):
    """A node per task, each dbt model's (with its tests) included, laid out with the state
    `success`, and the edges of the lineage between them."""
    _run_page(airflow, browser, "graph")
    nodes = browser.wait_js(
        "a graph node with a state per task",
        "const nodes = arguments[0].map(t => document.querySelector(`[data-testid='rf__node-${CSS.escape(t)}']`));"
        " const badge = n => n && n.querySelector('[data-testid=state-badge]');"
        " return nodes.every(n => badge(n) && badge(n).innerText.trim()) && nodes.map(n =>"
        " [n.getAttribute('data-id'), badge(n).innerText.trim(), n.getBoundingClientRect().width]);",
        airflow.tasks,
    )
    assert [task_id for task_id, _, _ in nodes] == airflow.tasks, nodes
    assert {state for _, state, _ in nodes} == {"success"}, nodes
    assert all(width > 0 for _, _, width in nodes), nodes  # laid out, not just in the DOM
    edges = browser.js("return document.querySelectorAll('.react-flow__edge').length")
    assert edges >= len(airflow.tasks) - 1
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


def test_a_cleared_model_task_builds_its_model_and_runs_its_tests_alone(airflow):
    """Last, as it changes the run: clearing a model's task (one with data tests) once the
    producer has ended makes its second try build that model and run its tests alone (`dbt
    build --select <model>`, under the home's lock), and it succeeds; nothing else reruns."""
    status, body = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/tasks")
    assert status == 200, body
    tested = sorted(
        t["task_id"]
        for t in body["tasks"]
        if t["task_id"].startswith("measure.") and "and its data tests" in (t.get("doc_md") or "")
    )
    assert tested, [t["task_id"] for t in body["tasks"]]
    task_id = "measure.stg_raw__events_run" if "measure.stg_raw__events_run" in tested else tested[0]
    model = task_id.removeprefix("measure.").removesuffix("_run")
    status, body = airflow.api(
        "POST",
        f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
        {"dry_run": False, "dag_run_id": RUN_ID, "task_ids": [task_id], "only_failed": False},
    )
    assert status == 200 and [t["task_id"] for t in body["task_instances"]] == [task_id], body

    def rerun():
        tis = {t["task_id"]: t for t in airflow.task_instances(DAG_ID, RUN_ID)}
        ti = tis[task_id]
        return ti if ti["state"] in ("success", "failed") and ti["try_number"] >= 2 else None

    airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})  # a paused DAG's runs wait
    try:
        ti = airflow.wait(f"{task_id} to run again", rerun, RUN_TIMEOUT / 2)
    finally:
        airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": True})
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances/{task_id}/logs/{ti['try_number']}?full_content=true"
    status, log = airflow.api("GET", path)
    text = "\n".join(str(e.get("event", "")) for e in log.get("content", []) if isinstance(e, dict))
    assert ti["state"] == "success", text[-3000:]
    commands = [line for line in text.splitlines() if "['build', '--select'" in line]  # Cosmos logs dbt's argv
    assert len(commands) == 1 and commands[0].split("'--select', '")[1].split("'")[0].endswith(f".{model}"), commands
    finished = [line for line in text.splitlines() if "Finished running" in line]
    # the model and its tests: "Finished running 3 data tests, 1 view model in ..."
    assert finished and re.search(r"running \d+ data tests?, 1 ", finished[0]), finished
    assert "Completed successfully" in text, text[-3000:]
    others = [t for t in airflow.task_instances(DAG_ID, RUN_ID) if t["task_id"] != task_id]
    assert all(t["try_number"] == 1 for t in others), [(t["task_id"], t["try_number"]) for t in others]
