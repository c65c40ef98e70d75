"""Fraud features from raw card transactions and labels, for the Feast views of
examples/feature_repo (`user_txn_stats`, `merchant_risk`, `txn_details`), plus the labelled
transactions a split version is computed over.

* `features.user_txn_stats`: at every transaction of a user, its rolling `txn_count_7d`,
  `amount_sum_7d`, `amount_avg_30d` and `distinct_merchants_30d` (the transaction included).
* `features.merchant_risk`: one row per label that arrives for a merchant, at the time it
  arrives, with the merchant's smoothed fraud rate over the labels known by then. A point-in-time
  join therefore sees only labels that had arrived before each transaction: no label leakage.
* `features.txn_details`: the transaction's own amount and whether it was online.
* `features.transaction_labels`: transactions whose label is known (the split's entity rows).

`amount_transform` (`raw` or `log1p`) is the normalization the demo's second experiment changes.
"""

from __future__ import annotations

from typing import Any, Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError
from mlv_spark.pipeline import Output, Pipeline, PipelineContext

DAY = 86_400
#: Labels of a made-up merchant with the overall fraud rate that a merchant's rate starts from.
PRIOR_LABELS, PRIOR_RATE = 20.0, 0.01


def amount(column: str, transform: str):
    return F.log1p(F.col(column)) if transform == "log1p" else F.col(column).cast("double")


def user_txn_stats(txns: DataFrame, transform: str) -> DataFrame:
    seconds = F.col("event_timestamp").cast("long")
    by_user = Window.partitionBy("user_id").orderBy(seconds)
    last_7d, last_30d = by_user.rangeBetween(-7 * DAY, 0), by_user.rangeBetween(-30 * DAY, 0)
    value = amount("amount", transform)
    return txns.select(
        "user_id", "event_timestamp", "created",
        F.count(F.lit(1)).over(last_7d).alias("txn_count_7d"),
        F.sum(value).over(last_7d).alias("amount_sum_7d"),
        F.avg(value).over(last_30d).alias("amount_avg_30d"),
        F.size(F.collect_set("merchant_id").over(last_30d)).cast("long").alias("distinct_merchants_30d"),
    )


def merchant_risk(txns: DataFrame, labels: DataFrame) -> DataFrame:
    """The merchant's fraud rate as known at each label's arrival (labels only, never the future)."""
    arrived = labels.join(txns.select("txn_id", "merchant_id"), "txn_id")
    known = Window.partitionBy("merchant_id").orderBy("label_timestamp", "txn_id").rowsBetween(Window.unboundedPreceding, 0)
    frauds, count = F.sum("is_fraud").over(known), F.count(F.lit(1)).over(known)
    return arrived.select(
        "merchant_id",
        F.col("label_timestamp").alias("event_timestamp"),
        ((frauds + PRIOR_LABELS * PRIOR_RATE) / (count + PRIOR_LABELS)).alias("merchant_fraud_rate"),
        count.cast("long").alias("merchant_labels_known"),
    )


def txn_details(txns: DataFrame, transform: str) -> DataFrame:
    return txns.select("txn_id", "event_timestamp", amount("amount", transform).alias("txn_amount"),
                       (F.col("channel") == "online").cast("long").alias("is_online"))


def transaction_labels(txns: DataFrame, labels: DataFrame) -> DataFrame:
    return txns.join(labels, "txn_id").select(
        "txn_id", "user_id", "merchant_id", "event_timestamp", "is_fraud", "label_timestamp")


def check(params: Mapping[str, Any]) -> None:
    if params["amount_transform"] not in ("raw", "log1p"):
        raise InvalidInputError(
            f"fraud_features: amount_transform={params['amount_transform']!r}; use raw or log1p")


def build(ctx: PipelineContext) -> dict[str, DataFrame]:
    transform = ctx.params["amount_transform"]
    txns, labels = ctx.read("raw.transactions"), ctx.read("raw.fraud_labels")
    return {
        "features.user_txn_stats": user_txn_stats(txns, transform),
        "features.merchant_risk": merchant_risk(txns, labels),
        "features.txn_details": txn_details(txns, transform),
        "features.transaction_labels": transaction_labels(txns, labels),
    }


PIPELINE = Pipeline(
    name="fraud_features",
    description=__doc__.splitlines()[0],
    inputs=("raw.transactions", "raw.fraud_labels"),
    outputs=(
        Output("features.user_txn_stats", feature_views=("user_txn_stats",), max_null_rate={"*": 0.0}),
        Output("features.merchant_risk", feature_views=("merchant_risk",), max_null_rate={"*": 0.0}),
        Output("features.txn_details", feature_views=("txn_details",), max_null_rate={"*": 0.0}),
        Output("features.transaction_labels", max_null_rate={"*": 0.0}),
    ),
    params={"amount_transform": "raw"},
    build=build,
    check=check,
)
