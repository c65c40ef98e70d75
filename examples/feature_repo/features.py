"""Demo feature definitions (card fraud): three entities, three views over the tables that
examples/pipelines/fraud_features.py writes, one feature service."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64)
transaction = Entity(name="transaction", join_keys=["txn_id"], value_type=ValueType.INT64)

user_txn_stats = FeatureView(
    name="user_txn_stats",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="txn_count_7d", dtype=Int64),
        Field(name="amount_sum_7d", dtype=Float64),
        Field(name="amount_avg_30d", dtype=Float64),
        Field(name="distinct_merchants_30d", dtype=Int64),
    ],
    source=SparkSource(
        name="user_txn_stats_source",
        table="features.user_txn_stats",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
)

merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    ttl=timedelta(days=365),
    schema=[Field(name="merchant_fraud_rate", dtype=Float64), Field(name="merchant_labels_known", dtype=Int64)],
    source=SparkSource(name="merchant_risk_source", table="features.merchant_risk", timestamp_field="event_timestamp"),
)

txn_details = FeatureView(
    name="txn_details",
    entities=[transaction],
    ttl=timedelta(days=1),
    schema=[Field(name="txn_amount", dtype=Float64), Field(name="is_online", dtype=Int64)],
    source=SparkSource(name="txn_details_source", table="features.txn_details", timestamp_field="event_timestamp"),
)

fraud_model = FeatureService(name="fraud_model", features=[user_txn_stats, merchant_risk, txn_details])
