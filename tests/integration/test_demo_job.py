"""`make demo`'s job, end to end through spark-submit.sh on the real services."""

from __future__ import annotations

import pytest

from tests.integration.helpers import run_job

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_flow_and_is_safe_to_rerun(lakefs_repo):
    first = run_job("demo", "--repository", lakefs_repo.repository, "--users", "400")
    assert first.returncode == 0, first.output[-3000:]
    assert "split version v1_stratified_80_10_10 on main" in first.output
    assert "storage: split index" in first.output
    assert "fingerprint" in first.output
    commit = lakefs_repo.get_commit("main")
    assert commit.metadata["mlv.kind"] == "training_set"
    paths = {path for path, _ in lakefs_repo.objects("main", "training_sets/fraud_model_v1_train/")}
    assert "training_sets/fraud_model_v1_train/_mlv_training_set.json" in paths
    assert any(path.endswith(".parquet") for path in paths)
    assert any(path.startswith("ml_datasets/splits/") for path, _ in lakefs_repo.objects("main", "ml_datasets/"))

    again = run_job("demo", "--repository", lakefs_repo.repository, "--users", "400")
    assert again.returncode == 0, again.output[-3000:]
    assert "already exists: no-op" in again.output
