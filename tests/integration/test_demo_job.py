"""`make demo`'s job, end to end through spark-submit.sh on the real services."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import run_job

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_flow_and_is_safe_to_rerun(lakefs_repo):
    lk = lakefs_repo
    first = run_job("demo", "--repository", lk.repository, "--users", "300", "--days", "30")
    assert first.returncode == 0, first.output[-3000:]
    assert lk.protected_branches() == ["main"]
    assert set(lk.branches()) == {"main"}, "experiment branches are deleted after their merge"
    tags = lk.tags()
    assert {"feature-eng-v1", "feature-eng-v2", "raw-300u-30d"} <= set(tags)
    # each tag is the merge commit of its experiment; v2 (log1p amounts) came after v1
    v1, v2 = lk.get_commit(tags["feature-eng-v1"]), lk.get_commit(tags["feature-eng-v2"])
    assert v1.metadata["mlv.lifecycle"] == v2.metadata["mlv.lifecycle"] == "merge"
    assert v2.parents[0] == tags["feature-eng-v1"]
    assert json.loads(lk.get_commit(v2.parents[1]).metadata["params"]) == {"amount_transform": "log1p"}
    assert "split version v1_stratified_80_10_10" in first.output and "storage: split index" in first.output
    manifest = json.loads(lk.read_object("main", "training_sets/fraud_model_train/_mlv_training_set.json"))
    assert manifest["feast_feature_service"] == "fraud_model" and manifest["row_count"] > 0
    assert "no experiment branches left" in first.output

    again = run_job("demo", "--repository", lk.repository, "--users", "300", "--days", "30")
    assert again.returncode == 0, again.output[-3000:]
    assert "already exists: no-op" in again.output  # the split version is reused
    assert {"feature-eng-v3", "feature-eng-v4"} <= set(lk.tags())  # new experiments
    assert lk.tags()["raw-300u-30d"] == tags["raw-300u-30d"]  # the raw data was not ingested again
    assert set(lk.branches()) == {"main"}
