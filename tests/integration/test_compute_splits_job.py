"""The split job end to end: real lakeFS, Spark through spark-submit.sh, Iceberg index table."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from mlv_spark.catalogs import load_catalog
from mlv_spark.errors import InvalidInputError, SplitVersionError
from mlv_spark.split_index import SPLITS_TABLE, VERSIONS_TABLE, SplitParams
from mlv_spark.split_versions import compute_split_version
from mlv_spark.tables import Tables

from tests.integration.helpers import run_job

pytestmark = pytest.mark.integration
ENTITY_TABLE = "features.transactions"
T0 = datetime(2024, 1, 1)


@pytest.fixture()
def repo_with_entities(spark, settings, lakefs_repo):
    """300 users, 1-3 events each, an imbalanced label (10 % positive) as the stratum."""
    rows = []
    for user in range(300):
        label = 1 if user % 10 == 0 else 0
        for event in range(1 + user % 3):
            rows.append((user, T0 + timedelta(days=user % 30, hours=event), label, float(user * 3 + event)))
    df = spark.createDataFrame(rows, "user_id long, event_timestamp timestamp, label int, amount double")
    catalog = load_catalog("lakefs", settings).for_repository(lakefs_repo.repository).activate(spark)
    tables = Tables(spark, catalog, lakefs_repo)
    tables.write(df, ENTITY_TABLE, "main")
    lakefs_repo.commit("main", "entities")
    return tables


def params(**overrides) -> SplitParams:
    base = dict(source_table=ENTITY_TABLE, source_ref="main", entity_key=("user_id",),
                time_column="event_timestamp", ratios={"train": 0.8, "val": 0.1, "test": 0.1},
                seed=42, stratify_by=("label",))
    return SplitParams(**{**base, **overrides})


def test_split_job_writes_an_immutable_version_with_report(repo_with_entities):
    tables = repo_with_entities
    lk = tables.lakefs
    args = ["--repository", lk.repository, "--entity-table", ENTITY_TABLE, "--entity-key", "user_id",
            "--stratify-by", "label", "--ratios", "train=0.8,val=0.1,test=0.1", "--seed", "42",
            "--split-version", "v1_stratified_80_10_10", "--branch", "main"]
    first = run_job("compute_splits", *args)
    assert first.returncode == 0, first.output[-3000:]
    assert "split version v1_stratified_80_10_10" in first.stdout
    assert "storage: split index" in first.stdout

    head = lk.resolve("main")
    commit = lk.get_commit("main")
    assert commit.metadata["split_version"] == "v1_stratified_80_10_10"
    assert commit.metadata["split_seed"] == "42"
    assert json.loads(commit.metadata["param.ratios"]) == {"train": 0.8, "val": 0.1, "test": 0.1}

    index = tables.read(SPLITS_TABLE, head)
    assert index.columns[:5] == ["entity_key", "event_timestamp", "split", "split_version", "split_seed"]
    entities = index.groupBy("entity_key").agg(F.countDistinct("split").alias("n")).collect()
    assert len(entities) == 300 and all(r["n"] == 1 for r in entities)
    per_entity = {r["split"]: r["count"] for r in index.select("entity_key", "split").distinct().groupBy("split").count().collect()}
    assert per_entity == {"train": 240, "val": 30, "test": 30}
    assert index.count() == tables.read(ENTITY_TABLE, head).count()

    report = json.loads(lk.read_object(head, "ml_datasets/_reports/splits/v1_stratified_80_10_10.json"))
    assert report["index_bytes"] > 0 and report["copies_bytes"] > 0
    assert sum(report["totals"].values()) == index.count()

    again = run_job("compute_splits", *args)
    assert again.returncode == 0, again.output[-3000:]
    assert "no-op" in again.stdout
    assert lk.resolve("main") == head

    changed = run_job("compute_splits", *[a if a != "42" else "7" for a in args])
    assert changed.returncode == 2
    assert "already exists with different parameters (seed differ)" in changed.output
    assert lk.resolve("main") == head and lk.uncommitted("main") == []


def test_many_versions_coexist_and_sticky_growth_keeps_assignments(spark, repo_with_entities):
    tables = repo_with_entities
    lk = tables.lakefs
    compute_split_version(spark, tables, lk, params(), "v1", "main", measure_storage=False)
    compute_split_version(spark, tables, lk, params(seed=7, method="hash"), "v1_hash", "main", measure_storage=False)
    compute_split_version(spark, tables, lk, params(previous_version="v1", seed=9), "v2_sticky", "main",
                          measure_storage=False)
    index = tables.read(SPLITS_TABLE, "main")
    assert {r[0] for r in index.select("split_version").distinct().collect()} == {"v1", "v1_hash", "v2_sticky"}
    v1 = index.where("split_version = 'v1'").select("entity_key", "event_timestamp", F.col("split").alias("a"))
    v2 = index.where("split_version = 'v2_sticky'").select("entity_key", "event_timestamp", F.col("split").alias("b"))
    moved = v1.join(v2, ["entity_key", "event_timestamp"]).where("a != b").count()
    assert moved == 0
    assert tables.read(VERSIONS_TABLE, "main").count() == 3


@pytest.mark.parametrize("bad, message", [
    (dict(ratios={"train": 0.8, "val": 0.1}), "sum to 0.9"),
    (dict(ratios={"train": 1.1, "test": -0.1}), "must be > 0"),
    (dict(stratify_by=("no_such_column",)), "no_such_column"),
    (dict(source_table="features.missing"), "does not exist"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(spark, repo_with_entities, bad, message):
    tables = repo_with_entities
    lk = tables.lakefs
    head = lk.resolve("main")
    with pytest.raises(Exception, match=message):
        compute_split_version(spark, tables, lk, params(**bad), "v_bad", "main", measure_storage=False)
    assert lk.resolve("main") == head and lk.uncommitted("main") == []


def test_null_keys_and_empty_input_are_refused_and_write_nothing(spark, repo_with_entities):
    tables = repo_with_entities
    lk = tables.lakefs
    nulls = spark.createDataFrame([(None, T0, 0), (1, T0, 1)], "user_id long, event_timestamp timestamp, label int")
    tables.write(nulls, "features.with_nulls", "main")
    tables.write(nulls.limit(0), "features.empty", "main")
    head = lk.commit("main", "bad tables")
    with pytest.raises(InvalidInputError, match="null"):
        compute_split_version(spark, tables, lk, params(source_table="features.with_nulls"), "v_null", "main",
                              measure_storage=False)
    with pytest.raises(InvalidInputError, match="empty|no rows"):
        compute_split_version(spark, tables, lk, params(source_table="features.empty"), "v_empty", "main",
                              measure_storage=False)
    assert lk.resolve("main") == head and lk.uncommitted("main") == []


def test_unknown_ref_fails_fast_with_exit_code_2(repo_with_entities):
    lk = repo_with_entities.lakefs
    result = run_job("compute_splits", "--repository", lk.repository, "--entity-table", ENTITY_TABLE,
                     "--entity-key", "user_id", "--ratios", "train=0.5,test=0.5", "--seed", "1",
                     "--split-version", "v1", "--source-ref", "no-such-ref")
    assert result.returncode == 2
    assert "no-such-ref does not exist" in result.output


def test_version_conflict_is_refused_in_process(spark, repo_with_entities):
    tables = repo_with_entities
    compute_split_version(spark, tables, tables.lakefs, params(), "v1", "main", measure_storage=False)
    head = tables.lakefs.resolve("main")
    with pytest.raises(SplitVersionError, match="ratios differ"):
        compute_split_version(spark, tables, tables.lakefs, params(ratios={"train": 0.5, "test": 0.5}), "v1", "main",
                              measure_storage=False)
    assert tables.lakefs.resolve("main") == head
