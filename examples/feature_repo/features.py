"""Demo feature definitions: a user entity, two feature views over lakeFS tables, one service."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)

user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[Field(name="txn_count_7d", dtype=Int64), Field(name="spend_7d", dtype=Float64)],
    source=SparkSource(
        name="user_stats_source",
        table="features.user_stats",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=None,
    schema=[Field(name="country", dtype=String), Field(name="account_age_days", dtype=Int64)],
    source=SparkSource(name="user_profile_source", table="features.user_profile", timestamp_field="event_timestamp"),
)

fraud_model_v1 = FeatureService(name="fraud_model_v1", features=[user_stats, user_profile[["country"]]])
