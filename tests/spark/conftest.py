"""A local SparkSession for the Spark tests (`make test-spark`; not part of `make test`).

Every test here needs the `spark` extra (`pip install -c requirements.lock -e '.[spark]'`) and
Java 17 or 21; without them every test that uses the `spark` fixture is skipped with one line
saying why. The session
is local[1] (the tests are small; CI machines have two cores), UTC, and keeps its tables in a
temporary warehouse folder: dbt-spark's `session` method picks up this same session.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _why_not_spark() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed: make test-spark installs the [spark] extra"
    java = shutil.which(
        "java", path=os.path.join(os.environ["JAVA_HOME"], "bin") if "JAVA_HOME" in os.environ else None
    )
    if java is None:
        return "no Java runtime (java on PATH or JAVA_HOME): Spark needs Java 17 or 21"
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"java -version failed: {error}"
    return None


def pytest_collection_modifyitems(config, items):
    """Skip the tests that use the `spark` fixture (directly or through another fixture) when
    there is no Spark here; static tests of this folder still run."""
    needs_spark = [item for item in items if "spark" in getattr(item, "fixturenames", ())]
    if not needs_spark:
        return
    reason = _why_not_spark()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in needs_spark:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[1] SparkSession in UTC, with a temporary warehouse and metastore, stopped at the end."""
    from pyspark.sql import SparkSession

    root = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("nudgeflow-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(root / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={root / 'derby'}")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
