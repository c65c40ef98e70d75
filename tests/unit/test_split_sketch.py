"""The exact splits' histogram sketch (io.mlvspark.splits.HistogramSketch) against Spark's
aggregation it replaces. Every test of test_splits.py already runs with the sketch (the test
session sets `jvm`); these cover the sketch's own paths, which that data does not reach
(dense strata, fine and out-of-range keys, kept and failed atoms, flushes), and the choice."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark.errors import ConfigError
from mlv_spark.splits.cuts import merge_partial_histograms
from mlv_spark.splits.exact import HISTOGRAM_CONF
from mlv_spark.splits import assign_splits
from mlv_spark.sql import to_arrow
from tests.unit.test_splits import RATIOS, _capture_split_logs, build_events

BITS, FINE_BITS = 4, 6  # 16 coarse buckets: a stratum with more atoms in a partition goes dense


@pytest.fixture()
def histogram(spark: SparkSession):
    """Sets the histogram's aggregation for one call: histogram("spark")."""

    def use(mode: str) -> None:
        spark.conf.set(HISTOGRAM_CONF, mode)

    yield use
    spark.conf.set(HISTOGRAM_CONF, "jvm")


def _partials(spark: SparkSession) -> DataFrame:
    """Rows as the histogram pass hands them to the sketch, in 3 partitions: a big stratum
    (dense in every partition), mid and tiny ones (lists), fine-grained coarse ranges, keys past
    the coarse range, kept atoms (-1 - split) and failed ones (-2**62), two periods, and a
    stratum id shared by two rotations (a collision the driver must still see)."""
    coarse = F.col("id") % 16
    fine = F.col("id") % 3 == 0  # a third of the big stratum's coarse ranges are fine-grained
    key = (
        F.when(F.col("id") % 97 == 0, F.lit(-(2**62)))
        .when(F.col("id") % 31 == 0, -1 - F.col("id") % 40)  # more kept keys than a stratum keeps apart
        .when(F.col("id") % 53 == 0, F.lit(16 << FINE_BITS) + F.col("id") % 5)  # past the coarse range
        .when(fine & (coarse < 6), F.shiftleft(coarse, FINE_BITS) + F.col("id") % 7)
        .otherwise(F.shiftleft(coarse, FINE_BITS))
    )
    sid = (
        F.when(F.col("id") % 10 < 7, F.lit(11))  # big
        .when(F.col("id") % 10 < 9, F.lit(-5))  # mid
        .otherwise(F.col("id") % 37)  # tiny, many
    )
    return spark.range(0, 20_000, numPartitions=3).select(
        (F.col("id") % 2).alias("period"),
        sid.alias("sid"),
        F.when(sid == 3, F.col("id") % 2).otherwise(sid * 7).alias("rotation"),
        key.alias("bucket"),
        F.xxhash64("id").alias("h"),
        (F.col("id") % 4 + 1).alias("w"),
        (F.col("id") % 9).alias("rows"),
        (F.col("id") % 5).alias("strata"),
    )


def _by_spark(frame: DataFrame) -> DataFrame:
    return frame.groupBy("period", "sid", "rotation", "bucket").agg(
        F.count(F.lit(1)).alias("n"), F.min("h").alias("hmin"), F.max("h").alias("hmax"), F.bit_xor("h").alias("hxor"),
        F.sum("w").alias("w"), F.max("rows").alias("rows"), F.max("strata").alias("strata"),
    )  # fmt: skip


@pytest.mark.parametrize("flush_rows", [1 << 20, 7], ids=["one-emit", "flushing"])
def test_the_sketch_merges_to_spark_aggregation(spark: SparkSession, flush_rows: int) -> None:
    frame = _partials(spark)
    java = spark._jvm.io.mlvspark.splits.HistogramSketch
    partial = DataFrame(java.apply(frame._jdf.queryExecution(), BITS, FINE_BITS, 1, 2, flush_rows), spark)
    arrow = to_arrow(partial)
    table = {name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names}
    merged = merge_partial_histograms(table, sums=["w"], maxes=["rows", "strata"])
    expected = _by_spark(frame)
    got = spark.createDataFrame(pa.table(merged).to_pandas()).select(*expected.columns)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert expected.count() < arrow.num_rows  # partial: the merge had work to do
    assert int(merged["n"].sum()) == 20_000


def test_the_sketch_of_an_empty_input_is_empty(spark: SparkSession) -> None:
    frame = _partials(spark).where("false")
    java = spark._jvm.io.mlvspark.splits.HistogramSketch
    assert DataFrame(java.apply(frame._jdf.queryExecution(), BITS, FINE_BITS, 1, 2, 16), spark).count() == 0


@pytest.mark.parametrize(
    "options",
    [
        {"stratify_by": "label"},
        {"stratify_by": "label", "group_by": "household", "buckets": 16},
        {"stratify_by": "label", "time_column": "event_timestamp", "cutoff": datetime(2024, 9, 1, tzinfo=timezone.utc), "per_row": True},
    ],
    ids=["rows-per-entity", "groups-dense", "out-of-time"],
)
def test_assignments_are_the_same_with_the_sketch_and_with_spark(spark: SparkSession, histogram, options: dict) -> None:
    events = build_events(spark, scale=0.3).repartition(3)

    def assign(mode: str, previous: DataFrame | None = None) -> DataFrame:
        histogram(mode)
        return assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=3, previous=previous, **options).localCheckpoint()

    with_sketch, with_spark = assign("jvm"), assign("spark")
    assert_df_equality(with_sketch, with_spark, ignore_row_order=True)
    if "per_row" not in options:  # sticky: kept atoms are the sketch's negative keys
        previous = with_spark.where(F.col("user_id") < "u0002000")
        assert_df_equality(assign("jvm", previous), assign("spark", previous), ignore_row_order=True)


def test_an_unknown_histogram_setting_is_a_clear_error(spark: SparkSession, histogram) -> None:
    histogram("fast")
    events = build_events(spark, scale=0.05)
    with pytest.raises(ConfigError, match=r"spark.mlv.splits.histogram is 'fast'; use auto, jvm or spark"):
        assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=3)


@pytest.mark.parametrize("strict", [False, True], ids=["auto", "jvm"])
def test_a_sketch_that_cannot_be_built_falls_back_under_auto_only(
    spark: SparkSession, histogram, monkeypatch, strict: bool
) -> None:
    """A Spark whose internals differ from the pinned one fails when the sketch is built
    (here: a real JVM class without the sketch's method): `auto` aggregates with Spark and
    says so, `jvm` raises."""
    from py4j.protocol import Py4JError

    from mlv_spark.splits import exact as split_exact

    events = build_events(spark, scale=0.1)
    histogram("spark")
    expected = assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=3, stratify_by="label").localCheckpoint()
    histogram("auto")
    monkeypatch.setattr(split_exact, "scan_class", lambda *args: (spark._jvm.java.lang.String, strict))
    if strict:
        with pytest.raises(Py4JError):
            assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=3, stratify_by="label")
        return
    records = _capture_split_logs()
    fallen_back = assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=3, stratify_by="label")
    assert [r for r in records if r.levelname == "WARNING" and "the JVM histogram sketch failed" in r.msg]
    assert_df_equality(fallen_back, expected, ignore_row_order=True)


def test_a_scan_class_missing_from_the_class_path_is_skipped_under_auto_and_an_error_under_jvm(
    spark: SparkSession, histogram
) -> None:
    from mlv_spark.jvm import scan_class

    missing = "io.mlvspark.splits.NotThere"
    histogram("auto")
    assert scan_class(spark, HISTOGRAM_CONF, missing, "spark", "Spark's aggregation") is None
    histogram("spark")
    assert scan_class(spark, HISTOGRAM_CONF, "io.mlvspark.splits.HistogramSketch", "spark", "Spark's aggregation") is None
    histogram("jvm")
    with pytest.raises(ConfigError, match=r"spark.mlv.splits.histogram=jvm but io.mlvspark.splits.NotThere is not on the class path .*make scans-jar"):
        scan_class(spark, HISTOGRAM_CONF, missing, "spark", "Spark's aggregation")
    found = scan_class(spark, HISTOGRAM_CONF, "io.mlvspark.splits.HistogramSketch", "spark", "Spark's aggregation")
    assert found is not None and found[1] is True  # strict under jvm
