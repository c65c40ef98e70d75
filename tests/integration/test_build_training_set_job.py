"""The training-set job end to end: split index + Feast definitions (SparkSource tables resolved
through our lakeFS catalog) at a pinned commit, written with a fingerprint; and a FileSource
written by pandas, read from lakeFS at a pinned commit."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta

import pytest
from chispa import assert_df_equality

from mlv_spark.catalogs import Tables, profile_catalog
from mlv_spark.errors import FeatureDefinitionError, InvalidInputError, SplitVersionError
from mlv_spark.fingerprint import content_fingerprint
from mlv_spark.lakefs import pin_path
from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SplitVersion
from mlv_spark.training import get_historical_features
from mlv_spark.workflows.registry import SplitRegistry
from mlv_spark.workflows.split_version import compute_split_version
from mlv_spark.workflows.training_set import TrainingSetRequest, build_training_set

from tests.integration.helpers import run_job

pytestmark = pytest.mark.integration
T0 = datetime(2024, 3, 1)

FEATURE_REPO = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"])
user_stats_source = SparkSource(name="user_stats_source", table="features.user_stats",
                                timestamp_field="event_timestamp", created_timestamp_column="created")
user_stats = FeatureView(name="user_stats", entities=[user], ttl=timedelta(days=10),
                         schema=[Field(name="spend_7d", dtype=Float64), Field(name="n_txn", dtype=Int64)],
                         source=user_stats_source)
fraud_model = FeatureService(name="fraud_model", features=[user_stats])
"""


@pytest.fixture()
def stack(spark, settings, lakefs_repo, tmp_path):
    """Entities, features and a split version committed on main, and a Feast repo on disk."""
    entities = spark.createDataFrame(
        [(u, T0 + timedelta(days=5 + u % 7), u % 4 == 0) for u in range(120)],
        "user_id long, event_timestamp timestamp, label boolean")
    features = spark.createDataFrame(
        [(u, T0 + timedelta(days=d), T0 + timedelta(days=d, minutes=1), float(u * 100 + d), u + d)
         for u in range(0, 120, 2) for d in range(0, 14, 3)],
        "user_id long, event_timestamp timestamp, created timestamp, spend_7d double, n_txn long")
    catalog = profile_catalog(settings, "lakefs", lakefs_repo.repository).activate(spark)
    tables = Tables(spark, catalog, lakefs_repo)
    tables.write(entities, "features.labels", "main")
    tables.write(features, "features.user_stats", "main")
    lakefs_repo.commit("main", "entities and features")
    params = SplitParams.of(entity_key="user_id", time_column="event_timestamp",
                            ratios={"train": 0.7, "val": 0.15, "test": 0.15}, seed=3, stratify_by="label")
    compute_split_version(spark, tables, lakefs_repo, SplitVersion("v1", "features.labels", "main", params),
                          merge_into="main", delete_branch=True)
    repo_dir = tmp_path / "feature_repo"
    repo_dir.mkdir()
    (repo_dir / "feature_store.yaml").write_text(textwrap.dedent("""\
        project: fraud
        registry: data/registry.db
        provider: local
        offline_store:
          type: spark
        entity_key_serialization_version: 3
        """))
    (repo_dir / "features.py").write_text(FEATURE_REPO)
    return tables, repo_dir


def request(repo_dir, ref: str, *, features="fraud_model", split_version="v1", splits=("train", "val"),
            labels=()) -> TrainingSetRequest:
    return TrainingSetRequest(repo_dir, features, ref, split_version, tuple(splits), tuple(labels))


def test_training_set_job_is_pinned_filtered_and_fingerprinted(spark, stack, tmp_path):
    tables, repo_dir = stack
    lk = tables.lakefs
    commit = lk.resolve("main")
    result = run_job("build_training_set", "--repository", lk.repository, "--feature-repo", str(repo_dir),
                     "--feature-service", "fraud_model", "--ref", "main", "--split-version", "v1",
                     "--splits", "train,val", "--label", "label", "--output", f"lakefs://{lk.repository}/main/training_sets/fraud")
    assert result.returncode == 0, result.output[-3000:]
    for noise in ("SLF4J", "StaticLoggerBinder", "alpha development", "Using Spark's default log4j profile",
                  "NativeCodeLoader", "resolves to a loopback address"):
        assert noise not in result.output
    manifest = json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])
    lineage = manifest["lineage"]
    assert lineage["lakefs_commit"] == commit and lineage["lakefs_ref"] == "main"
    assert lineage["feature_refs"] == ["user_stats:spend_7d", "user_stats:n_txn"]
    assert lineage["feast_feature_service"] == "fraud_model" and lineage["label_columns"] == ["label"]
    assert set(lineage["splits"]) == {"train", "val"}
    # the training set reached main through a branch and a merge, which carries the manifest
    assert lk.resolve("main") == manifest["output_commit"] and set(lk.branches()) == {"main"}

    written = spark.read.parquet(f"s3a://{lk.repository}/{manifest['output_commit']}/training_sets/fraud")
    assert content_fingerprint(written).digest == manifest["fingerprint"]
    per_split = content_fingerprint(written, count_by="split")
    assert {s: v["fingerprint"] for s, v in lineage["splits"].items()} == per_split.digests
    entities, _, _ = SplitRegistry(tables, commit).entity_rows("v1", ["train", "val"], ["label"])
    assert written.count() == entities.count() == manifest["row_count"]
    assert written.columns[:4] == ["user_id", "event_timestamp", "split", "label"]
    expected = get_historical_features(
        spark, entities, feature_repo=repo_dir, features="fraud_model",
        table_resolver=lambda name: tables.catalog.table(name, commit).identifier)
    assert_df_equality(written, expected, ignore_row_order=True, ignore_nullable=True)
    stored = json.loads(lk.read_object(manifest["output_commit"], "training_sets/fraud/_mlv_training_set.json"))
    assert stored["fingerprint"] == manifest["fingerprint"]

    # main moves on (new feature rows); the same commit still yields the same training set.
    more = spark.createDataFrame([(0, T0, T0 + timedelta(hours=1), -1.0, -1)],
                                 "user_id long, event_timestamp timestamp, created timestamp, spend_7d double, n_txn long")
    tables.write(more, "features.user_stats", "main", mode="append")
    lk.commit("main", "late correction")
    again = build_training_set(spark, tables, lk, request(repo_dir, commit, labels=("label",)), str(tmp_path / "again"),
                               output_format="delta")
    assert again.fingerprint == manifest["fingerprint"]
    assert (tmp_path / "again" / "_delta_log").is_dir()
    moved = build_training_set(spark, tables, lk, request(repo_dir, "main"), str(tmp_path / "moved"))
    assert moved.lineage.lakefs_commit != commit


def test_bad_requests_are_clear_errors_that_write_nothing(spark, stack, tmp_path):
    tables, repo_dir = stack
    lk = tables.lakefs
    head = lk.resolve("main")
    out = f"lakefs://{lk.repository}/main/ts/x"
    with pytest.raises(FeatureDefinitionError, match="no_such_service"):
        build_training_set(spark, tables, lk, request(repo_dir, "main", features="no_such_service"), out)
    with pytest.raises(SplitVersionError, match="unknown split version 'v9'"):
        build_training_set(spark, tables, lk, request(repo_dir, "main", split_version="v9"), out)
    with pytest.raises(InvalidInputError, match="holdout"):
        build_training_set(spark, tables, lk, request(repo_dir, "main", splits=("holdout",)), out)
    with pytest.raises(InvalidInputError, match=r"column\(s\) \['no_label'\] are not in features.labels"):
        build_training_set(spark, tables, lk, request(repo_dir, "main", labels=("no_label",)), out)
    with pytest.raises(InvalidInputError, match=r"label column\(s\) \['spend_7d'\] are also requested features"):
        build_training_set(spark, tables, lk, request(repo_dir, "main", labels=("spend_7d",)), out)
    for bad, message in ((f"lakefs://{lk.repository}/main/", "is the root of main"),
                         (f"lakefs://{lk.repository}/main/ml_datasets", "overlaps 'ml_datasets'"),
                         (f"s3a://{lk.repository}/main/features/user_stats/x", "overlaps 'features/user_stats'"),
                         (f"lakefs://{lk.repository}/main/features", "overlaps 'features/user_stats'"),
                         ("lakefs://other-repo/main/x", "is in repository 'other-repo'")):
        with pytest.raises(InvalidInputError, match=message):
            build_training_set(spark, tables, lk, request(repo_dir, "main"), bad, overwrite=True)
    assert lk.resolve("main") == head and lk.uncommitted("main") == [] and set(lk.branches()) == {"main"}

    missing_ref = run_job("build_training_set", "--repository", lk.repository, "--feature-repo", str(repo_dir),
                          "--feature-service", "fraud_model", "--ref", "no-such-ref", "--split-version", "v1",
                          "--output", str(tmp_path / "out"))
    assert missing_ref.returncode == 2 and "no-such-ref does not exist" in missing_ref.output
    assert not (tmp_path / "out").exists()


PANDAS_REPO = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
stats = FeatureView(name="stats", entities=[user], ttl=timedelta(days=1), schema=[Field(name="score", dtype=Float64)],
                    source=FileSource(name="stats_source", path="lakefs://{repo}/main/features/stats", timestamp_field="ts"))
"""


def test_a_pandas_written_file_source_in_lakefs_is_read_at_a_commit(spark, spark_job_statuses, lakefs_repo, tmp_path):
    """pandas writes nanosecond timestamps, which Spark refuses to read: the footer is read
    first, over the S3 gateway at the pinned commit, so no Spark job fails, and times compare
    to the nanosecond."""
    import io

    import pandas as pd

    at = pd.Timestamp("2024-03-01", tz="UTC")

    def parquet(rows: dict) -> bytes:
        data = io.BytesIO()
        pd.DataFrame(rows).to_parquet(data)
        return data.getvalue()

    lakefs_repo.put_object("main", "features/stats/part-0.parquet", parquet({
        "user_id": [1, 1, 2],
        "ts": [at - pd.Timedelta(hours=1), at + pd.Timedelta(nanoseconds=500), at - pd.Timedelta(hours=2)],
        "score": [1.0, 2.0, 3.0],
    }))
    commit = lakefs_repo.commit("main", "features written by pandas")
    lakefs_repo.put_object("main", "features/stats/part-1.parquet", parquet({  # after the pinned commit
        "user_id": [2], "ts": [at - pd.Timedelta(minutes=1)], "score": [9.0],
    }))
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    (repo_dir / "feature_store.yaml").write_text(
        "project: pandas\nregistry: registry.db\nprovider: local\nentity_key_serialization_version: 3\n"
    )
    (repo_dir / "definitions.py").write_text(PANDAS_REPO.format(repo=lakefs_repo.repository))
    entity_df = spark.createDataFrame(
        [(1, at.to_pydatetime()), (2, at.to_pydatetime())], "user_id long, event_timestamp timestamp"
    )

    def join_and_collect():
        out = get_historical_features(
            spark, entity_df, feature_repo=repo_dir, features=["stats:score"],
            path_resolver=lambda path: pin_path(path, lakefs_repo.repository, commit),
        )
        return out, out.collect()

    (out, rows), statuses = spark_job_statuses(join_and_collect)
    assert statuses and set(statuses) == {"SUCCEEDED"}
    expected = spark.createDataFrame(
        [(1, at.to_pydatetime(), 1.0), (2, at.to_pydatetime(), 3.0)],
        "user_id long, event_timestamp timestamp, score double",
    )
    assert_df_equality(spark.createDataFrame(rows, out.schema), expected, ignore_row_order=True, ignore_nullable=True)
