"""Synthetic raw card transactions and fraud labels (the demo domain), deterministic per seed.

`raw.transactions` (txn_id, user_id, merchant_id, amount, currency, channel, event_timestamp,
created) and `raw.fraud_labels` (txn_id, is_fraud, label_timestamp). Labels arrive days after
the transaction (chargebacks later than confirmations); only labels that arrived before the end
of the generated period are present.

The planted signal, which a model trained on the demo's features can find:

* a few users are compromised once: for two days they make bursts of online transactions,
  with amounts several times their usual, often at risky merchants; most of those are fraud;
* 5 % of merchants are risky: their ordinary transactions are fraud far more often;
* online transactions are fraud slightly more often.

So velocity (`txn_count_7d`), amounts against the user's average, and the merchant's fraud rate
as known from earlier labels all carry signal. Pure Spark SQL (no Python UDFs): it runs where
the data goes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError
from mlv_spark.pipeline import Output, Pipeline, PipelineContext

BURST_DAYS, BURST_PER_DAY = 2, 12
MAX_RATE = 1.2  # transactions per user and day, at most (the mean is 0.7)


def _u(seed: int, salt: str, *columns: Column | str) -> Column:
    """A deterministic uniform value in [0, 1) from the columns, the salt and the seed."""
    cols = [F.col(c) if isinstance(c, str) else c for c in columns]
    return (F.abs(F.xxhash64(F.lit(seed), F.lit(salt), *cols)) % 1_000_003) / 1_000_003.0


def transactions(spark, users: int, days: int, seed: int, start: datetime) -> DataFrame:
    merchants = max(50, users // 20)
    slots = int(MAX_RATE * days) + 1
    burst_slots = BURST_DAYS * BURST_PER_DAY
    per_user = slots + burst_slots
    base = (
        spark.range(users * per_user)
        .select((F.col("id") / per_user).cast("long").alias("user_id"), (F.col("id") % per_user).alias("slot"))
        .withColumn("rate", F.lit(0.2) + _u(seed, "rate", "user_id"))  # 0.2-1.2 a day
        .withColumn("scale", F.lit(15.0) + F.pow(_u(seed, "scale", "user_id"), 2) * 250)
        .withColumn("compromised", _u(seed, "compromised", "user_id") < 0.03)
        .withColumn("burst", F.col("slot") >= slots)
        .where(F.when(F.col("burst"), F.col("compromised")).otherwise(F.col("slot") < F.floor(F.col("rate") * days)))
    )
    burst_day = F.lit(10) + F.floor(_u(seed, "burst-day", "user_id") * (days - 15))
    day = F.when(F.col("burst"), burst_day + _u(seed, "burst-time", "user_id", "slot") * BURST_DAYS) \
        .otherwise(_u(seed, "time", "user_id", "slot") * days)
    favourite = F.floor(_u(seed, "fav", "user_id", F.col("slot") % 3) * merchants)
    any_merchant = F.floor(_u(seed, "merchant", "user_id", "slot") * merchants)
    risky_merchant = F.floor(_u(seed, "risky-pick", "user_id", "slot") * (merchants * 0.05))
    merchant = (
        F.when(F.col("burst") & (_u(seed, "burst-risky", "user_id", "slot") < 0.6), risky_merchant)
        .when(_u(seed, "fav-or-not", "user_id", "slot") < 0.7, favourite)
        .otherwise(any_merchant)
    ).cast("long")
    channel_u = _u(seed, "channel", "user_id", "slot")
    channel = (
        F.when(F.col("burst"), F.when(channel_u < 0.85, "online").otherwise("pos"))
        .when(channel_u < 0.4, "online").when(channel_u < 0.95, "pos").otherwise("atm")
    )
    amount = F.col("scale") * F.when(F.col("burst"), F.lit(2.0) + _u(seed, "amount", "user_id", "slot") * 3) \
        .otherwise(F.lit(0.3) + _u(seed, "amount", "user_id", "slot") * 1.4)
    event = F.lit(start) + F.make_interval(secs=(day * 86400).cast("decimal(18,6)"))
    return base.select(
        (F.col("user_id") * 1_000_000 + F.col("slot")).alias("txn_id"),
        "user_id",
        merchant.alias("merchant_id"),
        F.round(amount, 2).alias("amount"),
        F.when(_u(seed, "currency", "user_id") < 0.8, "EUR").otherwise("USD").alias("currency"),
        channel.alias("channel"),
        event.alias("event_timestamp"),
        (event + F.make_interval(secs=(_u(seed, "lag", "user_id", "slot") * 300).cast("decimal(18,6)"))).alias("created"),
        "burst",
    )


def fraud_labels(txns: DataFrame, merchants: int, seed: int, end: datetime) -> DataFrame:
    risky = F.col("merchant_id") < F.lit(int(merchants * 0.05))
    p = F.when(F.col("burst"), 0.85).otherwise(
        F.lit(0.004) + F.when(risky, 0.06).otherwise(0.0) + F.when(F.col("channel") == "online", 0.004).otherwise(0.0))
    is_fraud = (_u(seed, "fraud", "txn_id") < p)
    delay_days = F.when(is_fraud, F.lit(3.0) + _u(seed, "delay", "txn_id") * 25).otherwise(
        F.lit(1.0) + _u(seed, "delay", "txn_id") * 2)
    label_time = F.col("event_timestamp") + F.make_interval(secs=(delay_days * 86400).cast("decimal(18,6)"))
    return (
        txns.select("txn_id", is_fraud.cast("int").alias("is_fraud"), label_time.alias("label_timestamp"))
        .where(F.col("label_timestamp") < F.lit(end))
    )


def check(p: Mapping[str, Any]) -> None:
    if p["users"] < 1 or p["days"] < 20:
        raise InvalidInputError(f"card_transactions: users={p['users']}, days={p['days']}: "
                                "give at least 1 user and 20 days (e.g. --param users=5000 --param days=90)")
    try:
        datetime.fromisoformat(p["start"])
    except ValueError:
        raise InvalidInputError(f"card_transactions: start={p['start']!r} is not a date like 2024-01-01") from None


def build(ctx: PipelineContext) -> dict[str, DataFrame]:
    p = ctx.params
    start = datetime.fromisoformat(p["start"])
    end = start + timedelta(days=p["days"])
    txns = transactions(ctx.spark, p["users"], p["days"], p["seed"], start)
    labels = fraud_labels(txns, max(50, p["users"] // 20), p["seed"], end)
    return {"raw.transactions": txns.drop("burst"), "raw.fraud_labels": labels}


PIPELINE = Pipeline(
    name="card_transactions",
    description=__doc__.splitlines()[0],
    inputs=(),
    outputs=(
        Output("raw.transactions", min_rows=1, max_null_rate={"*": 0.0}),
        Output("raw.fraud_labels", min_rows=1, max_null_rate={"*": 0.0}),
    ),
    params={"users": 5000, "days": 90, "seed": 7, "start": "2024-01-01"},
    build=build,
    check=check,
)
