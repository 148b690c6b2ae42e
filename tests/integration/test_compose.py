"""docker-compose.yml, Dockerfile, .dockerignore and .env.example, checked without a Docker engine.

Static checks always run; `docker compose config` (offline, no daemon needed) runs when the
docker client and its compose v2 plugin are installed, and is skipped otherwise.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
LONG_RUNNING = ("postgres", *AIRFLOW[1:])
SHARED_SECRETS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN")
REQUIRED_REF = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+):\?[^}]+\}")  # ${VAR:?message}: compose refuses to start without it
ANY_REF = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:[:?\-+][^}]*)?\}")
HOME, DAGS, PLUGINS = "/opt/nudgeflow/data", "/opt/nudgeflow/dags", "/opt/nudgeflow/plugins"
LOGS, CONFIG = "/opt/airflow/logs", "/opt/airflow/config"
POOL = "nudgeflow_warehouse"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@cache
def _compose() -> dict:
    return yaml.safe_load(_compose_text())  # resolves the x-airflow-common anchor and its `<<:` merges


def _services() -> dict:
    return _compose()["services"]


def _env(service: str) -> dict:
    env = _services()[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return env


def _mounts(service: str) -> dict:
    """target -> source of the service's short-syntax volumes."""
    found = {}
    for volume in _services()[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        found[target] = source
    return found


def _lock() -> dict:
    """requirements.lock: normalised name -> (version, section); sections are its `# [extra]` headers."""
    pins, section = {}, "product"
    for raw in (ROOT / "requirements.lock").read_text().splitlines():
        line = raw.strip()
        if line.startswith("# [") and "]" in line:
            section = line[3 : line.index("]")]
        elif line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[_norm(name)] = (version.split(";")[0].strip(), section)
    return pins


def _dockerfile() -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#"):
            continue
        current += " " + line.strip()
        if current.endswith("\\"):
            current = current[:-1]
        else:
            if current.strip():
                instructions.append(current.strip())
            current = ""
    return instructions


def _dockerfile_env() -> dict:
    env = {}
    for instruction in _dockerfile():
        if instruction.upper().startswith("ENV "):
            for pair in shlex.split(instruction[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _pip_installs() -> list[list[str]]:
    """The arguments of every `pip install` the Dockerfile runs."""
    found = []
    for instruction in _dockerfile():
        if not instruction.upper().startswith("RUN "):
            continue
        lexer = shlex.shlex(instruction[4:], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands = [[]]
        for token in lexer:
            if token in ("&&", "||", ";", "|"):
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2 :])
                elif words[i : i + 4] == ["python", "-m", "pip", "install"]:
                    found.append(words[i + 4 :])
    return found


def _env_example() -> tuple[dict, dict]:
    """.env.example: the values, and the `# generate:` command written above each variable."""
    values, commands, pending = {}, {}, None
    for line in (ROOT / ".env.example").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# generate:"):
            pending = stripped.removeprefix("# generate:").strip()
        elif stripped and not stripped.startswith("#"):
            key, _, value = stripped.partition("=")
            values[key] = value
            if pending:
                commands[key] = pending
            pending = None
    return values, commands


def _required_vars() -> set[str]:
    return set(REQUIRED_REF.findall(_compose_text()))


def _generated_env(tmp_path: Path) -> dict:
    """A .env made from .env.example by running the generator command of every empty value."""
    values, commands = _env_example()
    filled = dict(values)
    for key, value in values.items():
        if value:
            continue
        words = shlex.split(commands[key])
        assert words[0] in ("python", "python3"), f".env.example: {key}'s command is not a python one-liner"
        filled[key] = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True, check=True).stdout
        filled[key] = filled[key].strip()
        assert filled[key], f".env.example: {key}'s command printed nothing"
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in filled.items()))
    return filled


def test_the_services_of_airflows_official_compose_with_localexecutor():
    services = _services()
    assert set(services) == {"postgres", *AIRFLOW}
    for name in AIRFLOW:
        env = _env(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == DAGS
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == PLUGINS
        assert env["NUDGEFLOW_HOME"] == HOME
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
        assert services[name]["build"] == "." and services[name]["image"] == services["airflow-init"]["image"]
    commands = {name: services[name]["command"] for name in AIRFLOW[1:]}
    assert commands == {
        "airflow-apiserver": ["airflow", "api-server"],
        "airflow-scheduler": ["airflow", "scheduler"],
        "airflow-dag-processor": ["airflow", "dag-processor"],
        "airflow-triggerer": ["airflow", "triggerer"],
    }
    assert any(port.endswith(":8080:8080") for port in services["airflow-apiserver"]["ports"])


def test_every_long_running_service_has_a_healthcheck_and_restarts():
    services = _services()
    for name in LONG_RUNNING:
        assert services[name].get("restart") == "always", name
        check = services[name].get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "retries", "start_period"} <= set(check), name
    probe = {name: " ".join(services[name]["healthcheck"]["test"]) for name in LONG_RUNNING}
    assert "pg_isready" in probe["postgres"]
    assert re.search(r"localhost:8080/api/v2/(version|monitor/health)", probe["airflow-apiserver"])
    assert "localhost:8974/health" in probe["airflow-scheduler"]
    assert "airflow jobs check --job-type DagProcessorJob" in probe["airflow-dag-processor"]
    assert "airflow jobs check --job-type TriggererJob" in probe["airflow-triggerer"]
    assert services["airflow-init"].get("restart") == "no"  # a one-shot job
    assert "healthcheck" not in services["airflow-init"]


def test_start_order_postgres_then_init_then_the_components():
    services = _services()
    assert services["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in AIRFLOW[1:]:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "airflow-init": {"condition": "service_completed_successfully"},
        }, name


def test_airflow_init_migrates_creates_the_admin_and_the_one_writer_pool():
    init = _services()["airflow-init"]
    script = "\n".join(init["command"])
    assert "airflow db migrate" in script
    assert re.search(rf"airflow pools set {POOL} 1 ", script)
    env = _env("airflow-init")
    # simple auth manager (Airflow 3's default): the users, and a passwords file that init writes
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].endswith(":admin")
    passwords = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert PurePosixPath(passwords).parent == PurePosixPath(CONFIG)  # on the shared config volume
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    assert REQUIRED_REF.fullmatch(env["_AIRFLOW_ADMIN_PASSWORD"])
    for name in AIRFLOW[1:]:
        assert "_AIRFLOW_ADMIN_PASSWORD" not in _env(name), f"{name} does not need the admin's password"
    from nudgeflow import airflow_dbt

    assert airflow_dbt.POOL == POOL  # the pool init creates is the one the daily DAG's writers run in
    assert '"pool": POOL' in (ROOT / "dags" / "nudgeflow_daily.py").read_text()


def test_no_literal_secret_and_one_shared_key_set_from_the_environment():
    for name, service in _services().items():
        for key, value in service.get("environment", {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                if key.endswith("_FILE"):  # the path of a file holding the secret, not the secret
                    assert value.startswith("/"), f"{name}: {key}={value!r}"
                else:
                    assert REQUIRED_REF.fullmatch(value), f"{name}: {key} must be ${{VAR:?...}}, not {value!r}"
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert REQUIRED_REF.fullmatch(password), f"{name}: {key} embeds a literal password"
    for key in SHARED_SECRETS:
        values = {_env(name).get(key) for name in AIRFLOW}
        assert len(values) == 1 and REQUIRED_REF.fullmatch(values.pop() or ""), f"{key}: one ${{VAR:?}} for all"
    postgres = _env("postgres")["POSTGRES_PASSWORD"]
    assert postgres in _env("airflow-scheduler")["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    # nothing that looks like a generated key anywhere in the file
    assert not re.search(r"(?<![\w$])(?=[\w-]*\d)(?=[\w-]*[a-z])(?=[\w-]*[A-Z])[\w-]{24,}={0,2}", _compose_text())


def test_the_airflow_containers_run_as_a_non_root_user():
    uid = re.search(r"^ARG AIRFLOW_UID=(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert uid and uid.group(1) == "50000"
    for name in AIRFLOW:
        user = str(_services()[name].get("user", ""))
        match = re.fullmatch(r"\$\{AIRFLOW_UID:-(\d+)\}:0", user)
        assert match and match.group(1) == "50000", f"{name}: user {user!r}"
    users = [i.split(None, 1)[1] for i in _dockerfile() if i.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image ends as a non-root user"
    assert any(re.search(r"useradd .*--uid \"?\$\{?AIRFLOW_UID", i) for i in _dockerfile())


def test_home_logs_config_dags_and_plugins_are_mounted_and_dev_dags_is_not():
    compose = _compose()
    named = set(compose.get("volumes", {}))
    for name in AIRFLOW:
        mounts = _mounts(name)
        assert mounts.get(HOME) == "./data", name
        assert mounts.get(DAGS) == "./dags", name
        assert mounts.get(PLUGINS) == "./plugins", name
        assert mounts.get(LOGS) in named and mounts.get(CONFIG) in named, name
        assert PurePosixPath(_env(name)["AIRFLOW_CONFIG"]).parent == PurePosixPath(CONFIG)
        for source in mounts.values():
            if source.startswith("."):
                path = (ROOT / source).resolve()
                assert source == "./data" or path.exists(), f"{name}: {source} does not exist"
                assert not (ROOT / "dev" / "dags").resolve().is_relative_to(path), f"{name} mounts dev/dags"
        assert "dev" not in PurePosixPath(_env(name)["AIRFLOW__CORE__DAGS_FOLDER"]).parts
    # the image's defaults are the compose file's
    image_env = _dockerfile_env()
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "NUDGEFLOW_HOME"):
        assert image_env[key] == _env("airflow-scheduler")[key], key
    assert image_env["AIRFLOW_HOME"] == str(PurePosixPath(LOGS).parent)


@cache
def _product_closure() -> dict:
    """Every distribution `pip install .` pulls in (no extras), with the specifiers asked of it,
    from pyproject.toml and the installed distributions' metadata."""
    wanted: dict[str, list] = {}
    extras_done: dict[str, set] = {}
    todo = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        wanted.setdefault(name, []).append(req.specifier)
        if name in extras_done and set(req.extras) <= extras_done[name]:
            continue
        extras = extras_done.setdefault(name, set())
        extras.update(req.extras)
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue  # not installed here: its own dependencies cannot be listed, it is still checked
        for line in requires:
            child = Requirement(line)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append(child)
    return wanted


def test_the_image_installs_the_product_from_the_lock_without_lab_or_dev():
    assert _dockerfile()[0] == "FROM python:3.11-slim"
    installs = _pip_installs()
    assert installs, "the Dockerfile runs no pip install"
    lock = _lock()
    for args in installs:
        assert "-c" in args and args[args.index("-c") + 1] == "requirements.lock", args
        assert not {"-e", "--editable", "-r"} & set(args), args
        targets = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "-c")]
        assert "." in targets, "install the product itself, from the build context"
        for target in targets:
            assert "[" not in target, f"{target}: no extras in the production image"
            if target == ".":
                continue
            req = Requirement(target)
            assert _norm(req.name) in lock, (
                f"the Dockerfile installs {req.name}, which requirements.lock does not pin: add it to the lock"
            )
            assert req.specifier.contains(lock[_norm(req.name)][0], prereleases=True), target
    closure = _product_closure()
    unpinned = sorted(set(closure) - set(lock))
    assert not unpinned, f"`pip install .` pulls in {unpinned}, which requirements.lock does not pin"
    for name, specifiers in closure.items():
        version, section = lock[name]
        assert section == "product", f"{name} is needed by the product but sits in the lock's [{section}] section"
        for specifier in specifiers:
            assert specifier.contains(version, prereleases=True), f"{name}=={version} breaks {specifier}"
    assert not {"mabwiser", "vowpalwabbit", "matplotlib", "pytest", "hypothesis", "ruff"} & set(closure)


def test_dockerignore_keeps_the_venv_data_and_secrets_out_of_the_build_context():
    patterns = [
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    wanted = (".venv", "data", ".git", "**/__pycache__", "dbt_project/target", "dbt_project/logs", "tests", "dev")
    for entry in (*wanted, "**/*.duckdb", ".env"):
        assert entry in patterns or entry.removeprefix("**/") in patterns, f".dockerignore lacks {entry}"

    def ignored(path: str) -> bool:
        return any(
            fnmatch(path, p) or fnmatch(path, p.removeprefix("**/")) or path.startswith(p + "/") for p in patterns
        )

    for instruction in _dockerfile():
        if instruction.upper().startswith("COPY "):
            for source in shlex.split(instruction)[1:-1]:
                assert not ignored(source.rstrip("/")), f"the Dockerfile copies {source}, which .dockerignore drops"
                assert (ROOT / source).exists(), source


def test_env_example_names_every_variable_and_holds_no_secret(tmp_path):
    values, commands = _env_example()
    referenced = set(ANY_REF.findall(_compose_text()))
    assert referenced <= set(values), f".env.example lacks {sorted(referenced - set(values))}"
    required = _required_vars()
    assert {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET"} <= required
    for key in required:
        assert values[key] == "", f".env.example: {key} must be empty (a placeholder compose refuses)"
        assert key in commands, f".env.example: write the command that generates {key} above it"
    assert "cryptography.fernet" in commands["AIRFLOW_FERNET_KEY"]
    for key in required - {"AIRFLOW_FERNET_KEY"}:
        assert "secrets.token_urlsafe" in commands[key], key
    for key, value in values.items():
        assert not re.search(r"[\w+/=-]{16,}", value), f".env.example: {key} looks like a real secret"
    # the commands run and make usable values
    from cryptography.fernet import Fernet

    filled = _generated_env(tmp_path)
    Fernet(filled["AIRFLOW_FERNET_KEY"])
    for key in required:
        assert len(filled[key]) >= 16 and re.fullmatch(r"[\w=-]+", filled[key]), key  # URL-safe: it goes in a URL


def test_dot_env_is_git_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree")
    result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert result.returncode == 0, ".env holds the deployment's secrets: add the line `.env` to .gitignore"


def test_operations_doc_says_how_to_start_log_in_and_read():
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## docker-compose", 1)[1].split("\n## ", 1)[0]
    for needle in (
        ".env.example",
        "docker compose up -d",
        "http://localhost:8080",
        "AIRFLOW_ADMIN_PASSWORD",
        "AIRFLOW_UID",
        "landing/",
        POOL,
        "published/warehouse.duckdb",
        "exports/",
    ):
        assert needle in section, f"docs/operations.md, docker-compose: say {needle}"
    for key in _required_vars():
        assert key in section, key


def _docker_compose() -> list[str]:
    if shutil.which("docker") is None:
        pytest.skip("the docker client is not installed: `docker compose config` not run (static checks only)")
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose v2 plugin is not installed: `docker compose config` not run")
    return ["docker", "compose", "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]


def _clean_env() -> dict:
    keep = ("PATH", "HOME", "DOCKER_CONFIG")  # not the caller's variables: only the env file counts
    return {k: os.environ[k] for k in keep if k in os.environ}


def test_docker_compose_config_accepts_a_filled_env_and_refuses_an_empty_one(tmp_path):
    compose = _docker_compose()
    filled = _generated_env(tmp_path)
    result = subprocess.run(
        [*compose, "--env-file", str(tmp_path / ".env"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    expected = {
        "AIRFLOW__CORE__FERNET_KEY": filled["AIRFLOW_FERNET_KEY"],
        "AIRFLOW__API__SECRET_KEY": filled["AIRFLOW_API_SECRET_KEY"],
        "AIRFLOW__API_AUTH__JWT_SECRET": filled["AIRFLOW_JWT_SECRET"],
    }
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert {k: env[k] for k in expected} == expected, name
        assert f":{filled['POSTGRES_PASSWORD']}@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert services[name]["user"] == "50000:0"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == filled["POSTGRES_PASSWORD"]

    (tmp_path / "empty.env").write_text((ROOT / ".env.example").read_text())  # placeholders only
    refused = subprocess.run(
        [*compose, "--env-file", str(tmp_path / "empty.env"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert refused.returncode != 0 and "set it in .env" in refused.stderr, refused.stderr
