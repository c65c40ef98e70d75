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
