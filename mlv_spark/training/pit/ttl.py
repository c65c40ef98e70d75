"""TTL pruning: drop, before the shuffle, the feature rows no entity row can see within a TTL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlv_spark.training.pit.layout import entity_fields, floor_div, time_parts


@dataclass(frozen=True)
class TtlFilter:
    """Which feature rows some entity row can see within a TTL: a bounded, conservative filter.

    A feature row at time f (epoch microseconds, floored for nanosecond sources) can only be
    the result for an entity row of its key at time e with e - ttl <= f <= e; any other row,
    even when it is the latest row before an entity row, is older than the TTL allows, and so
    is every row it would shadow, so dropping it changes no result. Time is cut into buckets
    of ttl / 4 and 64 consecutive buckets form a word; for each (hash slot of the join key,
    word folded modulo FOLD) a 64-bit mask marks the buckets some entity row's window
    [e - ttl, e] touches. A feature row is kept when its bucket's bit is set. Slot and fold
    collisions only set more bits, so no row that could be a result is ever dropped; the
    table has at most SLOTS * FOLD rows (4 MB), whatever the data, and is broadcast.
    """

    table: DataFrame  # __mlv_pk (slot and folded word), __mlv_bits
    bucket: int  # bucket width, microseconds

    SLOTS = 1 << 16
    FOLD = 4

    @staticmethod
    def _slot_and_word(keys: list[str], word: str) -> str:
        # SLOTS and FOLD are powers of two: a mask is pmod
        slot = f"(xxhash64({', '.join(keys)}) & {TtlFilter.SLOTS - 1})"
        return f"(({word}) & {TtlFilter.FOLD - 1}) * {TtlFilter.SLOTS} + {slot}"

    @staticmethod
    def build(
        entity_df: DataFrame, entity_ts: str, keys: list[str], ttl: timedelta, partitions: int | None = None
    ) -> "TtlFilter":
        """From the entity rows: ``keys`` are SQL text over ``entity_fields`` names, in the
        pass's common key types (as the feature side hashes them). ``partitions``: the masks'
        aggregation runs in that many (for a plan without adaptive execution, which would
        otherwise use spark.sql.shuffle.partitions, unmerged); ``None`` leaves it to Spark."""
        ttl_micros = ttl // timedelta(microseconds=1)
        bucket = max(1, ttl_micros // 4)
        fields = entity_fields(entity_df.columns)
        time = time_parts(fields[entity_ts], entity_df.schema[entity_ts].dataType, "entity time")[0]
        first, last = floor_div(f"__mlv_t - {ttl_micros}", bucket), floor_div("__mlv_t", bucket)
        masks = (
            entity_df.toDF(*fields.values())
            .selectExpr(*[f"{k} AS __mlv_k{i}" for i, k in enumerate(keys)], f"{time} AS __mlv_t")
            .where("__mlv_t IS NOT NULL")
            .selectExpr(
                *[f"__mlv_k{i}" for i in range(len(keys))], f"{first} AS __mlv_b1", f"{last} AS __mlv_b2",
            )
            .selectExpr(
                "*", f"explode(sequence({floor_div('__mlv_b1', 64)}, {floor_div('__mlv_b2', 64)})) AS __mlv_w"
            )
            .selectExpr(
                f"{TtlFilter._slot_and_word([f'__mlv_k{i}' for i in range(len(keys))], '__mlv_w')} AS __mlv_pk",
                "greatest(__mlv_b1 - __mlv_w * 64, 0) AS __mlv_lo",
                "least(__mlv_b2 - __mlv_w * 64, 63) AS __mlv_hi",
            )
            .selectExpr(
                "__mlv_pk",
                "CASE WHEN __mlv_hi - __mlv_lo = 63 THEN CAST(-1 AS BIGINT) "
                "ELSE shiftleft(shiftleft(CAST(1 AS BIGINT), __mlv_hi - __mlv_lo + 1) - 1, __mlv_lo) END AS __mlv_m",
            )
        )
        if partitions is not None:
            masks = masks.repartition(partitions, "__mlv_pk")
        table = masks.groupBy("__mlv_pk").agg(F.expr("bit_or(__mlv_m) AS __mlv_bits"))
        return TtlFilter(table=F.broadcast(table), bucket=bucket)

    def apply(self, rows: DataFrame, keys: list[str], micros: str) -> DataFrame:
        """``rows`` (feature rows with non-null keys and time) without those no entity row can
        see; ``keys`` and ``micros`` are SQL text over ``rows`` (keys in the common types)."""
        bucket = floor_div(micros, self.bucket)
        # Never null (``rows`` has a time), but Spark cannot tell: without the coalesce it
        # infers an IS NOT NULL filter on the join key and computes the key twice per row.
        located = rows.selectExpr(
            "*",
            f"coalesce({self._slot_and_word(keys, floor_div(bucket, 64))}, 0) AS __mlv_pk",
            f"coalesce(CAST(({bucket}) & 63 AS INT), 0) AS __mlv_pb",
        )
        kept = located.join(self.table, on="__mlv_pk").where("(shiftright(__mlv_bits, __mlv_pb) & 1) = 1")
        return kept.drop("__mlv_pk", "__mlv_pb", "__mlv_bits")

