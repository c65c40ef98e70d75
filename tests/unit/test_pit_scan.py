"""The point-in-time join's JVM carry-forward scan (io.mlvspark.pit.CarryForward) against the
window it replaces. Every rule of test_pit_join.py already runs with both; these tests cover
what only the scan has: laziness, the choice of carry-forward, and a randomized comparison."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark.errors import ConfigError
from mlv_spark.training.pit import CARRY_CONF, ViewInput, ViewJoinSpec, point_in_time_join
from mlv_spark.training.pit import carry as pit_carry, join as pit_join
from mlv_spark.training.pit.ttl import TtlFilter


@pytest.fixture()
def carry(spark):
    """Sets the carry-forward for one call: carry("window")."""

    def use(mode: str) -> None:
        spark.conf.set(CARRY_CONF, mode)

    yield use
    spark.conf.set(CARRY_CONF, "jvm")


def _inputs(spark: SparkSession) -> tuple[DataFrame, list[ViewInput]]:
    """Entity rows and three views on two key sets: equal event times with and without created
    times, full ties, null keys and times, duplicate entity rows, 1 µs steps, several TTLs."""
    minute = 60_000_000
    feats = spark.range(6000).select(
        F.when(F.col("id") % 97 == 0, F.lit(None)).otherwise(F.col("id") % 50).alias("driver_id"),
        (F.col("id") % 3).cast("string").alias("cust"),
        F.timestamp_micros((F.col("id") * 7919 % 3000) * minute + F.col("id") % 2).alias("ts"),
        F.when(F.col("id") % 5 == 0, F.lit(None)).otherwise(F.timestamp_micros(F.col("id") % 4 * minute)).alias("created"),
        (F.col("id") % 7 / 2).alias("conv"),
        (F.col("id") % 11).alias("trips"),
    )
    ents = spark.range(1500).select(
        F.when(F.col("id") % 89 == 0, F.lit(None)).otherwise(F.col("id") % 53).alias("driver_id"),
        (F.col("id") % 4).cast("string").alias("cust"),
        F.when(F.col("id") % 61 == 0, F.lit(None)).otherwise(
            F.timestamp_micros((F.col("id") * 104729 % 3100) * minute + F.col("id") % 3)
        ).alias("event_timestamp"),
        (F.col("id") % 700).alias("row"),  # every row twice or more: duplicates stay distinct
    )

    def view(name: str, **options) -> ViewJoinSpec:
        base = dict(name=name, join_keys=("driver_id",), features=("conv", "trips"), timestamp_field="ts",
                    created_timestamp_column="created")
        return ViewJoinSpec(**{**base, **options})  # type: ignore[arg-type]

    views = [
        ViewInput(view("hour", ttl=timedelta(hours=1)), feats),
        ViewInput(view("all", features=("trips",), created_timestamp_column=None), feats),
        ViewInput(view("pair", join_keys=("driver_id", "cust"), ttl=timedelta(days=1)), feats),
    ]
    return ents, views


def _scanned(joined: DataFrame) -> bool:
    """Whether the last pass was carried forward by the scan (else by a window)."""
    plan = joined._jdf.queryExecution().executedPlan().toString()
    assert ("Scan ExistingRDD" in plan) != ("Window [" in plan), plan
    return "Scan ExistingRDD" in plan


def test_the_scan_returns_the_window_result_on_many_partitions(spark, carry):
    ents, views = _inputs(spark)
    carry("window")
    expected = point_in_time_join(ents, views, full_feature_names=True)
    expected_rows = expected.count()
    for partitions in ("1", "7"):
        spark.conf.set("spark.sql.shuffle.partitions", partitions)
        try:
            carry("jvm")
            scanned = point_in_time_join(ents.repartition(3), views, full_feature_names=True)
            assert _scanned(scanned)
            assert_df_equality(scanned, expected, ignore_row_order=True)
        finally:
            spark.conf.set("spark.sql.shuffle.partitions", "4")
    assert expected_rows == ents.count()
    assert expected.where("hour__conv IS NOT NULL AND pair__trips IS NOT NULL").count() > 0


def test_the_scan_is_lazy(spark, carry, spark_job_statuses):
    """Building the join runs no Spark job (without TTL pruning, whose filter is computed);
    the scan's shuffle runs when the result is used."""
    ents, views = _inputs(spark)
    carry("jvm")
    joined, jobs = spark_job_statuses(lambda: point_in_time_join(ents, views, prune_by_ttl=False, full_feature_names=True))
    assert jobs == [] and _scanned(joined)
    count, jobs = spark_job_statuses(joined.count)
    assert count == ents.count() and jobs and set(jobs) == {"SUCCEEDED"}


def test_keys_without_bytewise_equality_are_carried_by_the_window(spark, carry):
    """-0.0 and 0.0 are one key to Spark but two byte patterns: double keys use the window."""
    feats = spark.sql("SELECT * FROM VALUES (0.0D, TIMESTAMP'2024-01-01 00:00:00', 1.5D) AS t(k, ts, conv)")
    ents = spark.sql("SELECT * FROM VALUES (-0.0D, TIMESTAMP'2024-01-02 00:00:00', 'a') AS t(k, event_timestamp, row)")
    view = ViewInput(ViewJoinSpec(name="v", join_keys=("k",), features=("conv",), timestamp_field="ts"), feats)
    carry("window")
    expected = point_in_time_join(ents, [view])
    carry("jvm")
    scanned = point_in_time_join(ents, [view])
    assert not _scanned(scanned)
    assert_df_equality(scanned, expected, ignore_row_order=True)


def test_an_unknown_carry_setting_is_a_clear_error(spark, carry):
    ents, views = _inputs(spark)
    carry("fast")
    with pytest.raises(ConfigError, match=r"spark.mlv.pit.carry is 'fast'; use auto, jvm or window"):
        point_in_time_join(ents, views, full_feature_names=True)


def test_small_inputs_give_the_ttl_filter_the_scans_partition_count(spark, carry, monkeypatch):
    """The join hands the scan's partition count to the TTL filter when the inputs are too
    small to pin (local[2]: 2), and leaves the filter's count to Spark with the window."""
    ents, views = _inputs(spark)
    counts: list[int | None] = []
    build = TtlFilter.build

    def recording(*args, **kwargs):
        counts.append(kwargs.get("partitions", args[4] if len(args) > 4 else None))
        return build(*args, **kwargs)

    monkeypatch.setattr(TtlFilter, "build", staticmethod(recording))
    spark.conf.set("spark.sql.shuffle.partitions", "9")
    try:
        for mode, expected in (("jvm", 2), ("window", None)):
            carry(mode)
            counts.clear()
            point_in_time_join(ents, views, full_feature_names=True)
            assert counts and set(counts) == {expected}, (mode, counts)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")


def test_the_ttl_filter_aggregates_in_the_scans_partitions(spark):
    """The scan's plan has no adaptive execution to merge the TTL filter's shuffle: with small
    inputs its aggregation runs in the passes' partition count, not spark.sql.shuffle.partitions."""
    ents, _ = _inputs(spark)
    table = TtlFilter.build(ents, "event_timestamp", ["__mlv_x0"], timedelta(days=1), partitions=3).table
    plan = table._jdf.queryExecution().executedPlan().toString().split("Initial Plan")[-1]
    assert plan.count("Exchange") == 1, plan
    assert re.search(r"Exchange hashpartitioning\(__mlv_pk#\w+, 3\), REPARTITION_BY_NUM", plan), plan
    default = TtlFilter.build(ents, "event_timestamp", ["__mlv_x0"], timedelta(days=1)).table
    assert_df_equality(table, default, ignore_row_order=True)


@pytest.mark.parametrize("strict", [False, True], ids=["auto", "jvm"])
def test_a_scan_that_cannot_be_built_falls_back_to_the_window_under_auto_only(spark, carry, monkeypatch, strict):
    """A Spark whose internals differ from the pinned one fails when the scan is built (here:
    a real JVM class without the scan's method): `auto` carries forward with the window and
    says so, `jvm` raises."""
    from py4j.protocol import Py4JError

    ents, views = _inputs(spark)
    carry("window")
    expected = point_in_time_join(ents, views, full_feature_names=True)
    monkeypatch.setattr(pit_join, "carry_scan", lambda session: pit_carry.Scan(spark._jvm.java.lang.String, strict))
    if strict:
        with pytest.raises(Py4JError):
            point_in_time_join(ents, views, full_feature_names=True)
        return
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    pit_carry.log.addHandler(handler)
    try:
        fallen_back = point_in_time_join(ents, views, full_feature_names=True)
    finally:
        pit_carry.log.removeHandler(handler)
    assert any("the JVM scan failed" in w for w in warnings), warnings
    assert not _scanned(fallen_back)
    assert_df_equality(fallen_back, expected, ignore_row_order=True)
