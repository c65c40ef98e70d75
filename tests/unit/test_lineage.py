"""The lineage record: its MLflow params and Feast tags, its limits, its card."""

from __future__ import annotations

import re

import pytest

from mlv_spark.errors import InvalidInputError
from mlv_spark.lineage.card import render_card
from mlv_spark.lineage.record import DataLineage, SourceTable, SplitLineage, digest
from mlv_spark.lineage.tree import render_tree

COMMIT = "a" * 64


def lineage(**overrides) -> DataLineage:
    base = dict(
        lakefs_repository="ml-data", lakefs_ref="feature-eng-v2", lakefs_commit=COMMIT, lakefs_tag="feature-eng-v2",
        split_version="v1_stratified_80_10_10", split_seed=42, split_params_hash="0123456789abcdef",
        feast_project="fraud_demo", feast_repo_path="examples/feature_repo", feast_repo_commit="b" * 40,
        feast_repo_dirty=False, feast_feature_service="fraud_model",
        feature_refs=("user_txn_stats:txn_count_7d", "merchant_risk:merchant_fraud_rate"),
        feature_views=("user_txn_stats", "merchant_risk"), entity_columns=("txn_id", "event_timestamp"),
        label_columns=("is_fraud",), splits={"train": SplitLineage("c" * 64, 800), "val": SplitLineage("d" * 64, 100)},
        feature_schema_hash="fedcba9876543210",
        source_tables=(SourceTable("features.user_txn_stats", "iceberg", iceberg_snapshot_id=17),
                       SourceTable("features.merchant_risk", "delta", delta_version=3)),
        code_commit="e" * 40, versions={"spark": "4.0.1", "feast": "0.67.0"})
    return DataLineage(**{**base, **overrides})


def test_params_read_as_the_seed_quick_reference_reads_them():
    params = lineage().to_params()
    for key, value in {"data/lakefs_commit": COMMIT, "data/lakefs_ref": "feature-eng-v2", "data/lakefs_tag": "feature-eng-v2",
                       "data/split_version": "v1_stratified_80_10_10", "data/split_seed": "42",
                       "data/feast_repo_commit": "b" * 40, "data/feast_feature_service": "fraud_model",
                       "data/train_samples": "800", "data/val_samples": "100", "data/test_samples": "0",
                       "data/feature_schema_hash": "fedcba9876543210", "data/label_columns": "is_fraud",
                       "data/fingerprint.train": "c" * 64, "data/version.spark": "4.0.1"}.items():
        assert params[key] == value, key
    assert all(key.startswith("data/") for key in params)


def test_feast_tags_are_those_of_feasts_mlflow_integration():
    tags = lineage().feast_tags()
    assert tags == {
        "feast.project": "fraud_demo", "feast.retrieval_type": "historical", "feast.feature_service": "fraud_model",
        "feast.feature_views": "merchant_risk,user_txn_stats",
        "feast.feature_refs": "user_txn_stats:txn_count_7d,merchant_risk:merchant_fraud_rate",
        "feast.entity_count": "900", "feast.feature_count": "2", "feast.repo_git_commit": "b" * 40}


def test_values_past_mlflows_limits_are_cut_with_a_pointer_to_the_record():
    refs = tuple(f"view_{i}:feature_with_a_long_name_{i}" for i in range(400))
    long = lineage(feature_refs=refs)
    params, tags = long.to_params(), long.feast_tags()
    assert len(params["data/feature_refs"]) == 6000 and params["data/feature_refs"].endswith("lineage/lineage.json)")
    assert len(tags["feast.feature_refs"]) == 8000
    assert DataLineage.from_dict(long.to_dict()) == long  # the record keeps everything
    assert len(digest("f" * 64)) <= 36


def test_a_lineage_naming_a_branch_without_a_commit_is_refused():
    with pytest.raises(InvalidInputError, match="lakeFS ref 'main' with commit 'main', which is not a commit id"):
        lineage(lakefs_ref="main", lakefs_commit="main").validate()
    with pytest.raises(InvalidInputError, match="without any split"):
        lineage(splits={}).validate()
    assert lineage().validate() == lineage()


def test_the_record_round_trips_through_json():
    original = lineage()
    assert DataLineage.from_dict(original.to_dict()) == original


def test_the_card_pictures_the_chain_and_is_self_contained():
    html = render_card(lineage(), run_id="r123", experiment="mlv-spark", model="fraud-detector", model_version="7",
                       alias="champion")
    chain = ["model fraud-detector version 7 (@champion)", "MLflow run r123", "lakeFS ml-data @ feature-eng-v2",
             "split version v1_stratified_80_10_10", "Feast fraud_model", "source tables"]
    positions = [html.index(text) for text in chain]
    assert positions == sorted(positions), "the boxes follow the chain"
    assert "<svg" in html and COMMIT in html and "c" * 64 in html
    assert not re.search(r"<script|src=\"http|href=\"http", html), "no scripts and no external resources"
    assert "model: not registered yet" in render_card(lineage(), run_id="r1")


def test_the_tree_names_every_level():
    text = render_tree(lineage(), "model fraud-detector version 7")
    for expected in ("lakeFS ml-data @ feature-eng-v2 (tag feature-eng-v2)", COMMIT, "train: 800 rows",
                     "user_txn_stats: txn_count_7d", "features.merchant_risk (delta, version 3)", "labels: is_fraud"):
        assert expected in text


def _git(cwd, *args) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_reproduction_reads_the_feature_repo_at_the_logged_commit_without_touching_the_checkout(tmp_path):
    from mlv_spark.workflows.reproduce import feature_repo_at

    code = tmp_path / "code"
    (code / "repo").mkdir(parents=True)
    _git(code, "init", "-q")
    (code / "repo" / "features.py").write_text("TTL = 1\n")
    _git(code, "add", ".")
    _git(code, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    logged = _git(code, "rev-parse", "HEAD")
    (code / "repo" / "features.py").write_text("TTL = 2\n")  # today's definitions differ

    with feature_repo_at(lineage(feast_repo_path="repo", feast_repo_commit=logged), code) as (repo, found, _):
        assert found == [] and (repo / "features.py").read_text() == "TTL = 1\n"
        exported = repo
    assert not exported.exists(), "the exported tree is removed afterwards"
    assert _git(code, "worktree", "list").count("\n") == 0, "no worktree is left in the repository"

    with feature_repo_at(lineage(feast_repo_path="gone", feast_repo_commit=logged), code) as (repo, found, _):
        assert repo is None and [d.kind for d in found] == ["changed definitions"]
        assert "'gone' cannot be read at Git commit" in found[0].detail


def test_split_names_mlflow_would_refuse_in_a_key_are_made_safe_and_kept_in_the_record():
    record = lineage(splits={"hold-out:2026": SplitLineage("c" * 64, 5)})
    assert record.to_params()["data/fingerprint.hold-out_2026"] == "c" * 64
    assert list(DataLineage.from_dict(record.to_dict()).splits) == ["hold-out:2026"]


def test_a_tracking_uri_is_printed_without_the_credentials_written_into_it():
    from mlv_spark.lineage.mlflow import run_url, shown_uri

    assert shown_uri("https://me:s3cret@mlflow.example.com/") == "https://***@mlflow.example.com/"
    assert shown_uri("http://127.0.0.1:25000") == "http://127.0.0.1:25000"
    assert "s3cret" not in run_url("https://me:s3cret@mlflow.example.com", "1", "abc")


def test_only_an_object_of_the_logged_commit_gone_from_storage_is_missing_data():
    from mlv_spark.workflows.reproduce import _gone

    commit = "a" * 64
    removed = (f"org.apache.spark.SparkException: Job aborted\nCaused by: java.io.FileNotFoundException: "
               f"s3a://ml-data/{commit}/features/user_txn_stats/data/00000-1.parquet: 410 Gone\n\tat org.apache")
    assert _gone(removed, "ml-data", commit).startswith("FileNotFoundException: s3a://ml-data/" + commit)
    assert _gone("java.io.FileNotFoundException: /tmp/spark-1/blockmgr/shuffle_0.data", "ml-data", commit) is None
    assert _gone(f"FileNotFoundException: s3a://ml-data/main/features/x.parquet", "ml-data", commit) is None
