"""Deterministic synthetic fraud-style data for the demo and benchmarks (pure Spark)."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

START = datetime(2024, 1, 1)


def _uniform(seed: int, *columns: str):
    """A deterministic value in [0, 1) from the columns and the seed."""
    return (F.abs(F.xxhash64(F.lit(seed), *[F.col(c) for c in columns])) % 1_000_000) / 1_000_000.0


def labelled_events(spark: SparkSession, users: int, events_per_user: int = 3, seed: int = 0) -> DataFrame:
    """(user_id, event_timestamp, label): label events over 90 days, ~3 % positive."""
    return (
        spark.range(users * events_per_user)
        .select((F.col("id") % users).alias("user_id"), (F.col("id") / users).cast("int").alias("n"))
        .withColumn("event_timestamp", F.lit(START) + F.make_interval(
            days=(_uniform(seed, "user_id", "n") * 90).cast("int"), hours=F.col("n")))
        .withColumn("label", (_uniform(seed + 1, "user_id") < 0.03).cast("int"))
        .select("user_id", "event_timestamp", "label")
    )


def user_stats(spark: SparkSession, users: int, days: int = 90, every_days: int = 3, seed: int = 0) -> DataFrame:
    """Daily-ish rolling stats per user with a created timestamp (late-arriving rows exist)."""
    snapshots = days // every_days
    return (
        spark.range(users * snapshots)
        .select((F.col("id") % users).alias("user_id"), (F.col("id") / users).cast("int").alias("k"))
        .withColumn("event_timestamp", F.lit(START) + F.make_interval(days=F.col("k") * every_days))
        .withColumn("created", F.col("event_timestamp") + F.make_interval(
            hours=(_uniform(seed, "user_id", "k") * 12).cast("int")))
        .withColumn("txn_count_7d", (_uniform(seed + 2, "user_id", "k") * 40).cast("long"))
        .withColumn("spend_7d", F.round(_uniform(seed + 3, "user_id", "k") * 5000, 2))
        .select("user_id", "event_timestamp", "created", "txn_count_7d", "spend_7d")
    )


def user_profile(spark: SparkSession, users: int, seed: int = 0) -> DataFrame:
    countries = F.array(*[F.lit(c) for c in ("DE", "FR", "US", "BR", "IN", "JP")])
    return (
        spark.range(users).withColumnRenamed("id", "user_id")
        .withColumn("event_timestamp", F.lit(START) - F.make_interval(days=(_uniform(seed, "user_id") * 400).cast("int")))
        .withColumn("country", F.element_at(countries, (_uniform(seed + 4, "user_id") * 6).cast("int") + 1))
        .withColumn("account_age_days", (_uniform(seed + 5, "user_id") * 2000).cast("long"))
    )
