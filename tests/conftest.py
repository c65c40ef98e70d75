"""Test fixtures shared by unit and integration tests.

One Spark session per pytest process (a JVM cannot be re-created with another class path),
built by the project's own session builder. Unit tests need no service and never contact one;
the integration tests' conftest points the settings at real lakeFS and MLflow servers before
any session is built. A missing jar, binary or service fails the test with the fix in the
message; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from mlv_spark.config import Settings, imported_spark_line, load_settings
from mlv_spark.errors import ServiceUnavailableError
from mlv_spark.jvm import SCANS_JAR

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The profile under test: local, or local-s3 (lakeFS on S3 storage: `make test-s3`); never a
#: cluster profile a developer's shell may have in MLV_PROFILE.
TEST_PROFILE = os.environ.get("MLV_TEST_PROFILE") or "local"
if TEST_PROFILE not in ("local", "local-s3"):
    raise SystemExit(f"error: MLV_TEST_PROFILE is {TEST_PROFILE!r}: the tests run on local or local-s3")
os.environ["MLV_PROFILE"] = TEST_PROFILE
# The Spark line of this venv's PySpark, for the jobs the tests start (spark-submit.sh picks the venv by it)
os.environ.setdefault("MLV_SPARK_LINE", imported_spark_line())


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(TEST_PROFILE)


@pytest.fixture(scope="session")
def spark(settings: Settings):
    """local[2], UTC, 4 shuffle partitions; with the project's jars and catalogs when bootstrapped."""
    from mlv_spark.session import build_session

    extra = {
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "3g",
        "spark.ui.enabled": "false",
        "spark.sql.adaptive.enabled": "true",
        # the JVM scans (the point-in-time join's carry-forward, the exact splits' histogram),
        # never a silent fallback to the window or to Spark's aggregation
        "spark.mlv.pit.carry": "jvm",
        "spark.mlv.splits.histogram": "jvm",
    }
    try:
        session = build_session(settings, "mlv-spark-tests", extra)
    except ServiceUnavailableError:
        # Unit tests need no jars; the integration fixtures insist on them.
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
        builder = SparkSession.builder.master("local[2]").appName("mlv-spark-unit")
        scans_jar = settings.jar_dir / SCANS_JAR  # `make unit` builds it: the scans are tested
        if scans_jar.is_file():
            builder = builder.config("spark.driver.extraClassPath", str(scans_jar))
        for key, value in {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "true", **extra}.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture()
def spark_job_statuses(spark):
    """Runs a callable in a Spark job group of its own; returns its result and the final status
    ("SUCCEEDED", "FAILED", ...) of every Spark job it started."""

    def run(action):
        sc = spark.sparkContext
        group = f"test-{uuid.uuid4().hex[:12]}"
        sc.setJobGroup(group, "jobs of one test action")
        try:
            result = action()
        finally:
            for key in ("spark.jobGroup.id", "spark.job.description"):
                sc.setLocalProperty(key, None)  # type: ignore[arg-type]  # None removes it
        # The status tracker is fed by the asynchronous listener bus: an action can return
        # before its job-end event is processed (the job would still read RUNNING). Drain it.
        sc._jsc.sc().listenerBus().waitUntilEmpty()
        tracker = sc.statusTracker()
        return result, [tracker.getJobInfo(job).status for job in tracker.getJobIdsForGroup(group)]

    return run
