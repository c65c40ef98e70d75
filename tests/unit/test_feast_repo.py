"""Loading Feast definitions from files, apply-time inference, feature services, sources."""

from __future__ import annotations

import os
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from mlv_spark.errors import FeatureDefinitionError
from mlv_spark.training import (
    expand_feature_service,
    get_historical_features,
    list_feature_services,
    list_feature_views,
    load_feature_repo,
    resolve_features,
)
from mlv_spark.training.sources import SourceReader, read_parquet

UTC = timezone.utc
YAML = """\
project: {project}
registry: data/registry.db
provider: local
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: data/online.db
entity_key_serialization_version: 3
"""

DEFINITIONS = """\
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
stats_source = FileSource(
    path="data/stats.parquet", timestamp_field="event_ts", created_timestamp_column="created"
)
driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field(name="conv_rate", dtype=Float64), Field(name="trips", dtype=Int64)],
    source=stats_source,
)
# No schema and no timestamp_field: both are inferred from the source, as `feast apply` does.
profile = FeatureView(
    name="profile",
    entities=[driver],
    ttl=timedelta(0),
    source=FileSource(path="data/profile.parquet", field_mapping={"lvl": "level"}),
)
service = FeatureService(
    name="service",
    features=[
        driver_stats[["trips"]],
        driver_stats.with_name("other").with_join_key_map({"driver_id": "other_driver"}),
        profile,
        profile.with_name("picked")[["level"]],
    ],
)
"""


def write_repo(root: Path, files: dict[str, str], project: str = "test_repo") -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "feature_store.yaml").write_text(YAML.format(project=project))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def write_data(root: Path) -> None:
    t = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    pd.DataFrame({
        "driver_id": [1, 1, 2],
        "event_ts": [t("2024-01-01"), t("2024-01-02"), t("2024-01-01")],
        "created": [t("2024-01-01"), t("2024-01-02"), t("2024-01-01")],
        "conv_rate": [0.1, 0.2, 0.3],
        "trips": [10, 20, 30],
    }).to_parquet(root / "data" / "stats.parquet")  # pandas writes nanosecond timestamps
    pd.DataFrame({
        "driver_id": [1, 2],
        "ts": [t("2024-01-01 00:00:00.000000500"), t("2023-12-01")],
        "lvl": ["gold", "silver"],
        "__internal": [0, 0],
        "age": [30, 40],
    }).to_parquet(root / "data" / "profile.parquet")


@pytest.fixture(scope="module")
def repo_root(tmp_path_factory) -> Path:
    root = write_repo(tmp_path_factory.mktemp("repo"), {"definitions.py": DEFINITIONS})
    write_data(root)
    return root


def test_loading_leaves_no_trace_and_can_repeat(repo_root):
    cwd, path, modules = os.getcwd(), list(sys.path), set(sys.modules)
    first = load_feature_repo(repo_root)
    second = load_feature_repo(repo_root)
    assert (os.getcwd(), sys.path) == (cwd, path)
    assert "definitions" not in sys.modules and "definitions" not in modules
    assert first.feature_views["driver_stats"] is not second.feature_views["driver_stats"]
    assert list_feature_views(second) == ["driver_stats", "profile"]
    assert list_feature_services(second) == ["service"]


def test_two_repos_with_the_same_module_names(tmp_path):
    """Each load imports its own files, even when file (and helper module) names repeat."""
    for name, feature in (("a", "alpha"), ("b", "beta")):
        write_repo(tmp_path / name, {
            "common.py": f"FEATURE = {feature!r}\n",
            "pkg/views.py": """\
                from datetime import timedelta
                from feast import Entity, FeatureView, Field, FileSource, ValueType
                from feast.types import Float64
                from common import FEATURE
                e = Entity(name="e", join_keys=["k"], value_type=ValueType.INT64)
                view = FeatureView(name="view", entities=[e], ttl=timedelta(0),
                    schema=[Field(name=FEATURE, dtype=Float64)],
                    source=FileSource(path="data/x.parquet", timestamp_field="ts"))
            """,
        }, project=name)
    for _ in range(2):
        a, b = load_feature_repo(tmp_path / "a"), load_feature_repo(tmp_path / "b")
        assert a.view("view").feature_names == ("alpha",)
        assert b.view("view").feature_names == ("beta",)
    assert "common" not in sys.modules and "pkg" not in sys.modules


def test_broken_definitions_are_a_definition_error(tmp_path):
    root = write_repo(tmp_path, {"broken.py": "this is not python\n"})
    cwd = os.getcwd()
    with pytest.raises(FeatureDefinitionError, match="cannot load the feature definitions"):
        load_feature_repo(root)
    assert os.getcwd() == cwd and str(root) not in sys.path
    with pytest.raises(FeatureDefinitionError, match="no feature_store.yaml"):
        load_feature_repo(tmp_path / "data")


def test_feature_service_expansion_and_unknown_names(repo_root, spark):
    repo = load_feature_repo(repo_root, spark=spark)
    assert expand_feature_service(repo, "service") == [
        "driver_stats:trips",
        "other:conv_rate",
        "other:trips",
        "profile:level",
        "profile:age",
        "picked:level",
    ]
    other = resolve_features(repo, "service")[1]
    assert (other.name, other.view.name, other.entity_keys) == ("other", "driver_stats", ("other_driver",))
    with pytest.raises(FeatureDefinitionError, match=r"unknown feature service 'nope'.*\['service'\]"):
        expand_feature_service(repo, "nope")
    with pytest.raises(FeatureDefinitionError, match=r"unknown feature view 'nope'.*\['driver_stats', 'profile'\]"):
        resolve_features(repo, ["nope:x"])
    with pytest.raises(FeatureDefinitionError, match=r"no feature 'x'; it has \['conv_rate', 'trips'\]"):
        resolve_features(repo, ["driver_stats:x"])
    with pytest.raises(FeatureDefinitionError, match="not of the form"):
        resolve_features(repo, ["driver_stats"])


def test_apply_time_inference(repo_root, spark):
    repo = load_feature_repo(repo_root)
    with pytest.raises(FeatureDefinitionError, match="needs its source schema"):
        repo.view("profile")
    repo = repo.with_schema_reader(SourceReader(spark, repo.root).columns)
    profile = repo.view("profile")
    assert profile.timestamp_field == "ts"
    assert profile.feature_names == ("level", "age")  # mapped name; ts and __internal skipped
    assert [(c.name, c.dtype) for c in profile.entity_columns] == [("driver_id", "INT64")]
    stats = repo.view("driver_stats")
    assert (stats.timestamp_field, stats.created_timestamp_column, stats.ttl) == ("event_ts", "created", timedelta(days=1))


def test_inference_errors_name_the_problem(tmp_path, spark):
    root = write_repo(tmp_path, {"d.py": """\
        from feast import Entity, FeatureView, FileSource, ValueType
        e = Entity(name="e", join_keys=["k"], value_type=ValueType.INT64)
        untyped = Entity(name="untyped", join_keys=["k"])  # its column must come from the source
        two = FeatureView(name="two_times", entities=[e], source=FileSource(path="data/two.parquet"))
        keyless = FeatureView(name="no_key", entities=[untyped], source=FileSource(path="data/nokey.parquet", timestamp_field="a"))
    """})
    pd.DataFrame({"k": [1], "a": [pd.Timestamp("2024-01-01")], "b": [pd.Timestamp("2024-01-01")], "x": [1]}).to_parquet(
        root / "data" / "two.parquet"
    )
    pd.DataFrame({"a": [pd.Timestamp("2024-01-01")], "x": [1]}).to_parquet(root / "data" / "nokey.parquet")
    repo = load_feature_repo(root).with_schema_reader(SourceReader(spark, root).columns)
    with pytest.raises(FeatureDefinitionError, match=r"2 timestamp columns \['a', 'b'\]"):
        repo.view("two_times")
    with pytest.raises(FeatureDefinitionError, match=r"join keys \['k'\] are neither"):
        repo.view("no_key")


@pytest.mark.parametrize("footer_first", [False, True])
def test_nanosecond_parquet_is_read_exactly(tmp_path, spark, spark_job_statuses, footer_first):
    path = tmp_path / "ns.parquet"
    pd.DataFrame({
        "ts": [pd.Timestamp("2024-01-01 00:00:00.000001500", tz="UTC"), pd.Timestamp("1960-01-01 00:00:00.000000001", tz="UTC")],
    }).assign(naive=lambda d: d["ts"].dt.tz_localize(None)).to_parquet(path)
    (df, nanos), statuses = spark_job_statuses(lambda: read_parquet(spark, str(path), footer_first=footer_first))
    # Spark's own read fails in a job (and its executor logs the error) unless the footer comes first.
    assert statuses.count("FAILED") == (0 if footer_first else 1)
    assert nanos == {"ts": True, "naive": False}
    assert [r["ts"] for r in df.orderBy("ts").collect()] == [
        -315619199999999999,  # 1960-01-01 00:00:00.000000001 UTC
        1704067200000001500,
    ]
    assert spark.conf.get("spark.sql.legacy.parquet.nanosAsLong") == "false"
    # A file Spark can read itself has no nanosecond columns: nothing is converted.
    pd.DataFrame({"ts": [pd.Timestamp("2024-01-01")]}).astype({"ts": "datetime64[us]"}).to_parquet(tmp_path / "us.parquet")
    df, nanos = read_parquet(spark, str(tmp_path / "us.parquet"), footer_first=footer_first)
    assert nanos == {} and df.schema["ts"].dataType.simpleString() == "timestamp_ntz"
    with pytest.raises(FeatureDefinitionError, match="no data at"):
        read_parquet(spark, str(tmp_path / "missing.parquet"), footer_first=footer_first)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet " * 10)
    with pytest.raises(FeatureDefinitionError, match=r"cannot read parquet at .*bad\.parquet: .*not a Parquet file"):
        read_parquet(spark, str(tmp_path / "bad.parquet"), footer_first=footer_first)


def test_sources_go_through_the_resolvers(tmp_path, spark):
    root = write_repo(tmp_path, {"d.py": """\
        from feast import Entity, FeatureView, Field, ValueType
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
        from feast.types import Int64
        e = Entity(name="e", join_keys=["k"], value_type=ValueType.INT64)
        schema = [Field(name="v", dtype=Int64)]
        by_table = FeatureView(name="by_table", entities=[e], schema=schema,
            source=SparkSource(name="t", table="logical.table", timestamp_field="ts"))
        by_path = FeatureView(name="by_path", entities=[e], schema=schema,
            source=SparkSource(name="p", path="s3://bucket/features", file_format="parquet", timestamp_field="ts"))
        by_query = FeatureView(name="by_query", entities=[e], schema=schema,
            source=SparkSource(name="q", query="SELECT k, ts, v + 1000 AS v FROM mlv_test_physical", timestamp_field="ts"))
    """})
    rows = spark.createDataFrame(
        [(1, datetime(2024, 1, 1, tzinfo=UTC), 7)], "k long, ts timestamp, v long"
    )
    rows.createOrReplaceTempView("mlv_test_physical")
    rows.write.parquet(str(tmp_path / "physical"))
    tables, paths = [], []
    entity = spark.createDataFrame([(1, datetime(2024, 1, 2, tzinfo=UTC))], "k long, event_timestamp timestamp")
    out = get_historical_features(
        spark,
        entity,
        feature_repo=root,
        features=["by_table:v", "by_path:v", "by_query:v"],
        full_feature_names=True,
        table_resolver=lambda name: tables.append(name) or "mlv_test_physical",
        path_resolver=lambda path: paths.append(path) or str(tmp_path / "physical"),
    )
    row = out.collect()[0]
    assert (row["by_table__v"], row["by_path__v"], row["by_query__v"]) == (7, 7, 1007)
    assert (tables, paths) == (["logical.table"], ["s3://bucket/features"])
    spark.catalog.dropTempView("mlv_test_physical")


def test_get_historical_features_end_to_end(repo_root, spark):
    entity = spark.createDataFrame(
        [(1, 2, datetime(2024, 1, 1, 12, tzinfo=UTC)), (1, 1, datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC))],
        "driver_id long, other_driver long, event_timestamp timestamp",
    )
    out = get_historical_features(spark, entity, feature_repo=repo_root, features="service", full_feature_names=True)
    assert out.columns == [
        "driver_id", "other_driver", "event_timestamp",
        "driver_stats__trips", "other__conv_rate", "other__trips", "profile__level", "profile__age", "picked__level",
    ]
    got = {r["other_driver"]: r.asDict() for r in out.collect()}
    assert (got[2]["driver_stats__trips"], got[2]["other__trips"], got[2]["profile__level"]) == (10, 30, "gold")
    # profile's row is at 00:00:00.0000005: not yet visible at 00:00:00.000000, visible at .000001
    assert got[1]["profile__level"] == "gold"
    at_zero = entity.withColumn("event_timestamp", F.lit(datetime(2024, 1, 1, tzinfo=UTC)))
    early = get_historical_features(spark, at_zero, feature_repo=repo_root, features=["profile:level"]).collect()
    assert {r["level"] for r in early} == {None}
