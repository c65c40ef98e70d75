"""Test fixtures shared by unit and integration tests.

One Spark session per pytest process (a JVM cannot be re-created with another class path),
built by the project's own session builder. Integration tests additionally get real lakeFS
and MLflow servers: the ones configured in the local profile when they are already up
(`make services-up`), otherwise a private pair on free ports in a temporary run directory,
stopped at the end. A missing service, jar or binary fails the test with the fix in the
message; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from mlv_spark.config import Settings, load_settings
from mlv_spark.errors import ServiceUnavailableError
from mlv_spark.jvm import SCANS_JAR
from mlv_spark.services import LocalServices, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


def _plan_services() -> tuple[bool, Path | None]:
    """Point MLV_* at services to use; returns (started_by_us, private run dir)."""
    configured = LocalServices(load_settings("local"))
    if configured.lakefs_healthy() and configured.mlflow_healthy():
        os.environ["MLV_MLFLOW_TRACKING_URI"] = configured.mlflow_url
        return False, None
    run_dir = Path(tempfile.mkdtemp(prefix="mlv-test-services-"))
    os.environ.update({
        "MLV_SERVICES_RUN_DIR": str(run_dir),
        "MLV_SERVICES_LAKEFS_PORT": str(free_port()),
        "MLV_SERVICES_MLFLOW_PORT": str(free_port()),
    })
    settings = load_settings("local")
    os.environ["MLV_MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{settings.services.mlflow_port}"
    return True, run_dir


os.environ["MLV_PROFILE"] = "local"
_STARTED_BY_US, _PRIVATE_RUN_DIR = _plan_services()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings("local")


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
        # Unit tests need no jars; integration fixtures below insist on them.
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
        builder = SparkSession.builder.master("local[2]").appName("mlv-spark-unit")
        scans_jar = settings.jar_dir / SCANS_JAR  # `make unit` builds it: the scans are tested
        if scans_jar.is_file():
            builder = builder.config("spark.driver.extraClassPath", str(scans_jar))
        for key, value in {"spark.sql.session.timeZone": "UTC", **extra}.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def services(settings: Settings):
    """Real lakeFS + MLflow, healthy before any integration test runs."""
    from mlv_spark.jvm import local_jars

    local_jars(settings)  # fails with "run make bootstrap" when the jar cache is incomplete
    local = LocalServices(settings)
    endpoints = local.up()
    yield endpoints
    if _STARTED_BY_US:
        local.down()
        if _PRIVATE_RUN_DIR is not None:
            shutil.rmtree(_PRIVATE_RUN_DIR, ignore_errors=True)


@pytest.fixture()
def lakefs_repo(settings: Settings, services):
    """A fresh lakeFS repository for one test (unique name: parallel sessions never collide)."""
    from mlv_spark.lakefs import LakeFS

    name = f"t-{uuid.uuid4().hex[:12]}"
    lk = LakeFS(settings.lakefs, name)
    lk.ensure_repository()
    yield lk
    lk.delete_repository()


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
