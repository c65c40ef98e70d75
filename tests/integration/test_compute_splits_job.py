"""The split job end to end: real lakeFS, Spark through spark-submit.sh, Iceberg index table."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from mlv_spark.catalogs import Tables, profile_catalog
from mlv_spark.errors import CatalogError, InvalidInputError, SplitVersionError
from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SPLITS_TABLE, VERSIONS_TABLE, SplitVersion
from mlv_spark.workflows.split_version import compute_split_version, published_without_spark

from tests.integration.helpers import run_job

pytestmark = pytest.mark.integration
ENTITY_TABLE = "features.transactions"
FEATURE_TABLE = "features.user_stats"
T0 = datetime(2024, 1, 1)


def entities(spark, users: range):
    """1-3 events per user, an imbalanced label (10 % positive) as the stratum."""
    rows = []
    for user in users:
        label = 1 if user % 10 == 0 else 0
        for event in range(1 + user % 3):
            rows.append((user, T0 + timedelta(days=user % 30, hours=event), label, float(user * 3 + event)))
    return spark.createDataFrame(rows, "user_id long, event_timestamp timestamp, label int, amount double")


@pytest.fixture()
def repo_with_entities(spark, settings, lakefs_repo):
    """300 users' events, and 30 days of a wide per-user feature table (what copies would duplicate)."""
    catalog = profile_catalog(settings, "lakefs", lakefs_repo.repository).activate(spark)
    tables = Tables(spark, catalog, lakefs_repo)
    tables.write(entities(spark, range(300)), ENTITY_TABLE, "main")
    stats = spark.range(300 * 30).selectExpr(
        "id % 300 AS user_id", f"TIMESTAMP '{T0}' + make_interval(0, 0, 0, CAST(id / 300 AS INT)) AS event_timestamp",
        *[f"rand({i}) * 1000 AS f{i}" for i in range(8)])
    tables.write(stats, FEATURE_TABLE, "main")
    lakefs_repo.commit("main", "entities and features")
    return tables


def version(name: str = "v1", previous_version: str | None = None, source_table: str = ENTITY_TABLE,
            **overrides) -> SplitVersion:
    base = dict(entity_key="user_id", time_column="event_timestamp", ratios={"train": 0.8, "val": 0.1, "test": 0.1},
                seed=42, stratify_by="label")
    return SplitVersion(name, source_table, "main", SplitParams.of(**{**base, **overrides}), previous_version)


def test_split_job_writes_an_immutable_version_with_report(repo_with_entities):
    tables = repo_with_entities
    lk = tables.lakefs
    args = ["--repository", lk.repository, "--entity-table", ENTITY_TABLE, "--entity-key", "user_id",
            "--stratify-by", "label", "--ratios", "train=0.8,val=0.1,test=0.1", "--seed", "42",
            "--split-version", "v1_stratified_80_10_10", "--merge-into", "main", "--delete-branch", "--storage-report",
            "--feature-table", FEATURE_TABLE]
    before = lk.resolve("main")
    first = run_job("compute_splits", *args, "--tag", "splits-v1")
    assert first.returncode == 0, first.output[-3000:]
    assert "split version v1_stratified_80_10_10" in first.stdout
    assert "storage: split index" in first.stdout
    summary = json.loads(first.stdout.strip().splitlines()[-1])

    # the version reached main only by a merge of its experiment branch, which is gone; the tag is at the merge
    head = lk.resolve("main")
    assert head == summary["merge_commit"] == lk.resolve("splits-v1")
    assert lk.get_commit(head).parents == (before, summary["commit"])
    assert not lk.branch_exists(summary["branch"]) and summary["branch"] == "exp-splits-v1_stratified_80_10_10"
    commit = lk.get_commit(summary["commit"])
    assert commit.metadata["split_version"] == "v1_stratified_80_10_10"
    assert commit.metadata["split_seed"] == "42"
    assert json.loads(commit.metadata["param.ratios"]) == [["train", 0.8], ["val", 0.1], ["test", 0.1]]

    index = tables.read(SPLITS_TABLE, head)
    assert index.columns[:5] == ["entity_key", "event_timestamp", "split", "split_version", "split_seed"]
    entities = index.groupBy("entity_key").agg(F.countDistinct("split").alias("n")).collect()
    assert len(entities) == 300 and all(r["n"] == 1 for r in entities)
    per_entity = {r["split"]: r["count"] for r in index.select("entity_key", "split").distinct().groupBy("split").count().collect()}
    assert per_entity == {"train": 240, "val": 30, "test": 30}
    assert index.count() == tables.read(ENTITY_TABLE, head).count()

    report = json.loads(lk.read_object(head, "ml_datasets/_reports/splits/v1_stratified_80_10_10.json"))
    assert report["storage"] == "estimate" and "estimated" in first.stdout
    assert 0 < report["index_bytes"] < report["copies_bytes"]
    assert report["copies_bytes"] == pytest.approx(tables.data_bytes(FEATURE_TABLE, head), rel=1e-6)
    assert sum(report["totals"].values()) == index.count()

    again = run_job("compute_splits", *args)
    assert again.returncode == 0, again.output[-3000:]
    assert "no-op" in again.stdout
    assert lk.resolve("main") == head
    assert "spark: session" not in again.output, "a rerun of a published version is answered without Spark (pyiceberg)"
    rerun = json.loads(again.stdout.strip().splitlines()[-1])
    assert rerun["totals"] == summary["totals"] and rerun["merge_commit"] == head and rerun["noop"] is True

    branches = lk.branches()
    changed = run_job("compute_splits", *[a if a != "42" else "7" for a in args])
    assert changed.returncode == 2
    assert "already exists with different parameters (seed differ)" in changed.output
    assert lk.resolve("main") == head and lk.uncommitted("main") == [] and lk.branches() == branches


def test_a_rerun_answered_without_spark_is_the_report_spark_gives(spark, settings, repo_with_entities):
    """published_without_spark (pyiceberg) and compute_split_version (Spark) report the same
    thing for a finished run, for the same version under another experiment, and refuse another
    definition alike."""
    tables = repo_with_entities
    lk = tables.lakefs
    definition = version("v1")
    options = dict(merge_into="main", delete_branch=True, feature_tables=[FEATURE_TABLE], storage_report="estimate")
    first = compute_split_version(spark, tables, lk, definition, tag="splits-v1", **options)
    catalog = profile_catalog(settings, "lakefs", lk.repository)

    def comparable(report) -> dict:
        found = asdict(report)
        if found["lifecycle"]:
            found["lifecycle"].pop("seconds")
        return found

    for extra in ({"tag": "splits-v1"}, {"experiment": "another"}):
        free = published_without_spark(catalog, lk, definition, **options, **extra)
        assert free is not None and free.noop and free.totals == first.totals and free.per_stratum == first.per_stratum
        assert comparable(free) == comparable(compute_split_version(spark, tables, lk, definition, **options, **extra))
    other = version("v1", seed=7)
    with pytest.raises(SplitVersionError, match="seed differ"):
        published_without_spark(catalog, lk, other, **options)
    with pytest.raises(SplitVersionError, match="seed differ"):
        compute_split_version(spark, tables, lk, other, **options)
    assert published_without_spark(catalog, lk, version("v2"), **options) is None, "a new version needs Spark"
    delta = profile_catalog(settings, "delta", lk.repository)
    assert published_without_spark(delta, lk, definition, **options) is None, "Delta tables are read through Spark"


def test_many_versions_coexist_and_sticky_growth_keeps_assignments(spark, repo_with_entities):
    tables = repo_with_entities
    lk = tables.lakefs
    compute_split_version(spark, tables, lk, version("v1"), merge_into="main", delete_branch=True)
    compute_split_version(spark, tables, lk, version("v1_hash", seed=7, method="hash"), merge_into="main", delete_branch=True)
    # The data grows: 150 new users (and new events of old ones) arrive on main.
    grown = entities(spark, range(300, 450)).unionByName(
        entities(spark, range(0, 300, 7)).selectExpr("user_id", "event_timestamp + INTERVAL 40 DAYS AS event_timestamp",
                                                     "label", "amount"))
    tables.write(grown, ENTITY_TABLE, "main", mode="append")
    lk.commit("main", "more entities")
    compute_split_version(spark, tables, lk, version("v2_sticky", previous_version="v1", seed=9), merge_into="main", delete_branch=True)
    index = tables.read(SPLITS_TABLE, "main")
    assert {r[0] for r in index.select("split_version").distinct().collect()} == {"v1", "v1_hash", "v2_sticky"}
    v1 = index.where("split_version = 'v1'").select("entity_key", F.col("split").alias("a")).distinct()
    v2 = index.where("split_version = 'v2_sticky'").select("entity_key", F.col("split").alias("b")).distinct()
    assert v1.count() == 300 and v2.count() == 450
    assert v1.join(v2, "entity_key").count() == 300
    moved = v1.join(v2, "entity_key").where("a != b").count()
    assert moved == 0
    # the new users are apportioned so that each stratum's totals hit their largest-remainder targets
    per_split = {r["b"]: r["count"] for r in v2.groupBy("b").count().collect()}
    assert per_split["train"] == 360 and per_split["val"] + per_split["test"] == 90
    assert 44 <= per_split["val"] <= 46
    assert tables.read(VERSIONS_TABLE, "main").count() == 3


@pytest.mark.parametrize("bad, error, message", [
    (dict(ratios={"train": 0.8, "val": 0.1}), InvalidInputError, "sum to 0.9"),
    (dict(ratios={"train": 1.1, "test": -0.1}), InvalidInputError, "must be > 0"),
    (dict(stratify_by=("no_such_column",)), InvalidInputError, "no_such_column"),
    (dict(source_table="features.missing"), CatalogError, "does not exist"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(spark, repo_with_entities, bad, error, message):
    tables = repo_with_entities
    lk = tables.lakefs
    head = lk.resolve("main")
    with pytest.raises(error, match=message):
        compute_split_version(spark, tables, lk, version("v_bad", **bad), merge_into="main", delete_branch=True)
    assert lk.resolve("main") == head and lk.uncommitted("main") == []


def test_null_keys_and_empty_input_are_refused_and_write_nothing(spark, repo_with_entities):
    tables = repo_with_entities
    lk = tables.lakefs
    nulls = spark.createDataFrame([(None, T0, 0), (1, T0, 1)], "user_id long, event_timestamp timestamp, label int")
    tables.write(nulls, "features.with_nulls", "main")
    tables.write(nulls.limit(0), "features.empty", "main")
    head = lk.commit("main", "bad tables")
    with pytest.raises(InvalidInputError, match="null"):
        compute_split_version(spark, tables, lk, version("v_null", source_table="features.with_nulls"), merge_into="main", delete_branch=True)
    with pytest.raises(InvalidInputError, match="empty|no rows"):
        compute_split_version(spark, tables, lk, version("v_empty", source_table="features.empty"), merge_into="main", delete_branch=True)
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
    compute_split_version(spark, tables, tables.lakefs, version("v1"), merge_into="main", delete_branch=True)
    head = tables.lakefs.resolve("main")
    with pytest.raises(SplitVersionError, match="ratios differ"):
        compute_split_version(spark, tables, tables.lakefs, version("v1", ratios={"train": 0.5, "test": 0.5}), merge_into="main", delete_branch=True)
    assert tables.lakefs.resolve("main") == head
