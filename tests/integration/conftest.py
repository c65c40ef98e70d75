"""Integration fixtures: real lakeFS and MLflow servers, and a fresh lakeFS repository per test.

The services are the ones configured in the local profile when they are already up (`make
services-up`); otherwise a private pair on free ports in a temporary run directory, stopped at
the end. This module points the MLV_* settings at them when pytest collects it, before the
shared Spark session is built (its S3 gateway settings come from the same settings).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from mlv_spark.config import Settings, load_settings
from mlv_spark.devstack import LocalServices, free_port
from tests.conftest import TEST_PROFILE


def _plan_services() -> tuple[bool, Path | None]:
    """Point MLV_* at services to use; returns (started_by_us, private run dir)."""
    configured = LocalServices(load_settings(TEST_PROFILE))
    if configured.lakefs_healthy() and configured.mlflow_healthy() and configured.blockstore_healthy():
        os.environ["MLV_MLFLOW_TRACKING_URI"] = configured.mlflow_url
        return False, None
    run_dir = Path(tempfile.mkdtemp(prefix="mlv-test-services-"))
    os.environ.update({
        "MLV_SERVICES_RUN_DIR": str(run_dir),
        "MLV_SERVICES_LAKEFS_PORT": str(free_port()),
        "MLV_SERVICES_MLFLOW_PORT": str(free_port()),
        "MLV_SERVICES_S3_PORT": str(free_port()),
    })
    settings = load_settings(TEST_PROFILE)
    os.environ["MLV_MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{settings.services.mlflow_port}"
    return True, run_dir


_STARTED_BY_US, _PRIVATE_RUN_DIR = _plan_services()


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


