"""`make demo`'s job, end to end through spark-submit.sh on the real services."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.helpers import run_job
from tests.integration.ui import check_uis

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_flow_and_is_safe_to_rerun(settings, lakefs_repo, tmp_path):
    lk = lakefs_repo
    model = f"fraud-detector-{lk.repository}"
    first = run_job("demo", "--repository", lk.repository, "--users", "300", "--days", "30", "--model-name", model)
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
    assert "split version txn_v1_stratified_80_10_10" in first.output and "storage: split index" in first.output
    assert "no experiment branches left" in first.output
    # trained, promoted at the exact commit, and reproduced from the model version alone
    assert "training data REPRODUCED: identical" in first.output
    tracking = MlflowClient(settings.mlflow.tracking_uri)
    champion = tracking.get_model_version_by_alias(model, "champion")
    tag = champion.tags["data/lakefs_tag"]
    assert lk.resolve(tag) == champion.tags["data/lakefs_commit"] == tracking.get_run(champion.run_id).data.params["data/lakefs_commit"]
    assert f"lakeFS tag {tag}" in first.output and champion.run_id in first.output
    # both web UIs, in a real browser: the run's lineage params and card, the commit and the tag in lakeFS
    run = tracking.get_run(champion.run_id)
    run_url = f"{settings.mlflow.tracking_uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert run_url in first.output
    commit = champion.tags["data/lakefs_commit"]
    check_uis(mlflow_run_url=run_url, expect_params={"data/lakefs_commit": commit, "data/lakefs_repository": lk.repository,
                                                     "data/split_version": "txn_v1_stratified_80_10_10"},
              expect_tags={"feast.feature_service": "fraud_model"}, lakefs_url=settings.lakefs.endpoint,
              repository=lk.repository, commit=commit, tag=tag, out_dir=tmp_path / "screenshots")

    again = run_job("demo", "--repository", lk.repository, "--users", "300", "--days", "30", "--model-name", model)
    assert again.returncode == 0, again.output[-3000:]
    assert "already exists: no-op" in again.output  # the split version is reused
    assert {"feature-eng-v3", "feature-eng-v4"} <= set(lk.tags())  # new experiments
    assert lk.tags()["raw-300u-30d"] == tags["raw-300u-30d"]  # the raw data was not ingested again
    assert set(lk.branches()) == {"main"}
    rerun_champion = tracking.get_model_version_by_alias(model, "champion")
    assert int(rerun_champion.version) == int(champion.version) + 1  # a new model version
    assert rerun_champion.tags["data/lakefs_tag"] != tag and lk.resolve(tag) == champion.tags["data/lakefs_commit"]

    # no credential anywhere in a full demo: its output, the runs and their artifacts, the model
    # versions, lakeFS commit metadata
    secret = settings.lakefs.secret_access_key
    texts = [first.output, again.output]
    for version in tracking.search_model_versions(f"name = '{model}'"):
        texts.append(json.dumps(dict(version.tags)))
        texts.append(json.dumps(tracking.get_run(version.run_id).data.to_dictionary()))
        with tempfile.TemporaryDirectory() as folder:
            local = Path(tracking.download_artifacts(version.run_id, "", folder))
            texts += [f.read_text(errors="replace") for f in local.rglob("*") if f.is_file()]
    texts += [json.dumps(c.metadata) + c.message for c in lk.log("main", limit=500)]
    assert secret and not [t for t in texts if secret in t]
