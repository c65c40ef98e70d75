"""Skew: join keys with more rows than a threshold, split into time buckets and stitched back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, LongType, StructField, StructType

from mlv_spark.log import get_logger
from mlv_spark.training.pit.layout import (
    BUCKET, TIME, SortKey, View, cast_key, entity_fields, time_parts, values_name,
)

log = get_logger("mlv_spark.training.pit")
_NULL_KEY_SPREAD = 64


@dataclass(frozen=True)
class HotKeys:
    """Join keys with more rows than a threshold, split into time buckets of similar size.

    Buckets are a non-decreasing function of time per key, so every feature row at or before
    an entity row lies in its bucket or an earlier one: the in-bucket winner, if any, is the
    overall winner; otherwise the latest row of the earlier buckets (the carry-in) is.
    """

    table: DataFrame  # keys, __mlv_hot_lo, __mlv_hot_width, __mlv_hot_n
    key_names: list[str]

    @staticmethod
    def find(
        entity_df: DataFrame,
        entity_ts: str,
        group: list[View],
        entity_columns: list[str],
        key_names: list[str],
        key_types: list[DataType],
        hot_key_rows: int,
    ) -> "HotKeys | None":
        fields = entity_fields(entity_df.columns)
        entity_schema = entity_df.schema
        entity_time = time_parts(fields[entity_ts], entity_schema[entity_ts].dataType, "entity time")[0]
        sides = [
            entity_df.toDF(*fields.values()).selectExpr(
                *[
                    f"{cast_key(fields[c], entity_schema[c].dataType, t)} AS {n}"
                    for c, t, n in zip(entity_columns, key_types, key_names)
                ],
                f"{entity_time} AS {TIME}",
            )
        ]
        for view in group:
            ts, columns, schema = view.spec.timestamp_field, view.columns, view.df.schema
            time = time_parts(columns[ts], schema[ts].dataType, ts)[0]
            keys = [view.key_by_entity_column[c] for c in entity_columns]
            sides.append(
                view.internal_df.selectExpr(
                    *[
                        f"{cast_key(columns[k], schema[k].dataType, t)} AS {n}"
                        for k, t, n in zip(keys, key_types, key_names)
                    ],
                    f"{time} AS {TIME}",
                )
            )
        counts = (
            reduce(DataFrame.union, sides)
            .where(reduce(lambda a, b: a & b, [F.col(n).isNotNull() for n in key_names], F.col(TIME).isNotNull()))
            .groupBy(*key_names)
            .agg(F.count(F.lit(1)).alias("n"), F.min(TIME).alias("lo"), F.max(TIME).alias("hi"))
            .where(F.col("n") > hot_key_rows)
            .collect()
        )
        if not counts:
            return None
        rows = []
        for row in counts:
            buckets = math.ceil(row["n"] / hot_key_rows)
            width = max(1, math.ceil((row["hi"] - row["lo"] + 1) / buckets))
            rows.append((*[row[n] for n in key_names], row["lo"], width, buckets))
        schema = StructType(
            [StructField(n, t) for n, t in zip(key_names, key_types)]
            + [
                StructField("__mlv_hot_lo", LongType()),
                StructField("__mlv_hot_width", LongType()),
                StructField("__mlv_hot_n", LongType()),
            ]
        )
        log.info("point-in-time join: %d hot keys split into time buckets", len(rows))
        spark = entity_df.sparkSession
        return HotKeys(table=F.broadcast(spark.createDataFrame(rows, schema)), key_names=key_names)

    def assign_buckets(self, union: DataFrame, sort_key: SortKey) -> DataFrame:
        micros = F.expr(sort_key.micros())
        bucket = F.least(
            F.greatest(
                F.floor((micros - F.col("__mlv_hot_lo")) / F.col("__mlv_hot_width")),
                F.lit(0),
            ),
            F.col("__mlv_hot_n") - 1,
        ).cast(LongType())
        # Entity rows with a null key match nothing; spread them instead of piling them up.
        null_key = reduce(lambda a, b: a | b, [F.col(n).isNull() for n in self.key_names], F.lit(False))
        spread = F.pmod(F.xxhash64(micros), F.lit(_NULL_KEY_SPREAD))
        columns = union.columns
        with_hot = (
            union.join(self.table, on=self.key_names, how="left")
            if self.key_names
            else union.crossJoin(self.table)  # no join keys: the single group is the hot key
        )
        return (
            with_hot.withColumn(
                BUCKET,
                F.when(null_key, spread).otherwise(F.coalesce(bucket, F.lit(0))).cast(LongType()),
            )
            .select(*columns, BUCKET, "__mlv_hot_n")
        )

    def carry_in(
        self,
        joined: DataFrame,
        union: DataFrame,
        group: list[View],
        latest: dict[int, str],
        order: list[str],
        sort_key: SortKey,
    ) -> DataFrame:
        """Fills in-bucket misses of hot keys with the latest row of earlier buckets."""
        features = union.where(f"NOT {sort_key.is_entity_row()} AND __mlv_hot_n IS NOT NULL")
        ordering = F.struct(*[F.col(name).alias(f"o{i}") for i, name in enumerate(order)])
        per_bucket = features.groupBy(*self.key_names, BUCKET).agg(
            *[
                F.max_by(F.col(values_name(v.index)), F.when(F.col(values_name(v.index)).isNotNull(), ordering))
                .alias(f"__mlv_last{v.index}")
                for v in group
            ]
        )
        all_buckets = self.table.select(
            *self.key_names,
            F.explode(F.sequence(F.lit(0).cast(LongType()), F.col("__mlv_hot_n") - 1)).alias(BUCKET),
        )
        before = (
            Window.partitionBy(*self.key_names)
            .orderBy(BUCKET)
            .rowsBetween(Window.unboundedPreceding, -1)
        )
        carry = F.broadcast(
            all_buckets.join(per_bucket, on=[*self.key_names, BUCKET], how="left").select(
                *self.key_names,
                BUCKET,
                *[
                    F.last(f"__mlv_last{v.index}", ignorenulls=True).over(before).alias(f"__mlv_in{v.index}")
                    for v in group
                ],
            )
        )
        filled = joined.join(carry, on=[*self.key_names, BUCKET], how="left")
        return filled.select(
            *[c for c in joined.columns if c not in latest.values()],
            *[
                F.coalesce(F.col(w), F.col(f"__mlv_in{i}")).alias(w)
                for i, w in latest.items()
            ],
        )
