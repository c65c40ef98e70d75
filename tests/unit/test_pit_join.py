"""The pure point-in-time join, rule by rule (docs/training-sets.md, "Semantics, rule by rule")."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from chispa import assert_df_equality
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, TimestampNTZType, TimestampType

from mlv_spark.errors import FeatureDefinitionError, InvalidInputError
from mlv_spark.training.pit import CARRY_CONF, ViewInput, ViewJoinSpec, point_in_time_join
from mlv_spark.training.pit import carry as pit_carry
from mlv_spark.training.pit.ttl import TtlFilter


@pytest.fixture(autouse=True, params=["jvm", "window"])
def carry(request, spark) -> str:
    """Every rule must hold for both carry-forwards: the JVM scan and the window."""
    spark.conf.set(CARRY_CONF, request.param)
    yield request.param
    spark.conf.set(CARRY_CONF, "jvm")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _literal(value, data_type) -> Column:
    if value is None:
        return F.lit(None).cast(data_type)
    if isinstance(data_type, TimestampNTZType):  # wall clock, no session time zone involved
        return F.lit(value.isoformat(sep=" ")).cast(data_type)
    if isinstance(data_type, TimestampType) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)  # naive test times are UTC
    if isinstance(data_type, MapType):
        return F.create_map(*[F.lit(x) for kv in value.items() for x in kv]).cast(data_type)
    return F.lit(value).cast(data_type)


def frame(spark: SparkSession, rows, schema: str) -> DataFrame:
    """A local relation (no Python workers, so much faster than createDataFrame on rows)."""
    struct = spark.createDataFrame([], schema).schema
    literals = [
        F.struct(*[_literal(v, f.dataType).alias(f.name) for v, f in zip(row, struct.fields)])
        for row in rows
    ]
    if not literals:
        return spark.createDataFrame([], struct)
    return spark.range(1).select(F.inline(F.array(*literals)))


def entities(spark: SparkSession, rows, schema="driver_id long, event_timestamp timestamp, row string"):
    return frame(spark, rows, schema)


def drivers(spark: SparkSession, rows, schema="driver_id long, ts timestamp, created timestamp, conv double"):
    return frame(spark, rows, schema)


def spec(**overrides) -> ViewJoinSpec:
    values = dict(
        name="drv",
        join_keys=("driver_id",),
        features=("conv",),
        timestamp_field="ts",
        created_timestamp_column="created",
    )
    values.update(overrides)
    return ViewJoinSpec(**values)


def by_row(df: DataFrame, column: str = "conv") -> dict[str, object]:
    return {r["row"]: r[column] for r in df.collect()}


def test_as_of_takes_latest_row_at_or_before_entity_time(spark):
    feats = drivers(spark, [
        (1, ts("2024-01-01"), None, 1.0),
        (1, ts("2024-01-02"), None, 2.0),
        (1, ts("2024-01-03"), None, 3.0),
    ])
    ents = entities(spark, [
        (1, ts("2024-01-02"), "equal time matches"),
        (1, ts("2024-01-02 23:59:59.999999"), "just before next"),
        (1, ts("2023-12-31"), "before any data"),
        (1, ts("2030-01-01"), "long after"),
    ])
    out = point_in_time_join(ents, [ViewInput(spec(), feats)])
    assert by_row(out) == {
        "equal time matches": 2.0,
        "just before next": 2.0,
        "before any data": None,
        "long after": 3.0,
    }


def test_ttl_boundary_is_inclusive_and_zero_means_unlimited(spark):
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0)])
    ents = entities(spark, [
        (1, ts("2024-01-02"), "exactly ttl later"),
        (1, ts("2024-01-02 00:00:00.000001"), "one microsecond too late"),
    ])
    out = point_in_time_join(ents, [
        ViewInput(spec(name="day", ttl=timedelta(days=1)), feats),
        ViewInput(spec(name="none", ttl=None), feats),
        ViewInput(spec(name="zero", ttl=timedelta(0)), feats),
    ], full_feature_names=True)
    got = {r["row"]: (r["day__conv"], r["none__conv"], r["zero__conv"]) for r in out.collect()}
    assert got == {"exactly ttl later": (1.0, 1.0, 1.0), "one microsecond too late": (None, 1.0, 1.0)}


def test_ttl_applies_to_the_winner_only(spark):
    """An older row inside the window never replaces a newer winner, stale or not."""
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0), (1, ts("2024-01-05"), None, 5.0)])
    ents = entities(spark, [(1, ts("2024-01-05 12:00"), "fresh"), (1, ts("2024-01-09"), "stale")])
    out = point_in_time_join(ents, [ViewInput(spec(ttl=timedelta(days=2)), feats)])
    assert by_row(out) == {"fresh": 5.0, "stale": None}


def test_created_time_breaks_event_time_ties_only(spark):
    feats = drivers(spark, [
        (1, ts("2024-01-02"), ts("2024-01-05"), 1.0),  # created later, same event time
        (1, ts("2024-01-02"), ts("2024-01-03"), 2.0),
        (1, ts("2024-01-02"), None, 3.0),  # a null created time loses
        (1, ts("2024-01-03"), ts("2024-01-01"), 4.0),  # later event time wins over any created time
    ])
    ents = entities(spark, [(1, ts("2024-01-02 12:00"), "tie"), (1, ts("2024-01-03"), "later")])
    out = point_in_time_join(ents, [ViewInput(spec(), feats)])
    assert by_row(out) == {"tie": 1.0, "later": 4.0}


def test_no_eligible_row_keeps_entity_row_with_nulls(spark):
    feats = drivers(spark, [(1, ts("2024-01-10"), None, 1.0), (2, ts("2024-01-01"), None, 2.0)])
    ents = entities(spark, [
        (1, ts("2024-01-01"), "only future data"),
        (2, ts("2024-03-01"), "only stale data"),
        (3, ts("2024-01-01"), "no data"),
    ])
    out = point_in_time_join(ents, [ViewInput(spec(ttl=timedelta(days=7)), feats)])
    assert out.count() == 3
    assert by_row(out) == {"only future data": None, "only stale data": None, "no data": None}


def test_duplicate_entity_rows_are_all_kept(spark):
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0)])
    ents = entities(spark, [(1, ts("2024-01-02"), "a")] * 3 + [(1, ts("2023-01-01"), "a")])
    out = point_in_time_join(ents, [ViewInput(spec(), feats)])
    assert sorted(r["conv"] or 0.0 for r in out.collect()) == [0.0, 1.0, 1.0, 1.0]


def test_null_join_keys_match_nothing(spark):
    feats = drivers(spark, [(None, ts("2024-01-01"), None, 9.0), (1, ts("2024-01-01"), None, 1.0)])
    ents = entities(spark, [(None, ts("2024-01-02"), "null key"), (1, ts("2024-01-02"), "key")])
    out = point_in_time_join(ents, [ViewInput(spec(), feats)])
    assert by_row(out) == {"null key": None, "key": 1.0}


def test_null_entity_time_matches_nothing_and_null_feature_time_is_ignored(spark):
    feats = drivers(spark, [(1, None, None, 9.0), (1, ts("2024-01-01"), None, 1.0)])
    ents = entities(spark, [(1, None, "no time"), (1, ts("2024-01-02"), "time")])
    out = point_in_time_join(ents, [ViewInput(spec(), feats)])
    assert by_row(out) == {"no time": None, "time": 1.0}


def test_composite_keys_never_collide(spark):
    """Feast's Spark store concatenates ('1','23') and ('12','3') into the same id; we do not."""
    feats = frame(spark, 
        [("1", "23", ts("2024-01-01"), 123.0), ("12", "3", ts("2024-01-01"), 1203.0)],
        "a string, b string, ts timestamp, conv double",
    )
    ents = frame(spark, 
        [("1", "23", ts("2024-01-02"), "1|23"), ("12", "3", ts("2024-01-02"), "12|3"),
         ("123", "", ts("2024-01-02"), "123|")],
        "a string, b string, event_timestamp timestamp, row string",
    )
    view = spec(join_keys=("a", "b"), created_timestamp_column=None)
    out = point_in_time_join(ents, [ViewInput(view, feats)])
    assert by_row(out) == {"1|23": 123.0, "12|3": 1203.0, "123|": None}


def test_full_ties_pick_one_row_deterministically(spark):
    """Same keys, event and created time: one row, chosen by content, not by partitioning."""
    rows = [(1, ts("2024-01-01"), ts("2024-01-01"), float(v)) for v in range(20)]
    ents = entities(spark, [(1, ts("2024-01-02"), "tie")] * 3)
    results = set()
    try:
        for partitions, order in ((1, rows), (5, list(reversed(rows))), (3, rows[7:] + rows[:7])):
            spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
            feats = drivers(spark, order).repartition(partitions)
            out = point_in_time_join(ents, [ViewInput(spec(), feats)])
            values = [r["conv"] for r in out.collect()]
            assert len(values) == 3 and len(set(values)) == 1
            results.add(values[0])
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")
    assert len(results) == 1


def test_full_tie_choice_does_not_depend_on_which_features_are_requested(spark):
    feats = frame(spark, 
        [(1, ts("2024-01-01"), float(i), f"s{i}") for i in range(10)],
        "driver_id long, ts timestamp, conv double, name string",
    )
    ents = entities(spark, [(1, ts("2024-01-02"), "tie")])
    both = ("conv", "name")
    whole = point_in_time_join(
        ents, [ViewInput(spec(features=both, created_timestamp_column=None, tie_break_columns=both), feats)]
    ).collect()[0]
    only_name = point_in_time_join(
        ents,
        [ViewInput(spec(features=("name",), created_timestamp_column=None, tie_break_columns=both), feats)],
    ).collect()[0]
    assert only_name["name"] == whole["name"]
    assert whole["name"] == f"s{int(whole['conv'])}"


def test_output_does_not_depend_on_partitioning(spark):
    feats = drivers(spark, [
        (k, ts("2024-01-01") + timedelta(hours=h), ts("2024-01-01") + timedelta(minutes=m), float(k * 1000 + h * 10 + m))
        for k in range(6) for h in range(0, 48, 5) for m in (0, 1)
    ])
    ents = entities(spark, [
        (k, ts("2024-01-01") + timedelta(hours=h), f"{k}/{h}") for k in range(7) for h in range(0, 60, 3)
    ])
    view = spec(ttl=timedelta(hours=12))
    expected = point_in_time_join(ents, [ViewInput(view, feats)])
    expected_rows = sorted(expected.collect())
    assert len(expected_rows) == ents.count()
    try:
        for partitions in (1, 9):
            spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
            out = point_in_time_join(ents.repartition(partitions), [ViewInput(view, feats.repartition(3))])
            assert sorted(out.collect()) == expected_rows
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")


def test_inputs_large_enough_shuffle_into_exactly_the_configured_partitions(spark, tmp_path, monkeypatch, carry):
    """Adaptive execution merges a shuffle by columns into a few uneven tasks; a pass over
    inputs worth pinning keeps spark.sql.shuffle.partitions, with the same rows. Small inputs,
    and inputs without a size estimate (rows from the driver), are left to Spark (window), or
    take at most the default parallelism (the scan, whose input is planned without adaptive
    execution)."""
    feats = drivers(spark, [
        (k, ts("2024-01-01") + timedelta(hours=h), None, float(k * 100 + h)) for k in range(6) for h in range(40)
    ])
    ents = entities(spark, [(k, ts("2024-01-01") + timedelta(hours=h), f"{k}/{h}") for k in range(7) for h in range(0, 60, 3)])
    feats.write.parquet(str(tmp_path / "f"))
    ents.write.parquet(str(tmp_path / "e"))
    on_disk = [spark.read.parquet(str(tmp_path / "e")), spark.read.parquet(str(tmp_path / "f"))]

    def pass_shuffle(entity_df, feature_df) -> tuple[DataFrame, str]:
        """The result, and how its pass shuffled: "pinned N" (exactly N partitions, never
        merged) or "merged by Spark" (a shuffle by columns that adaptive execution coalesced)."""
        out = point_in_time_join(entity_df, [ViewInput(spec(ttl=timedelta(hours=12)), feature_df)])
        if carry == "jvm":  # the scan keeps its pass's shuffle partitions
            return out, f"pinned {out.rdd.getNumPartitions()}"
        out.collect()  # the final adaptive plan
        final = out._jdf.queryExecution().executedPlan().toString().split("Initial Plan")[0]
        lines = [line.strip() for line in final.splitlines()]
        at = next(i for i, line in enumerate(lines) if "Exchange hashpartitioning(__mlv_k0" in line)
        merged = lines[at - 2] == "+- AQEShuffleRead coalesced"  # above its query stage
        pinned = re.search(r"hashpartitioning\(__mlv_k0#\w+, (\d+)\), REPARTITION_BY_NUM", lines[at])
        if pinned and not merged:
            return out, f"pinned {pinned.group(1)}"
        return out, "merged by Spark" if merged and "REPARTITION_BY_COL" in lines[at] else lines[at]

    unpinned = "merged by Spark" if carry == "window" else "pinned 2"  # the scan: local[2]'s parallelism
    try:
        spark.conf.set("spark.sql.shuffle.partitions", "9")
        small, shuffled = pass_shuffle(*on_disk)
        assert shuffled == unpinned
        monkeypatch.setattr(pit_carry, "PIN_BYTES_PER_PARTITION", 1)
        large, shuffled = pass_shuffle(*on_disk)
        assert shuffled == "pinned 9"
        assert_df_equality(large, small, ignore_row_order=True)
        _, shuffled = pass_shuffle(ents, feats)  # no size estimate
        assert shuffled == unpinned
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")


def test_each_pass_shuffles_and_sorts_once_and_the_window_reuses_the_sort(spark, carry):
    """Full ties beyond the tie-break hash are ordered by the explicit sort, which the window
    must reuse: a second sort under the window would be free to reorder them. The scan replaces
    the window: one shuffle per pass in its lineage, no window."""
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0)])
    two_keys = frame(spark, [(1, "a", ts("2024-01-01"), 2.0)], "driver_id long, cust string, ts timestamp, score double")
    views = [
        ViewInput(spec(name="a"), feats),
        ViewInput(spec(name="b", ttl=timedelta(hours=1)), feats),
        ViewInput(spec(name="pair", join_keys=("driver_id", "cust"), features=("score",), created_timestamp_column=None), two_keys),
    ]
    ents = entities(spark, [(1, ts("2024-01-02"), "r")], "driver_id long, event_timestamp timestamp, row string").withColumn("cust", F.lit("a"))
    joined = point_in_time_join(ents, views, full_feature_names=True, prune_by_ttl=False)
    plan = joined._jdf.queryExecution().executedPlan().toString()
    if carry == "jvm":  # each pass's plan lives in its scan's RDD lineage
        lineage = joined._jdf.queryExecution().toRdd().toDebugString()
        assert lineage.count("ShuffledRowRDD") == 2, lineage  # one pass per set of join keys
        assert "Window" not in plan and "Exchange" not in plan, plan
        return
    assert plan.count("Exchange hashpartitioning") == 2  # one pass per set of join keys
    assert plan.count("Sort [") == 2
    assert plan.count("Window [") == 2


def test_ttl_pruning_drops_only_feature_rows_no_entity_row_can_see(spark):
    ents = entities(spark, [(1, ts("2024-03-10 12:00"), "a"), (2, ts("1969-12-30 00:00"), "b"), (1, None, "no time")])
    feats = drivers(spark, [
        (1, ts("2024-03-10 12:00"), None, 1.0),  # at the entity time
        (1, ts("2024-03-09 12:00"), None, 2.0),  # exactly one TTL before it
        (1, ts("2024-03-09 05:59:59"), None, 3.0),  # older than the TTL by more than a bucket (TTL / 4)
        (1, ts("2024-03-11 00:00"), None, 4.0),  # after every entity row of its key
        (2, ts("1969-12-29 12:00"), None, 5.0),  # before 1970, inside the TTL
        (2, ts("1969-12-01 00:00"), None, 6.0),  # before 1970, outside it
        (3, ts("2024-03-10 12:00"), None, 7.0),  # a key without entity rows
    ])
    ttl_filter = TtlFilter.build(ents, "event_timestamp", ["__mlv_x0"], timedelta(days=1))
    kept = ttl_filter.apply(feats, ["driver_id"], "unix_micros(ts)")
    assert kept.columns == feats.columns
    # the slot and bucket of a row are computed once: no inferred IS NOT NULL filter recomputes them
    plan = kept._jdf.queryExecution().executedPlan().toString()
    assert not [line for line in plan.splitlines() if "Filter" in line and "xxhash64" in line], plan
    assert sorted(r.conv for r in kept.collect()) == [1.0, 2.0, 5.0]


def test_ttl_pruning_changes_no_result(spark, carry):
    """Several TTLs in one pass (a negative one too), keys cast to a common type, a nanosecond
    source, times before 1970 and entity rows without a time: the same rows with and without
    pruning."""
    hours = F.col("id") * 7919 % (24 * 400) - 24 * 30  # about a year, from before 1970
    feats = spark.range(3000).select(
        (F.col("id") % 40).alias("driver_id"),
        F.timestamp_seconds(hours * 3600 + F.col("id") % 3).alias("ts"),
        F.lit(None).cast("timestamp").alias("created"),
        (F.col("id") / 10).alias("conv"),
    )
    nanos = feats.select(
        F.col("driver_id").cast("int").alias("driver_id"), (F.unix_micros("ts") * 1000 + F.col("driver_id")).alias("ts"), "conv"
    )
    ents = spark.range(400).select(
        (F.col("id") % 45).cast("int").alias("driver_id"),
        F.when(F.col("id") % 50 == 0, F.lit(None)).otherwise(
            F.timestamp_seconds((F.col("id") * 104729 % (24 * 400) - 24 * 30) * 3600)
        ).alias("event_timestamp"),
        F.col("id").cast("string").alias("row"),
    )
    views = [
        ViewInput(spec(name="hour", ttl=timedelta(hours=1)), feats),
        ViewInput(spec(name="week", ttl=timedelta(days=7)), feats),
        ViewInput(spec(name="week2", ttl=timedelta(days=7), features=("conv",)), feats),
        ViewInput(spec(name="all"), feats),
        ViewInput(spec(name="nanos", ttl=timedelta(days=2), created_timestamp_column=None), nanos),
        ViewInput(spec(name="negative", ttl=timedelta(hours=-1)), feats),  # sees nothing, pruned or not
    ]
    def joined(**options) -> DataFrame:
        return point_in_time_join(ents, views, full_feature_names=True, **options)

    def filtered(**options) -> bool:  # the TTL filter's bitmap column is in the plan
        spark.conf.set(CARRY_CONF, "window")  # the scan's plan is inside its RDD
        try:
            return "__mlv_bits" in joined(**options)._jdf.queryExecution().optimizedPlan().toString()
        finally:
            spark.conf.set(CARRY_CONF, carry)

    assert filtered() and not filtered(prune_by_ttl=False)  # on by default
    pruned, plain = joined(), joined(prune_by_ttl=False)
    assert pruned.filter(F.col("week__conv").isNotNull()).count() > 0
    assert_df_equality(pruned, plain, ignore_row_order=True)


def test_hot_key_buckets_give_the_same_result(spark):
    """Skew handling splits hot keys by time bucket; the carry-in makes it exact."""
    feats = drivers(spark, [
        (k, ts("2024-01-01") + timedelta(hours=h), None, float(k * 1000 + h))
        for k in (1, 2) for h in range(0, 200, 3 if k == 1 else 50)
    ] + [(3, ts("2024-01-01"), None, 3.0)])
    ents = entities(spark, [
        (k, ts("2023-12-31") + timedelta(hours=h), f"{k}/{h}") for k in (1, 2, 3, 4) for h in range(0, 260, 7)
    ] + [(None, ts("2024-01-02"), "null")])
    views = [
        ViewInput(spec(name="all", created_timestamp_column=None), feats),
        ViewInput(spec(name="ttl", ttl=timedelta(hours=20), created_timestamp_column=None), feats),
    ]
    plain = point_in_time_join(ents, views, full_feature_names=True)
    skewed = point_in_time_join(ents, views, full_feature_names=True, hot_key_rows=5)
    assert_df_equality(skewed, plain, ignore_row_order=True)


def test_views_on_different_keys_chain_without_losing_rows(spark):
    ents = frame(spark, 
        [(1, "c1", ts("2024-01-02"), "r1"), (1, "c2", ts("2024-01-02"), "r2"), (2, None, ts("2024-01-02"), "r3")],
        "driver_id long, customer_id string, event_timestamp timestamp, row string",
    )
    drv = drivers(spark, [(1, ts("2024-01-01"), None, 1.0), (2, ts("2024-01-01"), None, 2.0)])
    cust = frame(spark, 
        [("c1", ts("2024-01-01"), 10), ("c2", ts("2024-01-03"), 20)],
        "customer_id string, ts timestamp, orders long",
    )
    both = frame(spark, 
        [(1, "c2", ts("2024-01-01"), "x")], "driver_id long, customer_id string, ts timestamp, pair string"
    )
    out = point_in_time_join(ents, [
        ViewInput(spec(), drv),
        ViewInput(spec(name="cust", join_keys=("customer_id",), features=("orders",), created_timestamp_column=None), cust),
        ViewInput(spec(name="pair", join_keys=("customer_id", "driver_id"), features=("pair",), created_timestamp_column=None), both),
    ])
    assert out.columns == ["driver_id", "customer_id", "event_timestamp", "row", "conv", "orders", "pair"]
    assert {r["row"]: (r["conv"], r["orders"], r["pair"]) for r in out.collect()} == {
        "r1": (1.0, 10, None), "r2": (1.0, None, "x"), "r3": (2.0, None, None),
    }


def test_join_key_map_joins_against_another_entity_column(spark):
    ents = frame(spark, 
        [(1, 2, ts("2024-01-02"), "r")], "driver_id long, other_driver long, event_timestamp timestamp, row string"
    )
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0), (2, ts("2024-01-01"), None, 2.0)])
    out = point_in_time_join(ents, [
        ViewInput(spec(), feats),
        ViewInput(spec(name="other", entity_keys=("other_driver",)), feats),
    ], full_feature_names=True)
    assert out.columns == ["driver_id", "other_driver", "event_timestamp", "row", "drv__conv", "other__conv"]
    row = out.collect()[0]
    assert (row["drv__conv"], row["other__conv"]) == (1.0, 2.0)


def test_names_bare_full_and_collisions(spark):
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0)])
    ents = entities(spark, [(1, ts("2024-01-02"), "r")])
    views = [ViewInput(spec(), feats), ViewInput(spec(name="again"), feats)]
    with pytest.raises(FeatureDefinitionError, match=r"collide.*drv:conv.*again:conv"):
        point_in_time_join(ents, views)
    out = point_in_time_join(ents, views, full_feature_names=True)
    assert out.columns[-2:] == ["drv__conv", "again__conv"]
    clash = frame(spark, [(1, ts("2024-01-02"), 0.5)], "driver_id long, event_timestamp timestamp, conv double")
    with pytest.raises(InvalidInputError, match="clash with entity columns"):
        point_in_time_join(clash, [ViewInput(spec(), feats)])


def test_output_columns_entity_first_then_views_in_request_order(spark):
    feats = frame(spark, 
        [(1, ts("2024-01-01"), 1.0, 2, "x")], "driver_id long, ts timestamp, a double, b long, c string"
    )
    ents = frame(spark, [(ts("2024-01-02"), "r", 1)], "event_timestamp timestamp, row string, driver_id long")
    out = point_in_time_join(ents, [
        ViewInput(spec(name="v2", features=("c", "a"), created_timestamp_column=None), feats),
        ViewInput(spec(name="v1", features=("b",), created_timestamp_column=None), feats),
    ], full_feature_names=True)
    assert out.columns == ["event_timestamp", "row", "driver_id", "v2__c", "v2__a", "v1__b"]
    assert out.dtypes[-3:] == [("v2__c", "string"), ("v2__a", "double"), ("v1__b", "bigint")]


def test_column_names_are_taken_literally_even_when_quoted_names_are_regexes(spark):
    """Dots, spaces, backticks and regex characters in names; and the session setting that
    makes quoted names in SQL text regexes (Feast's Spark store turns it on for the session)."""
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0), (2, ts("2024-01-01"), None, 2.0)])
    ents = entities(spark, [(1, ts("2024-01-02"), "a"), (2, ts("2024-01-02"), "b"), (3, ts("2024-01-02"), "c")])
    plain = point_in_time_join(ents, [ViewInput(spec(), feats)])
    odd_feats = feats.toDF("driver.id", "t`s", "created (c)", "conv.*")
    odd_ents = ents.toDF("driver.id", "event time", "row+")
    odd_spec = spec(join_keys=("driver.id",), features=("conv.*",), timestamp_field="t`s", created_timestamp_column="created (c)")
    spark.conf.set("spark.sql.parser.quotedRegexColumnNames", "true")
    try:
        odd = point_in_time_join(odd_ents, [ViewInput(odd_spec, odd_feats)])
        assert odd.columns == ["driver.id", "event time", "row+", "conv.*"]
        assert_df_equality(odd.toDF(*plain.columns), plain, ignore_row_order=True)
    finally:
        spark.conf.unset("spark.sql.parser.quotedRegexColumnNames")


def test_entity_timestamp_column_detection(spark):
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0)])
    single = frame(spark, [(1, ts("2024-01-02"), "r")], "driver_id long, when timestamp, row string")
    assert by_row(point_in_time_join(single, [ViewInput(spec(), feats)])) == {"r": 1.0}
    preferred = frame(spark, 
        [(1, ts("2023-01-01"), ts("2024-01-02"), "r")],
        "driver_id long, other timestamp, event_timestamp timestamp, row string",
    )
    assert by_row(point_in_time_join(preferred, [ViewInput(spec(), feats)])) == {"r": 1.0}
    ambiguous = frame(spark, [(1, ts("2024-01-02"), ts("2024-01-02"))], "driver_id long, a timestamp, b timestamp")
    with pytest.raises(InvalidInputError, match=r"2 timestamp columns \['a', 'b'\]"):
        point_in_time_join(ambiguous, [ViewInput(spec(), feats)])
    as_string = frame(spark, [(1, "2024-01-02")], "driver_id long, event_timestamp string")
    with pytest.raises(InvalidInputError, match="cast it to timestamp"):
        point_in_time_join(as_string, [ViewInput(spec(), feats)])


def test_missing_columns_are_clear_errors(spark):
    feats = drivers(spark, [(1, ts("2024-01-01"), None, 1.0)])
    no_key = frame(spark, [(ts("2024-01-02"),)], "event_timestamp timestamp")
    with pytest.raises(InvalidInputError, match=r"lacks join-key columns \['driver_id'\]"):
        point_in_time_join(no_key, [ViewInput(spec(), feats)])
    ents = entities(spark, [(1, ts("2024-01-02"), "r")])
    with pytest.raises(FeatureDefinitionError, match=r"lacks columns \['missing'\]"):
        point_in_time_join(ents, [ViewInput(spec(features=("missing",)), feats)])
    text_keys = frame(spark, [("1", ts("2024-01-02"))], "driver_id string, event_timestamp timestamp")
    with pytest.raises(InvalidInputError, match="incompatible types"):
        point_in_time_join(text_keys, [ViewInput(spec(), feats)])
    twice = feats.select("driver_id", "ts", "created", "conv", F.lit(2.0).alias("conv"))
    with pytest.raises(FeatureDefinitionError, match=r"several columns named \['conv'\]"):
        point_in_time_join(ents, [ViewInput(spec(), twice)])


def test_integer_key_widths_are_widened(spark):
    feats = frame(spark, [(1, ts("2024-01-01"), 1.0)], "driver_id int, ts timestamp, conv double")
    ents = entities(spark, [(1, ts("2024-01-02"), "r")])
    out = point_in_time_join(ents, [ViewInput(spec(created_timestamp_column=None), feats)])
    assert by_row(out) == {"r": 1.0}
    assert out.schema["driver_id"].dataType.simpleString() == "bigint"


def test_times_compare_in_utc_whatever_the_session_time_zone(spark):
    """tz-naive entity and feature times are UTC; the output event time is a UTC instant."""
    feats = frame(spark, 
        [(1, datetime(2024, 3, 10, 7, 30), 1.0), (1, datetime(2024, 3, 10, 8, 30), 2.0)],
        "driver_id long, ts timestamp_ntz, conv double",
    )
    ents = frame(spark, 
        # 02:30 on 2024-03-10 does not exist in New York: a session-zone conversion would shift it.
        [(1, datetime(2024, 3, 10, 8, 0), "08:00Z"), (1, datetime(2024, 3, 10, 2, 30), "02:30Z")],
        "driver_id long, event_timestamp timestamp_ntz, row string",
    )
    view = spec(created_timestamp_column=None)
    seen = []
    try:
        for zone in ("UTC", "America/New_York", "Asia/Kolkata"):
            spark.conf.set("spark.sql.session.timeZone", zone)
            out = point_in_time_join(ents, [ViewInput(view, feats)])
            assert out.schema["event_timestamp"].dataType.simpleString() == "timestamp"
            seen.append(sorted(
                (r["row"], r["conv"], r["epoch"])
                for r in out.select("*", F.unix_micros("event_timestamp").alias("epoch")).collect()
            ))
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert seen[0] == seen[1] == seen[2]
    assert seen[0] == [
        ("02:30Z", None, int(datetime(2024, 3, 10, 2, 30, tzinfo=timezone.utc).timestamp() * 1e6)),
        ("08:00Z", 1.0, int(datetime(2024, 3, 10, 8, 0, tzinfo=timezone.utc).timestamp() * 1e6)),
    ]


def test_aware_and_naive_times_mix_correctly(spark):
    """A timestamp column is an instant; a timestamp_ntz column is read as UTC wall clock."""
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        feats = frame(spark, 
            [(1, datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc), 1.0)],
            "driver_id long, ts timestamp, conv double",
        )
        ents = frame(spark, 
            [(1, datetime(2024, 1, 1, 11, 59), "11:59Z"), (1, datetime(2024, 1, 1, 12, 0), "12:00Z")],
            "driver_id long, event_timestamp timestamp_ntz, row string",
        )
        out = point_in_time_join(ents, [ViewInput(spec(created_timestamp_column=None), feats)])
        assert by_row(out) == {"11:59Z": None, "12:00Z": 1.0}
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_epoch_nanosecond_times_compare_exactly(spark):
    """bigint time columns are epoch nanoseconds (pandas parquet): no sub-microsecond leaks."""
    base = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()) * 10**9
    feats = frame(spark, 
        [(1, base, 1.0), (1, base + 500, 2.0), (1, base + 1000, 3.0), (1, base + 1001, 4.0)],
        "driver_id long, ts bigint, conv double",
    )
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    ents = entities(spark, [
        (1, at, "at base"),
        (1, at + timedelta(microseconds=1), "base + 1us"),
        (1, at + timedelta(microseconds=2), "base + 2us"),
    ])
    out = point_in_time_join(ents, [ViewInput(spec(created_timestamp_column=None), feats)])
    assert by_row(out) == {"at base": 1.0, "base + 1us": 3.0, "base + 2us": 4.0}
    stale = point_in_time_join(
        ents.where(F.col("row") == "base + 2us"),
        [ViewInput(spec(created_timestamp_column=None, ttl=timedelta(microseconds=1)), feats.where("conv < 4"))],
    )
    assert by_row(stale) == {"base + 2us": 3.0}
    # Before 1970 the microseconds are floored, not truncated toward zero: one nanosecond
    # before a whole microsecond lies in the microsecond before it.
    before = datetime(1969, 12, 31, tzinfo=timezone.utc)
    edge = int(before.timestamp()) * 10**9
    early = frame(spark, [(1, edge - 1, 1.0), (1, edge + 1, 2.0)], "driver_id long, ts bigint, conv double")
    out = point_in_time_join(
        entities(spark, [(1, before, "1969")]), [ViewInput(spec(created_timestamp_column=None, ttl=timedelta(microseconds=1)), early)]
    )
    assert by_row(out) == {"1969": 1.0}


def test_entityless_view_joins_on_time_only(spark):
    feats = frame(spark, [(ts("2024-01-01"), 1.0), (ts("2024-01-03"), 3.0), (ts("2024-01-05"), 5.0)], "ts timestamp, conv double")
    ents = entities(spark, [(1, ts("2024-01-02"), "a"), (2, ts("2024-01-04"), "b"), (3, ts("2024-01-06"), "c")])
    view = ViewInput(spec(join_keys=(), created_timestamp_column=None), feats)
    expected = {"a": 1.0, "b": 3.0, "c": 5.0}
    assert by_row(point_in_time_join(ents, [view])) == expected
    assert by_row(point_in_time_join(ents, [view], hot_key_rows=2)) == expected  # one key: all hot


def test_map_and_array_features_are_carried(spark):
    feats = frame(spark, 
        [(1, ts("2024-01-01"), {"a": 1}, [1, 2]), (1, ts("2024-01-01"), {"b": 2}, [3])],
        "driver_id long, ts timestamp, m map<string,int>, arr array<int>",
    )
    ents = entities(spark, [(1, ts("2024-01-02"), "r")])
    out = point_in_time_join(ents, [ViewInput(spec(features=("m", "arr"), created_timestamp_column=None), feats)])
    row = out.collect()[0]
    assert (row["m"], row["arr"]) in [({"a": 1}, [1, 2]), ({"b": 2}, [3])]
