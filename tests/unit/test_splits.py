"""assign_splits, promise by promise (docs/splits.md).

The data: one "common" stratum holding 95 % of the entities (12,901) and 40 rare strata of 3 to
50 entities each; every entity has 1 to 3 event rows and belongs to a household of 1 to 4.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError
from mlv_spark.splits import assign_splits, attach_splits

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
SHARES = {"train": Fraction(8, 10), "val": Fraction(1, 10), "test": Fraction(1, 10)}
RARE_SIZES = [round(3 * (50 / 3) ** (i / 39)) for i in range(40)]  # 3 .. 50, mostly small
RARE_TOTAL = sum(RARE_SIZES)
COMMON_SIZE = 19 * RARE_TOTAL  # the common stratum is 95 % of all entities
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


# ---- data -----------------------------------------------------------------------------------


def build_entities(spark: SparkSession, first_id: int = 0, scale: float = 1.0) -> DataFrame:
    """One row per entity: user_id (string key), label (stratum), household (a group of 1 to 4
    entities of one label)."""
    rare = []
    next_id = first_id
    for index, size in enumerate(RARE_SIZES):
        for _ in range(max(1, round(size * scale))):
            rare.append((next_id, f"rare_{index:02d}"))
            next_id += 1
    rare_frame = spark.createDataFrame(rare, "n long, label string")
    common = spark.range(next_id, next_id + round(COMMON_SIZE * scale)).select(
        F.col("id").alias("n"), F.lit("common").alias("label")
    )
    return rare_frame.unionByName(common).select(
        F.format_string("u%07d", "n").alias("user_id"),
        "label",
        F.format_string("%s-%07d", "label", (F.col("n") / 4 + F.col("n") % 3).cast("long")).alias("household"),
        "n",
    )


def build_events(spark: SparkSession, first_id: int = 0, scale: float = 1.0) -> DataFrame:
    """1..3 event rows per entity, spread over 2024, with `event_timestamp`."""
    entities = build_entities(spark, first_id, scale)
    return entities.select(
        "user_id", "label", "household",
        F.explode(F.sequence(F.lit(0), F.col("n") % 3)).alias("k"), "n",
    ).select(
        "user_id", "label", "household",
        F.timestamp_seconds(
            F.lit(int(START.timestamp())) + (F.col("n") * 7919 + F.col("k") * 86400 * 53) % (366 * 86400)
        ).alias("event_timestamp"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def events(spark: SparkSession) -> DataFrame:
    return build_events(spark).cache()


@pytest.fixture(scope="module")
def assigned(events: DataFrame) -> DataFrame:
    return assign(events, stratify_by="label")


# ---- helpers --------------------------------------------------------------------------------


def assign(df: DataFrame, **arguments) -> DataFrame:
    """assign_splits with this file's defaults (user_id, 80/10/10, seed 7), cached for the checks."""
    return assign_splits(df, **({"entity_key": "user_id", "ratios": RATIOS, "seed": 7} | arguments)).cache()


def counts_by_stratum(frame: DataFrame, stratum: str = "label") -> dict[str, Counter]:
    result: dict[str, Counter] = defaultdict(Counter)
    for row in frame.groupBy(stratum, "split").count().collect():
        result[row[stratum]][row["split"]] = row["count"]
    return result


def assert_largest_remainder(counts: Counter, shares: dict[str, Fraction] = SHARES) -> None:
    """`counts` is a largest-remainder apportionment of their total over `shares` (any tie-break):
    each split has floor or floor+1 of its quota, and no split got the extra seat while a split
    with a strictly larger remainder did not."""
    total = sum(counts.values())
    quotas = {s: total * share for s, share in shares.items()}
    floors = {s: math.floor(q) for s, q in quotas.items()}
    extra = {s: counts.get(s, 0) - floors[s] for s in shares}
    assert set(extra.values()) <= {0, 1}, (counts, quotas)
    assert sum(counts.get(s, 0) for s in shares) == total
    lucky = [quotas[s] - floors[s] for s in shares if extra[s] == 1]
    unlucky = [quotas[s] - floors[s] for s in shares if extra[s] == 0]
    assert not lucky or not unlucky or min(lucky) >= max(unlucky), (counts, quotas)


def user_id(n: int) -> str:
    return f"u{n:07d}"


def salted_hash(seed: int, *keys: str):
    """The documented order of entities: xxhash64 of the key column(s) salted with the seed."""
    return F.xxhash64(F.lit(seed).cast("long"), *keys)


def sticky_moves(before: DataFrame, after: DataFrame, keys=("user_id",)) -> int:
    """How many entities present in both assignments changed split."""
    joined = before.alias("b").join(after.alias("a"), on=list(keys))
    return joined.filter(F.col("b.split") != F.col("a.split")).count()


# ---- 1. every entity in exactly one split -----------------------------------------------------


def test_every_entity_lands_in_exactly_one_split(events: DataFrame, assigned: DataFrame) -> None:
    entities = events.select("user_id").distinct()
    assert assigned.count() == entities.count() == COMMON_SIZE + RARE_TOTAL
    assert assigned.select("user_id").distinct().count() == assigned.count()
    assert_df_equality(assigned.select("user_id"), entities, ignore_row_order=True)
    assert {r.split for r in assigned.select("split").distinct().collect()} == set(RATIOS)


def test_output_is_one_row_per_entity_with_key_stratum_latest_time_and_split(
    events: DataFrame, assigned: DataFrame
) -> None:
    assert assigned.columns == ["user_id", "label", "split"]
    with_time = assign(events, stratify_by="label", time_column="event_timestamp"
    )
    assert with_time.columns == ["user_id", "label", "event_timestamp", "split"]
    latest = events.groupBy("user_id").agg(F.max("event_timestamp").alias("event_timestamp"))
    assert_df_equality(with_time.select("user_id", "event_timestamp"), latest, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(with_time.drop("event_timestamp"), assigned, ignore_row_order=True)


# ---- 2. exact per stratum -----------------------------------------------------------------------


def test_every_stratum_gets_its_largest_remainder_counts(assigned: DataFrame) -> None:
    counts = counts_by_stratum(assigned)
    assert len(counts) == 41
    for stratum, per_split in counts.items():
        assert_largest_remainder(per_split)
    assert sum(counts["common"].values()) == COMMON_SIZE


def test_within_a_stratum_each_split_is_one_arc_of_the_salted_hash_circle(assigned: DataFrame) -> None:
    """Ordered by salted hash and closed into a circle, a stratum's splits are contiguous arcs
    (the circle's seeded starting point keeps group sizes unbiased, docs/splits.md)."""
    rows = assigned.select("label", salted_hash(7, "user_id").alias("h"), "split").collect()
    by_stratum = defaultdict(list)
    for row in rows:
        by_stratum[row.label].append((row.h, row.split))
    for stratum, members in by_stratum.items():
        circle = [split for _, split in sorted(members)]
        changes = sum(1 for a, b in zip(circle, circle[1:] + circle[:1]) if a != b)
        assert changes <= len(set(circle)) if len(set(circle)) > 1 else changes == 0, (stratum, circle)


# ---- 3. deterministic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reshape, conf",
    [
        (lambda df: df.repartition(7), {"spark.sql.shuffle.partitions": "13"}),
        (lambda df: df.orderBy(F.rand(3)), {}),
        (lambda df: df.coalesce(1), {"spark.sql.shuffle.partitions": "1"}),
        (lambda df: df.repartition(3, "label"), {"spark.sql.adaptive.enabled": "false"}),
    ],
    ids=["7-partitions-13-shuffle-partitions", "shuffled-rows", "one-partition", "aqe-off"],
)
def test_same_output_for_any_partitioning_row_order_and_shuffle_settings(
    spark: SparkSession, events: DataFrame, assigned: DataFrame, reshape, conf
) -> None:
    saved = {key: spark.conf.get(key) for key in conf}
    try:
        for key, value in conf.items():
            spark.conf.set(key, value)
        again = assign(reshape(events), stratify_by="label")
        assert_df_equality(again, assigned, ignore_row_order=True)
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)


def test_the_bucket_count_changes_how_cuts_are_found_not_where_they_are(events: DataFrame, assigned: DataFrame) -> None:
    coarse = assign(events, stratify_by="label", buckets=4)  # every cut then needs the boundary pass
    assert_df_equality(coarse, assigned, ignore_row_order=True)


# ---- 4. seeded ----------------------------------------------------------------------------------


def test_another_seed_gives_an_independent_draw(events: DataFrame, assigned: DataFrame) -> None:
    other = assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=8, stratify_by="label")
    total = assigned.count()
    agree = assigned.join(other, on=["user_id", "label", "split"]).count() / total
    chance = sum(float(s) ** 2 for s in SHARES.values())  # two independent draws agree this often
    sigma = math.sqrt(chance * (1 - chance) / total)
    assert abs(agree - chance) < 4 * sigma, (agree, chance, sigma)


# ---- 5. sticky ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grown(spark: SparkSession, events: DataFrame) -> DataFrame:
    """The events plus 10 % new entities, spread over the strata like the old ones."""
    return events.unionByName(build_events(spark, first_id=10**6, scale=0.1)).cache()


def test_append_only_growth_moves_no_entity_and_stays_within_two_of_target(
    grown: DataFrame, assigned: DataFrame
) -> None:
    after = assign(grown, stratify_by="label", previous=assigned)
    assert sticky_moves(assigned, after) == 0
    assert after.count() == grown.select("user_id").distinct().count()
    for stratum, per_split in counts_by_stratum(after).items():
        total = sum(per_split.values())
        for split, share in SHARES.items():
            assert abs(per_split[split] - total * share) <= 2, (stratum, per_split)


def test_previous_over_target_keeps_its_entities_and_new_ones_fill_the_deficits(
    spark: SparkSession, grown: DataFrame, assigned: DataFrame
) -> None:
    # an old assignment that put the whole common stratum's first third into test (over target)
    skewed = assigned.withColumn(
        "split", F.when((F.col("label") == "common") & (F.col("user_id") < user_id(RARE_TOTAL + COMMON_SIZE // 3)), "test").otherwise(F.col("split"))
    )
    after = assign(grown, stratify_by="label", previous=skewed)
    assert sticky_moves(skewed, after) == 0
    old_test = skewed.filter((F.col("label") == "common") & (F.col("split") == "test")).count()
    new_common = after.join(skewed, on="user_id", how="left_anti").filter(F.col("label") == "common")
    assert new_common.filter(F.col("split") == "test").count() == 0  # the overfull split takes none
    common = counts_by_stratum(after)["common"]
    total = sum(common.values())
    assert common["test"] == old_test
    # the new entities went to train and val in proportion to their deficits
    deficits = {s: max(0, round(total * SHARES[s]) - skewed.filter((F.col("label") == "common") & (F.col("split") == s)).count()) for s in ("train", "val")}
    got = Counter(r.split for r in new_common.select("split").collect())
    share_train = deficits["train"] / sum(deficits.values())
    assert abs(got["train"] - share_train * sum(got.values())) <= 1


def test_an_entity_whose_stratum_changed_keeps_its_split(events: DataFrame, assigned: DataFrame) -> None:
    relabelled = events.withColumn("label", F.when(F.col("user_id") == "u0000000", "rare_39").otherwise(F.col("label")))
    after = assign(relabelled, stratify_by="label", previous=assigned)
    assert sticky_moves(assigned, after) == 0
    assert after.filter(F.col("user_id") == "u0000000").first().label == "rare_39"


def test_previous_entities_missing_from_df_are_not_returned(events: DataFrame, assigned: DataFrame) -> None:
    fewer = events.filter(F.col("user_id") >= "u0000100")
    after = assign(fewer, stratify_by="label", previous=assigned)
    assert after.count() == fewer.select("user_id").distinct().count()
    assert sticky_moves(assigned, after) == 0


def test_cuts_far_from_their_expected_place_are_settled_by_ranking_only_their_buckets(
    events: DataFrame, assigned: DataFrame
) -> None:
    # previous holds half the common stratum, all in train: the new half's quotas are 60/20/20 %,
    # not 80/10/10, so a cut falls outside the fine windows, in a coarse bucket of many entities
    half = assigned.filter((F.col("label") == "common") & (F.col("user_id") < user_id(RARE_TOTAL + COMMON_SIZE // 2))).withColumn("split", F.lit("train"))
    records = _capture_split_logs()
    after = assign(events, stratify_by="label", previous=half, buckets=256)
    assert sticky_moves(half, after) == 0
    for stratum, per_split in counts_by_stratum(after).items():
        assert_largest_remainder(per_split)
    ranked = [r.args for r in records if "boundary pass ranked" in r.msg]
    assert ranked, "expected the boundary pass to run"
    atoms_ranked, bucket_count = ranked[0]
    assert 0 < atoms_ranked < COMMON_SIZE / 20 and bucket_count <= 2


def test_a_cut_that_needs_its_key_orders_entities_of_equal_hash_by_key(spark: SparkSession) -> None:
    """Two entities sharing a 64-bit hash at a cut (odds ~1e-6 in 5 M entities, so the data is
    made by hand): the cut table then carries the cut entity's key, and the final pass's
    comparison orders equal hashes by key; kept entities keep their split."""
    from mlv_spark.splits import SplitParams
    from mlv_spark.splits.exact import _split_from_cuts
    from mlv_spark.splits.spec import SplitSpec, entity_tie, internal

    table = spark.createDataFrame([("b",)], "user_id string")
    params = SplitParams.of(entity_key="user_id", ratios={"a": 0.5, "b": 0.5}, seed=1)
    spec = SplitSpec.build(table, params, one_row_per_entity=True, buckets=16)
    rows = spark.createDataFrame(
        [("4", 4, None), ("b", 5, None), ("c", 5, None), ("d", 5, None), ("6", 6, None), ("a", 9, 0)],
        "k string, h long, prev int",
    )
    cut = F.struct(F.lit("c").alias("t0"))  # the first entity at or past the cut: hash 5, key "c"
    joined = rows.select(
        F.col("k").alias(internal("key0")), F.col("h").alias(internal("h")), F.col("prev").alias(internal("prev")),
        F.lit(5).cast("long").alias(internal("ch0")), cut.alias(internal("ct0")),
        F.lit(None).cast("long").alias(internal("ch1")), F.lit(None).cast("struct<t0:string>").alias(internal("ct1")),
        F.lit(0).alias(internal("o0")), F.lit(1).alias(internal("o1")), F.lit(1).alias(internal("o2")),
    )  # fmt: skip
    split = F.expr(_split_from_cuts(spec, entity_tie(spec)))
    got = {r[0]: r[1] for r in joined.select(internal("key0"), split).collect()}
    assert got == {"4": "a", "b": "a", "c": "b", "d": "b", "6": "b", "a": "a"}
    without_keys = F.expr(_split_from_cuts(spec, None))  # no cut needs a key: equal hashes are past it
    assert {r[0]: r[1] for r in joined.select(internal("key0"), without_keys).collect()}["b"] == "b"


def test_cuts_near_their_expected_place_are_settled_from_the_histogram_alone(spark: SparkSession) -> None:
    # 20,000 entities in 64 coarse buckets (~310 each): a cut is settled without the boundary
    # pass only if the histogram splits the buckets around its expected place (rotated per
    # stratum and seed) finely enough; a misplaced fine window leaves it in a bucket of hundreds
    table = spark.range(20_000).selectExpr("CAST(id AS STRING) AS user_id", "'common' AS label")
    for seed in (7, 8, 9):
        records = _capture_split_logs()
        result = assign_splits(table, entity_key="user_id", ratios=RATIOS, seed=seed, stratify_by="label", buckets=64, one_row_per_entity=True)
        cuts = [r.args for r in records if "settled from the histogram" in r.msg]
        assert cuts and cuts[0][0] == 3 and cuts[0][1] == 0, cuts  # the three arcs' starts from the histogram, none ranked
        assert not [r for r in records if "boundary pass ranked" in r.msg]
        assert_largest_remainder(counts_by_stratum(result)["common"])


def _capture_split_logs() -> list[logging.LogRecord]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("mlv_spark.splits")
    for handler in [h for h in logger.handlers if type(h).__name__ == "Keep"]:
        logger.removeHandler(handler)
    logger.addHandler(Keep())
    return records


# ---- 6. group-safe ------------------------------------------------------------------------------


def test_no_group_straddles_two_splits_and_each_stratum_is_within_one_group_of_target(events: DataFrame) -> None:
    result = assign(events, stratify_by="label", group_by="household")
    assert result.count() == events.select("user_id").distinct().count()
    leaks = result.groupBy("household").agg(F.countDistinct("split").alias("splits")).filter("splits > 1").count()
    assert leaks == 0
    largest_group = events.groupBy("household").agg(F.countDistinct("user_id").alias("n")).agg(F.max("n")).first()[0]
    assert largest_group >= 3
    deviations = Counter()
    for stratum, per_split in counts_by_stratum(result).items():
        total = sum(per_split.values())
        for split, share in SHARES.items():
            deviation = per_split[split] - total * share
            assert abs(deviation) <= largest_group + 1, (stratum, per_split)  # LR target +- a group
            deviations[split] += deviation
    entities = result.count()
    for split, deviation in deviations.items():  # the seeded circle leaves no systematic bias
        assert abs(deviation) < 0.01 * entities, deviations


def test_a_group_spanning_strata_follows_its_dominant_stratum(spark: SparkSession) -> None:
    rows = [(f"e{i}", "a" if i % 4 else "b", f"g{i // 4}") for i in range(400)]
    frame = spark.createDataFrame(rows, "k string, s string, g string")
    result = assign_splits(frame, entity_key="k", ratios={"train": 0.5, "test": 0.5}, seed=3, stratify_by="s", group_by="g")
    assert result.groupBy("g").agg(F.countDistinct("split").alias("n")).filter("n > 1").count() == 0
    assert result.filter(F.col("s") == "b").count() == 100  # each entity still reports its own stratum
    assert Counter(r.split for r in result.collect()) == {"train": 200, "test": 200}


def test_groups_stay_whole_when_sticky(grown: DataFrame, events: DataFrame) -> None:
    first = assign(events, group_by="household")
    after = assign(grown, group_by="household", previous=first)
    assert sticky_moves(first, after) == 0
    assert after.groupBy("household").agg(F.countDistinct("split").alias("k")).filter("k > 1").count() == 0


# ---- 7. out-of-time -----------------------------------------------------------------------------

CUTOFF = datetime(2024, 10, 1, tzinfo=timezone.utc)
GAP = timedelta(days=14)


def test_future_splits_hold_only_events_at_or_after_cutoff_plus_gap(events: DataFrame) -> None:
    rows = assign(events, stratify_by="label",
        time_column="event_timestamp", cutoff=CUTOFF, gap=GAP, per_row=True,
    )  # fmt: skip
    past, future = F.col("event_timestamp") < F.lit(CUTOFF), F.col("event_timestamp") >= F.lit(CUTOFF + GAP)
    assert rows.filter((F.col("split") == "train") & ~past).count() == 0
    assert rows.filter((F.col("split") != "train") & ~future).count() == 0
    assert {r.split for r in rows.select("split").distinct().collect()} == set(RATIOS)
    in_gap = events.filter(~past & ~future)
    assert rows.count() == events.count() - in_gap.count()  # gap rows belong to no split
    assert rows.columns == [*events.columns, "split"]


def test_out_of_time_apportions_each_period_exactly(events: DataFrame) -> None:
    units = assign(events, stratify_by="label",
        time_column="event_timestamp", cutoff=CUTOFF, gap=GAP,
    )  # fmt: skip
    future = units.filter(F.col("split") != "train")
    for stratum, per_split in counts_by_stratum(future).items():
        assert_largest_remainder(per_split, {"val": Fraction(1, 2), "test": Fraction(1, 2)})
    assert units.filter((F.col("split") == "train") & (F.col("event_timestamp") >= F.lit(CUTOFF))).count() == 0
    # an entity may appear once per period: its past events train, its future events evaluate
    assert units.groupBy("user_id").count().filter("count > 2").count() == 0


def test_exclude_train_entities_never_reuses_an_entity_that_has_training_events(events: DataFrame) -> None:
    units = assign(events, time_column="event_timestamp", cutoff=CUTOFF,
        gap=GAP, future_splits=["test"], exclude_train_entities=True,
    )  # fmt: skip
    assert units.groupBy("user_id").count().filter("count > 1").count() == 0
    past_entities = events.filter(F.col("event_timestamp") < F.lit(CUTOFF)).select("user_id").distinct()
    assert units.filter(F.col("split") == "test").join(past_entities, "user_id").count() == 0
    assert units.filter(F.col("split") == "test").count() > 0
    counts = Counter(r.split for r in units.filter(F.col("split") != "test").select("split").collect())
    assert_largest_remainder(counts, {"train": Fraction(8, 9), "val": Fraction(1, 9)})


# ---- 8. scales: nothing funnels a stratum through one task -------------------------------------


def _plan(frame: DataFrame) -> str:
    return frame._jdf.queryExecution().executedPlan().toString()


def test_the_assignment_plan_has_no_window_sort_or_single_partition(events: DataFrame) -> None:
    plan = _plan(assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=7, stratify_by="label"))
    for forbidden in ("Window", "SinglePartition", "Sort ", "SortAggregate"):
        assert forbidden not in plan, plan
    entity_table = events.dropDuplicates(["user_id"])
    one_pass = assign_splits(entity_table, entity_key="user_id", ratios=RATIOS, seed=7, stratify_by="label", one_row_per_entity=True)
    shuffles = [line for line in _plan(one_pass).splitlines() if "Exchange" in line and "BroadcastExchange" not in line]
    assert len(shuffles) == 1, _plan(one_pass)  # only the dropDuplicates above; the split adds none


def test_the_final_pass_skips_reductions_the_histogram_pass_found_needless(spark: SparkSession, events: DataFrame) -> None:
    """The histogram pass counts each entity's rows and each group's strata: for an entity table
    whose groups each lie in one stratum, the returned frame takes the rows as they are (no
    aggregation, no shuffle), as one_row_per_entity=True does, and places each entity by its
    group's hash; several rows per entity, or a group spanning strata, are aggregated."""
    table = build_entities(spark).select("user_id", "label", "household")

    def split(frame: DataFrame, **options) -> DataFrame:
        return assign_splits(frame, entity_key="user_id", ratios=RATIOS, seed=7, stratify_by="label", **options)

    def aggregates(frame: DataFrame) -> list[str]:
        return [line for line in _plan(frame).splitlines() if "Aggregate" in line or ("Exchange" in line and "Broadcast" not in line)]

    for options in ({}, {"group_by": "household"}, {"per_row": True, "group_by": "household"}):
        assert not aggregates(split(table, **options)), _plan(split(table, **options))
    assert aggregates(split(events))  # several rows per entity
    common_household = table.where(F.col("label") == "common").first()["household"]
    straddling = table.withColumn("household", F.when(F.col("user_id") == user_id(0), F.lit(common_household)).otherwise(F.col("household")))
    assert aggregates(split(straddling, group_by="household"))  # a household of rare and common entities
    nobody = spark.createDataFrame([], "user_id string, split string")
    with_previous = split(table, group_by="household", previous=nobody)
    assert aggregates(with_previous)  # groups are aggregated for previous: nothing kept, same placement
    assert_df_equality(with_previous, split(table, group_by="household"), ignore_row_order=True, ignore_nullable=True)
    for options in ({}, {"group_by": "household"}):
        entities = split(table, **options)
        assert_df_equality(entities, split(table, one_row_per_entity=True, **options), ignore_row_order=True, ignore_nullable=True)
        # the same entities through the reductions: every row twice, and (groups) an empty previous
        reduced = split(table.unionByName(table), **options)
        assert aggregates(reduced)
        assert_df_equality(entities, reduced, ignore_row_order=True, ignore_nullable=True)
        rows = split(table, per_row=True, **options)
        expected = table.join(entities.select("user_id", "split"), on="user_id").select(*table.columns, "split")
        assert_df_equality(rows, expected, ignore_row_order=True, ignore_nullable=True)
        assert_df_equality(rows, split(table, per_row=True, one_row_per_entity=True, **options), ignore_row_order=True, ignore_nullable=True)


# ---- several rows per entity, per-row output ----------------------------------------------------


def test_per_row_gives_every_row_its_entity_split(events: DataFrame, assigned: DataFrame) -> None:
    rows = assign(events, stratify_by="label", per_row=True)
    assert rows.columns == [*events.columns, "split"]
    expected = events.join(assigned.select("user_id", "split"), on="user_id").select(*events.columns, "split")
    assert_df_equality(rows, expected, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(attach_splits(events, assigned, entity_key="user_id"), expected, ignore_row_order=True, ignore_nullable=True)


def test_a_stratum_that_differs_between_rows_of_an_entity_is_an_error_naming_it(events: DataFrame) -> None:
    one_more_row = events.filter(F.col("user_id") == "u0000002").limit(1).withColumn("label", F.lit("other"))
    broken = events.unionByName(one_more_row)
    with pytest.raises(InvalidInputError, match=r"stratify_by column\(s\) \['label'\] differ between rows of 1 .*u0000002"):
        assign(broken, stratify_by="label")


def test_composite_keys_are_hashed_column_by_column(spark: SparkSession) -> None:
    pairs = spark.createDataFrame([("1", "23"), ("12", "3"), ("", "123"), ("123", "")], "a string, b string")
    hashes = pairs.select(salted_hash(7, "a", "b").alias("h")).distinct().count()
    assert hashes == 4  # concatenating the columns would make all four the same "123"
    result = assign_splits(pairs, entity_key=["a", "b"], ratios={"train": 0.5, "test": 0.5}, seed=7)
    assert result.count() == 4
    assert Counter(r.split for r in result.collect()) == {"train": 2, "test": 2}


def test_null_strata_form_a_stratum_of_their_own(spark: SparkSession) -> None:
    frame = spark.range(40).select(F.col("id").alias("k"), F.when(F.col("id") < 20, F.lit(None)).otherwise("x").alias("s"))
    result = assign_splits(frame, entity_key="k", ratios={"train": 0.5, "test": 0.5}, seed=1, stratify_by="s")
    counts = counts_by_stratum(result, "s")
    assert counts[None] == {"train": 10, "test": 10} and counts["x"] == {"train": 10, "test": 10}


def test_column_names_are_taken_literally_even_when_quoted_names_are_regexes(events: DataFrame, assigned: DataFrame) -> None:
    """Dots, spaces, backticks and regex characters in names; and the session setting that
    makes quoted names in SQL text regexes (Feast's Spark store turns it on for the session)."""
    odd_names = ["user.id", "la`bel (x)", "house.*+", "event time"]
    odd_events = events.toDF(*odd_names)
    grouped = assign(events, stratify_by="label", group_by="household")
    previous = grouped.filter(F.col("user_id") < "u0005000").select("user_id", "split")
    calls = {
        "sticky groups": dict(stratify_by="label", group_by="household", previous=previous),
        "out of time, per row": dict(
            stratify_by="label", time_column="event_timestamp", cutoff="2024-10-01 00:00:00",
            exclude_train_entities=True, per_row=True,
        ),
        "hash": dict(stratify_by="label", method="hash"),
    }  # fmt: skip
    renamed = dict(zip(events.columns, odd_names))
    spark = events.sparkSession
    spark.conf.set("spark.sql.parser.quotedRegexColumnNames", "true")
    try:
        for what, arguments in calls.items():
            plain = assign(events, **arguments)
            odd_arguments = {
                name: (renamed[value] if isinstance(value, str) and name != "cutoff" and name != "method" else value)
                for name, value in arguments.items()
            }
            if "previous" in arguments:
                odd_arguments["previous"] = previous.toDF(renamed["user_id"], "split")
            odd = assign(odd_events, **odd_arguments | {"entity_key": "user.id"})
            assert odd.columns == [renamed.get(c, c) for c in plain.columns], what
            assert_df_equality(odd.toDF(*plain.columns), plain, ignore_row_order=True, ignore_nullable=True)
        attached = attach_splits(odd_events, assigned.toDF(*[renamed.get(c, c) for c in assigned.columns]), entity_key="user.id")
        assert attached.count() == events.count()
    finally:
        spark.conf.unset("spark.sql.parser.quotedRegexColumnNames")


# ---- hash method --------------------------------------------------------------------------------


def test_hash_method_is_proportional_within_binomial_error_and_stable_as_data_grows(
    events: DataFrame, grown: DataFrame
) -> None:
    before = assign(events, stratify_by="label", method="hash")
    after = assign(grown, stratify_by="label", method="hash")
    assert sticky_moves(before, after) == 0
    total = before.count()
    assert total == events.select("user_id").distinct().count()
    for split, count in Counter(r.split for r in before.select("split").collect()).items():
        share = float(SHARES[split])
        assert abs(count - total * share) < 4 * math.sqrt(total * share * (1 - share))


def test_hash_method_with_one_row_per_entity_is_one_narrow_pass(events: DataFrame) -> None:
    rows = assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=7, method="hash", per_row=True)
    assert "Exchange" not in _plan(rows)
    grouped = assign(events, method="hash", group_by="household", per_row=True)
    assert grouped.groupBy("household").agg(F.countDistinct("split").alias("k")).filter("k > 1").count() == 0


def test_hash_method_fails_the_action_on_a_null_key(spark: SparkSession) -> None:
    frame = spark.createDataFrame([("a",), (None,)], "k string")
    result = assign_splits(frame, entity_key="k", ratios=RATIOS, seed=1, method="hash", one_row_per_entity=True)
    with pytest.raises(Exception, match="data check failed: entity_key column 'k' is null"):
        result.collect()


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ratios": {"train": 0.8, "test": 0.1}}, r"ratios sum to 0.9, not 1"),
        ({"ratios": {"train": 1.1, "test": -0.1}}, r"ratio of split 'test' is -0.1; every ratio must be > 0"),
        ({"ratios": {"train": 1.0, "test": 0}}, r"ratio of split 'test' is 0"),
        ({"ratios": {}}, r"ratios is empty"),
        ({"ratios": [("train", 0.5), ("train", 0.5)]}, r"split name 'train' appears twice"),
        ({"ratios": {"train": float("nan")}}, r"finite number"),
        ({"ratios": {"": 1.0}}, r"split name '' must be a non-empty string"),
        ({"entity_key": "nope"}, r"df has no column\(s\) \['nope'\]"),
        ({"stratify_by": ["label", "colour"]}, r"df has no column\(s\) \['colour'\]"),
        ({"entity_key": []}, r"entity_key is empty"),
        ({"seed": "7"}, r"seed='7' must be an int"),
        ({"method": "fast"}, r"method='fast' is unknown"),
        ({"buckets": 1000}, r"buckets=1000 must be a power of two"),
        ({"cutoff": "2024-10-01"}, r"cutoff needs time_column"),
        ({"time_column": "event_timestamp", "cutoff": "not a date"}, r"cutoff='not a date' is not a valid timestamp"),
        ({"time_column": "event_timestamp", "cutoff": "2024-10-01", "future_splits": ["train", "val", "test"]}, r"must name some but not all"),
        ({"time_column": "event_timestamp", "cutoff": "2024-10-01", "gap": timedelta(days=-1)}, r"gap=.* must be a timedelta >= 0"),
        ({"exclude_train_entities": True}, r"exclude_train_entities=True needs the out-of-time mode"),
        ({"time_column": "label", "cutoff": "2024-10-01"}, r"time_column 'label' has type string"),
    ],
)
def test_bad_arguments_are_rejected_before_any_spark_job(events: DataFrame, overrides: dict, message: str) -> None:
    arguments = {"entity_key": "user_id", "ratios": RATIOS, "seed": 7, "stratify_by": "label"} | overrides
    with pytest.raises(InvalidInputError, match=message):
        assign_splits(events, **arguments)


def test_null_keys_are_rejected_by_the_histogram_pass(spark: SparkSession) -> None:
    frame = spark.createDataFrame([("a", "x"), (None, "x"), ("b", "y")], "k string, s string")
    with pytest.raises(InvalidInputError, match=r"entity_key column\(s\) \['k'\] are null in 1 unit"):
        assign_splits(frame, entity_key="k", ratios=RATIOS, seed=1, stratify_by="s")


def test_empty_input_is_rejected(spark: SparkSession) -> None:
    frame = spark.createDataFrame([], "k string, s string")
    with pytest.raises(InvalidInputError, match=r"df has no rows to split"):
        assign_splits(frame, entity_key="k", ratios=RATIOS, seed=1, stratify_by="s")


def test_float_keys_are_rejected(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(1.0,)], "k double")
    with pytest.raises(InvalidInputError, match=r"column 'k' has type double; keys and groups must be"):
        assign_splits(frame, entity_key="k", ratios=RATIOS, seed=1)


def test_previous_with_an_unknown_split_name_is_rejected(events: DataFrame, assigned: DataFrame) -> None:
    renamed = assigned.withColumn("split", F.when(F.col("split") == "val", "validation").otherwise(F.col("split")))
    with pytest.raises(InvalidInputError, match=r"previous gives \d+ unit\(s\) a split that is unknown"):
        assign(events, stratify_by="label", previous=renamed)


def test_previous_without_the_split_column_is_rejected(events: DataFrame, assigned: DataFrame) -> None:
    with pytest.raises(InvalidInputError, match=r"previous has no column\(s\) \['split'\]"):
        assign(events, previous=assigned.drop("split"))


def test_an_entity_in_two_groups_is_rejected(spark: SparkSession) -> None:
    frame = spark.createDataFrame([("a", "g1"), ("a", "g2"), ("b", "g1")], "k string, g string")
    with pytest.raises(InvalidInputError, match=r"group_by column\(s\) \['g'\] differ between rows of 1 .*'a'"):
        assign_splits(frame, entity_key="k", ratios=RATIOS, seed=1, group_by="g")


def test_previous_that_splits_a_group_is_rejected(spark: SparkSession) -> None:
    frame = spark.createDataFrame([("a", "g1"), ("b", "g1"), ("c", "g2")], "k string, g string")
    previous = spark.createDataFrame([("a", "train"), ("b", "test")], "k string, split string")
    with pytest.raises(InvalidInputError, match=r"split inside a group, e\.g\. \('(a|b)',\)"):
        assign_splits(frame, entity_key="k", ratios=RATIOS, seed=1, group_by="g", previous=previous)


def test_a_null_event_time_is_rejected_in_the_out_of_time_mode(spark: SparkSession) -> None:
    frame = spark.createDataFrame([("a", datetime(2024, 1, 1)), ("b", None)], "k string, t timestamp")
    with pytest.raises(InvalidInputError, match=r"time_column 't' is null in 1 unit"):
        assign_splits(frame, entity_key="k", ratios=RATIOS, seed=1, time_column="t", cutoff="2024-06-01")
