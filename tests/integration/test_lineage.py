"""Train → promote → lineage → reproduce through spark-submit.sh on real lakeFS, MLflow and Spark:
the lineage in the run and on the model version, MLflow datasets with our digests, promotion at
the exact commit, reproduction proven identical — and refused, naming what differs, after a
definition changed, a tag moved, or the split rows changed; no credential anywhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SplitVersion
from mlv_spark.workflows.feature_pipeline import plan_pipeline, run_pipeline
from mlv_spark.workflows.split_version import compute_split_version

from tests.integration.helpers import REPO_ROOT, features, ingest, run_job, state

pytestmark = pytest.mark.integration


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def feature_git(tmp_path):
    """The demo's Feast repo in a Git repository of its own: commit A (used for training), then B,
    where the feature service lost a view (a changed definition)."""
    root = tmp_path / "features-git"
    shutil.copytree(REPO_ROOT / "examples" / "feature_repo", root / "feature_repo")
    git(root.parent, "init", "-q", str(root))
    for key, value in (("user.email", "t@example.com"), ("user.name", "test")):
        git(root, "config", key, value)
    git(root, "add", ".")
    git(root, "commit", "-qm", "A")
    first = git(root, "rev-parse", "HEAD")
    definitions = root / "feature_repo" / "features.py"
    definitions.write_text(definitions.read_text().replace(
        "features=[user_txn_stats, merchant_risk, txn_details]", "features=[user_txn_stats, merchant_risk]"))
    git(root, "commit", "-qam", "B: the service loses txn_details")
    second = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", first)
    return root / "feature_repo", first, second


def one_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_promote_reproduce_and_what_breaks_reproduction(spark, settings, lakefs_repo, feature_git):
    lk = lakefs_repo
    MODEL = f"fraud-detector-{lk.repository}"  # MLflow's registry is shared by every test repository
    repo_dir, commit_a, commit_b = feature_git
    tables = ingest(spark, settings, lk)
    loaded = features(settings)
    run_pipeline(spark, tables, lk, loaded, plan_pipeline(lk, loaded, catalog="lakefs-iceberg", experiment="fe",
                                                          merge_into="main", tag="feature-eng-v1", delete_branch=True))
    params = SplitParams.of(entity_key="txn_id", group_by="user_id", stratify_by="is_fraud", seed=7,
                            ratios={"train": 0.8, "val": 0.2}, time_column="event_timestamp")
    compute_split_version(spark, tables, lk, SplitVersion("v1", "features.transaction_labels", "main", params),
                          merge_into="main", delete_branch=True)
    data_commit = lk.resolve("main")
    tracking = MlflowClient(settings.mlflow.tracking_uri)
    outputs = []

    def job(name: str, *args: str, env=None):
        result = run_job(name, *args, env=env)
        outputs.append(result.output)
        return result

    trained = job("train", "--repository", lk.repository, "--feature-repo", str(repo_dir), "--feature-service",
                  "fraud_model", "--ref", "main", "--split-version", "v1", "--label", "is_fraud",
                  "--model-name", MODEL, "--experiment", f"test-{lk.repository}")
    assert trained.returncode == 0, trained.output[-3000:]
    summary = one_json(trained)
    run_id = summary["run_id"]
    assert summary["metrics"]["val_auc"] > 0.65, "the planted signal is learned"

    # the run: params as the seed reads them, Feast's tags, one dataset per split with our digest, artifacts
    run = tracking.get_run(run_id)
    p = run.data.params
    assert p["data/lakefs_commit"] == data_commit and p["data/lakefs_ref"] == "main"
    assert p["data/split_version"] == "v1" and p["data/split_seed"] == "7"
    assert p["data/feast_repo_commit"] == commit_a and p["data/feast_feature_service"] == "fraud_model"
    assert int(p["data/train_samples"]) == summary["splits"]["train"]["rows"] > 0
    assert int(p["data/val_samples"]) == summary["splits"]["val"]["rows"] > 0
    assert p["data/label_columns"] == "is_fraud" and len(p["data/feature_schema_hash"]) == 16
    assert run.data.tags["feast.feature_service"] == "fraud_model" and run.data.tags["feast.retrieval_type"] == "historical"
    assert run.data.tags["feast.repo_git_commit"] == commit_a
    assert set(run.data.tags["feast.feature_views"].split(",")) == {"user_txn_stats", "merchant_risk", "txn_details"}
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    assert inputs["training"].digest == summary["splits"]["train"]["fingerprint"][:32]
    assert inputs["validation"].digest == summary["splits"]["val"]["fingerprint"][:32]
    assert data_commit in inputs["training"].source
    artifacts = {a.path for a in tracking.list_artifacts(run_id)} | {a.path for a in tracking.list_artifacts(run_id, "lineage")}
    assert {"lineage/lineage.json", "lineage/lineage_card.html", "feast_features.json", "model"} <= artifacts

    # promotion: the tag at the exact commit, even after main moved on; the lineage on the model version
    log1p = features(settings, "log1p")
    run_pipeline(spark, tables, lk, log1p, plan_pipeline(lk, log1p, catalog="lakefs-iceberg", experiment="fe2",
                                                         merge_into="main", delete_branch=True))
    assert lk.resolve("main") != data_commit
    promoted = job("promote", "--run-id", run_id, "--tag", "model-test-1-data", "--model-name", MODEL, "--alias", "champion")
    assert promoted.returncode == 0, promoted.output[-3000:]
    promotion = one_json(promoted)
    assert lk.resolve("model-test-1-data") == data_commit and promotion["registered"] and promotion["tagged"]
    version = tracking.get_model_version_by_alias(MODEL, "champion")
    assert version.version == promotion["version"] and version.run_id == run_id
    for key in ("data/lakefs_commit", "data/split_version", "data/feast_repo_commit", "data/feast_feature_service",
                "data/train_samples", "data/feature_schema_hash"):
        assert version.tags[key] == p[key], key
    assert version.tags["data/lakefs_tag"] == "model-test-1-data" and "mlv.lineage" in version.tags
    with tempfile.TemporaryDirectory() as folder:  # the card links the lakeFS UI page of the run's repository
        card = Path(tracking.download_artifacts(run_id, "lineage/lineage_card.html", folder)).read_text()
    assert f"/repositories/{lk.repository}/objects?ref=model-test-1-data" in card and "{repo}" not in card
    again = job("promote", "--run-id", run_id, "--tag", "model-test-1-data", "--model-name", MODEL, "--alias", "champion")
    assert again.returncode == 0 and not one_json(again)["registered"] and not one_json(again)["tagged"]
    assert len(tracking.search_model_versions(f"name = '{MODEL}'")) == 1, "promoting the same run twice is a no-op"

    tree = job("lineage", "--model-name", MODEL, "--alias", "champion")
    assert tree.returncode == 0 and data_commit in tree.stdout and "split version v1 (seed 7" in tree.stdout

    reproduced = job("reproduce", "--model-name", MODEL, "--alias", "champion")
    assert reproduced.returncode == 0, reproduced.output[-3000:]
    assert "REPRODUCED: identical" in reproduced.stdout and one_json(reproduced)["reproducible"] is True

    # (a) the lineage edited to point at a later Feast commit, where the service changed
    lineage = json.loads(version.tags["mlv.lineage"])
    tracking.set_model_version_tag(MODEL, version.version, "mlv.lineage", json.dumps({**lineage, "feast_repo_commit": commit_b}))
    changed = job("reproduce", "--model-name", MODEL, "--alias", "champion")
    assert changed.returncode == 3, changed.output[-3000:]
    assert "changed definitions" in changed.stdout and "txn_details" in changed.stdout
    tracking.set_model_version_tag(MODEL, version.version, "mlv.lineage", json.dumps(lineage))

    # (b) the tag deleted and created again elsewhere
    lk.delete_tag("model-test-1-data")
    lk.tag("model-test-1-data", "main")
    moved = job("reproduce", "--model-name", MODEL, "--version", version.version)
    assert moved.returncode == 3 and "moved tag: tag 'model-test-1-data' now points to" in moved.stdout
    lk.delete_tag("model-test-1-data")
    lk.tag("model-test-1-data", data_commit)

    # (c) the split version's rows changed at another commit, and the lineage pointed there
    lk.create_branch("exp-tamper", data_commit)
    spark.sql(f"UPDATE {tables.catalog.name}.`exp-tamper`.ml_datasets.splits SET split = 'val' "
              f"WHERE split_version = 'v1' AND split = 'train' AND entity_key IN "
              f"(SELECT entity_key FROM {tables.catalog.name}.`exp-tamper`.ml_datasets.splits "
              f"WHERE split_version = 'v1' AND split = 'train' ORDER BY entity_key LIMIT 5)")
    tampered = lk.commit("exp-tamper", "five rows of v1 moved from train to val")
    lk.tag("tampered", tampered)
    tracking.set_model_version_tag(MODEL, version.version, "mlv.lineage",
                                   json.dumps({**lineage, "lakefs_commit": tampered, "lakefs_tag": "tampered"}))
    tracking.set_model_version_tag(MODEL, version.version, "data/lakefs_tag", "tampered")
    rows = job("reproduce", "--model-name", MODEL, "--alias", "champion")
    assert rows.returncode == 3, rows.output[-3000:]
    assert "different rows [train]:" in rows.stdout and "(-5)" in rows.stdout
    assert "different rows [val]:" in rows.stdout and "(+5)" in rows.stdout

    # a run that never finished (its lineage logged, the training cut off): not promotable
    unfinished = tracking.create_run(run.info.experiment_id, tags={"mlv.kind": "training"}).info.run_id
    with tempfile.TemporaryDirectory() as folder:
        tracking.log_artifact(unfinished, tracking.download_artifacts(run_id, "lineage/lineage.json", folder), "lineage")

    # bad input: one error line, exit 2, nothing changed in lakeFS or MLflow
    before = (state(lk), len(tracking.search_model_versions(f"name = '{MODEL}'")),
              len(tracking.search_runs([run.info.experiment_id])))
    for name, args, message in (
        ("promote", ["--run-id", "0" * 32, "--tag", "t-x", "--model-name", MODEL], "not found"),
        ("promote", ["--run-id", unfinished, "--tag", "t-x", "--model-name", MODEL], "is RUNNING, not FINISHED"),
        ("promote", ["--run-id", run_id, "--tag", "feature-eng-v1", "--model-name", MODEL], "tags are never moved"),
        ("promote", ["--run-id", run_id, "--tag", "a/b", "--model-name", MODEL], "invalid tag name 'a/b'"),
        ("promote", ["--run-id", run_id, "--tag", "t-y", "--model-name", MODEL, "--alias", "v3"], "--alias 'v3'"),
        ("reproduce", ["--model-name", "no-such-model", "--version", "1"], "registered model 'no-such-model' has no version 1"),
        ("lineage", ["--model-name", MODEL, "--alias", "nope"], "has no alias 'nope'"),
        ("train", ["--repository", lk.repository, "--feature-repo", str(repo_dir), "--feature-service", "fraud_model",
                   "--ref", "main", "--split-version", "v1", "--label", "no_such_label"], "['no_such_label'] are not in"),
        ("train", ["--repository", lk.repository, "--feature-repo", str(repo_dir), "--feature-service", "fraud_model",
                   "--ref", "main", "--split-version", "v1"], "exactly one --label"),
    ):
        result = job(name, *args)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1 and message in errors[0], (name, args, result.output[-2000:])
        assert "Traceback" not in result.output
    assert before == (state(lk), len(tracking.search_model_versions(f"name = '{MODEL}'")),
                      len(tracking.search_runs([run.info.experiment_id])))

    # no credential anywhere: job output, run params/tags/artifacts, model version tags, lakeFS commit metadata
    secret = settings.lakefs.secret_access_key
    assert secret and len(secret) > 8
    texts = list(outputs)
    texts += [json.dumps(tracking.get_run(run_id).data.to_dictionary())]
    texts += [json.dumps(dict(v.tags)) for v in tracking.search_model_versions(f"name = '{MODEL}'")]
    with tempfile.TemporaryDirectory() as folder:
        local = Path(tracking.download_artifacts(run_id, "", folder))
        texts += [f.read_text(errors="replace") for f in local.rglob("*") if f.is_file()]
    texts += [json.dumps(c.metadata) + c.message for c in lk.log("main", limit=200)]
    assert not [t for t in texts if secret in t]
