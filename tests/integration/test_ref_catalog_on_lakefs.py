"""The ref-relative Iceberg catalog across real lakeFS branches, merges, tags and branch deletion
(Spark through lakeFS's S3 gateway). What the catalog does within one ref is tested on a
file-backed root in tests/unit/test_ref_catalog_on_files.py."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from mlv_spark.catalogs import load_catalog, profile_catalog
from mlv_spark.lakefs import LakeFS

pytestmark = pytest.mark.integration
BASE = [(1, "cat"), (2, "dog"), (3, "eel")]


def values(data: list[tuple[int, str]]) -> str:
    rows = ", ".join(f"({i}, '{label}')" for i, label in data)
    return f"SELECT CAST(id AS INT) id, CAST(label AS STRING) label FROM VALUES {rows} AS v(id, label)"


def assert_rows(spark: SparkSession, table: str, expected: list[tuple[int, str]]) -> None:
    assert_df_equality(spark.table(table).select("id", "label"), spark.sql(values(expected)),
                       ignore_row_order=True, ignore_nullable=True)


@pytest.fixture()
def lake(spark, settings, lakefs_repo: LakeFS):
    """(lakeFS client, catalog name) for a fresh repository; tables are `<catalog>.<ref>.ml.<t>`."""
    catalog = profile_catalog(settings, "lakefs", lakefs_repo.repository).activate(spark)
    return lakefs_repo, catalog.name


def test_branch_writes_never_reach_main(spark, lake):
    lk, cat = lake
    spark.sql(f"CREATE TABLE {cat}.main.ml.t USING iceberg AS {values(BASE)}")
    lk.commit("main", "t")
    lk.create_branch("exp-2", "main")
    spark.sql(f"INSERT INTO {cat}.`exp-2`.ml.t VALUES (10, 'new')")
    spark.sql(f"DELETE FROM {cat}.`exp-2`.ml.t WHERE id = 1")
    assert_rows(spark, f"{cat}.`exp-2`.ml.t", [(2, "dog"), (3, "eel"), (10, "new")])
    assert_rows(spark, f"{cat}.main.ml.t", BASE)
    assert lk.uncommitted("main") == []
    assert {c.path.split("/")[2] for c in lk.uncommitted("exp-2")} >= {"data", "metadata"}


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_merged_tables_read_on_main_and_at_a_tag_after_the_branch_is_gone(spark, lake, mode):
    lk, cat = lake
    props = ", ".join([f"'write.{op}.mode'='{mode}'" for op in ("delete", "update", "merge")] + ["'format-version'='2'"])
    spark.sql(f"CREATE TABLE {cat}.main.ml.t USING iceberg TBLPROPERTIES ({props}) AS {values(BASE)}")
    lk.commit("main", "t")
    lk.create_branch("exp-4", "main")
    branch = f"{cat}.`exp-4`.ml"
    spark.sql(f"DELETE FROM {branch}.t WHERE id = 2")
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW changes AS {values([(1, 'CAT'), (7, 'yak')])}")
    spark.sql(f"""MERGE INTO {branch}.t t USING changes s ON t.id = s.id
                  WHEN MATCHED THEN UPDATE SET t.label = s.label WHEN NOT MATCHED THEN INSERT *""")
    spark.sql(f"CREATE TABLE {branch}.born USING iceberg AS {values([(44, 'born-on-branch')])}")
    first_snapshot = spark.sql(f"SELECT snapshot_id FROM {branch}.born.snapshots").first().snapshot_id
    spark.sql(f"INSERT INTO {branch}.born VALUES (45, 'second')")
    expected = [(1, "CAT"), (3, "eel"), (7, "yak")]
    lk.commit("exp-4", "row-level changes and a new table")
    merged = lk.merge("exp-4", "main")
    lk.delete_branch("exp-4")

    assert_rows(spark, f"{cat}.main.ml.t", expected)
    assert spark.table(f"{cat}.main.ml.t").where("id = 2").count() == 0  # deletes applied, not hidden
    assert_rows(spark, f"{cat}.main.ml.born", [(44, "born-on-branch"), (45, "second")])
    # time travel to a snapshot written on the deleted branch
    assert_df_equality(spark.sql(f"SELECT id, label FROM {cat}.main.ml.born VERSION AS OF {first_snapshot}"),
                       spark.sql(values([(44, "born-on-branch")])), ignore_nullable=True)
    # a tag is a frozen view: later writes on main are invisible at it
    lk.tag("t-v1", merged)
    lk.create_branch("exp-5", "main")
    spark.sql(f"INSERT INTO {cat}.`exp-5`.ml.t VALUES (41, 'after-tag')")
    lk.commit("exp-5", "after the tag")
    lk.merge("exp-5", "main")
    assert_rows(spark, f"{cat}.`t-v1`.ml.t", expected)
    assert_rows(spark, f"{cat}.`{merged}`.ml.t", expected)
    assert_rows(spark, f"{cat}.main.ml.t", [*expected, (41, "after-tag")])


def test_a_path_prefix_survives_a_merge(spark, settings, lakefs_repo: LakeFS):
    lk = lakefs_repo
    prefixed = load_catalog("pfx_lakefs", type="lakefs-iceberg", repository=lk.repository,
                            prefix="warehouse/iceberg").activate(spark)
    plain = profile_catalog(settings, "lakefs", lk.repository).activate(spark)
    lk.create_branch("exp-10", "main")
    spark.sql(f"CREATE TABLE {prefixed.name}.`exp-10`.ml.t USING iceberg AS {values(BASE[:2])}")
    pointer = lk.read_object("exp-10", "warehouse/iceberg/ml/t/metadata/version-hint.text").decode()
    assert pointer.startswith("warehouse/iceberg/ml/t/metadata/")
    lk.commit("exp-10", "prefixed table")
    lk.merge("exp-10", "main")
    lk.delete_branch("exp-10")
    assert_rows(spark, f"{prefixed.name}.main.ml.t", BASE[:2])
    # paths are relative to the ref root, so the prefix-less catalog reaches the same table
    assert_rows(spark, f"{plain.name}.main.warehouse.iceberg.ml.t", BASE[:2])
