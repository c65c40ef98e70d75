"""Same rows and columns as Feast's own DuckDB offline store, on a generated feature repo.

The repo has several views: one with a created-time column and event-time ties, one with
field_mapping of its key, timestamp and a feature, a two-key view, and one whose timestamp
field and features are inferred (its parquet has nanosecond timestamps, as pandas writes).
Feature services cover with_name, with_join_key_map and feature subsets. The entity rows
include duplicates, rows before any data, rows exactly at TTL boundaries, null keys, unknown
keys and non-UTC aware times. Feast is run as its users run it (apply, then
get_historical_features(...).to_df()); it never sees ties it would resolve arbitrarily.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa.rows_comparer import assert_basic_rows_equality
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import IntegralType, TimestampType

from mlv_spark.errors import FeatureDefinitionError
from mlv_spark.training import get_historical_features, load_feature_repo

BASE = pd.Timestamp("2024-01-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)

DEFINITIONS = """\
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)

driver_hourly = FeatureView(
    name="driver_hourly",
    entities=[driver],
    ttl=timedelta(hours=6),
    schema=[
        Field(name="conv_rate", dtype=Float64),
        Field(name="acc_rate", dtype=Float64),
        Field(name="trips", dtype=Int64),
    ],
    source=FileSource(
        path="data/driver_hourly.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
)
driver_daily = FeatureView(
    name="driver_daily",
    entities=[driver],
    ttl=timedelta(0),
    schema=[Field(name="daily_trips", dtype=Int64), Field(name="rating", dtype=Float64)],
    source=FileSource(
        path="data/driver_daily.parquet",
        timestamp_field="day_ts",
        field_mapping={"raw_ts": "day_ts", "drv": "driver_id", "trips_raw": "daily_trips"},
    ),
)
driver_customer = FeatureView(
    name="driver_customer",
    entities=[driver, customer],
    ttl=timedelta(days=2),
    schema=[Field(name="pair_score", dtype=Float64)],
    source=FileSource(
        path="data/pair.parquet", timestamp_field="event_timestamp", created_timestamp_column="created"
    ),
)
customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=3),
    source=FileSource(path="data/customer.parquet"),
)

svc_all = FeatureService(
    name="svc_all",
    features=[driver_hourly, driver_daily[["daily_trips"]], driver_customer, customer_profile],
)
svc_projections = FeatureService(
    name="svc_projections",
    features=[
        driver_hourly.with_name("hourly_alias")[["acc_rate", "conv_rate"]],
        customer_profile.with_join_key_map({"customer_id": "referrer_id"}).with_name("referrer"),
        driver_daily.with_name("other_daily").with_join_key_map({"driver_id": "other_driver"})[["rating"]],
    ],
)
"""

YAML = """\
project: parity
registry: data/registry.db
provider: local
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: data/online.db
entity_key_serialization_version: 3
"""


def _unique_times(rng, keys: list, count: int, hours: int, created: bool) -> pd.DataFrame:
    """Rows with event times on an hourly grid (with ties); (key, event, created) never repeats."""
    frame = pd.DataFrame({
        "key": [keys[i] for i in rng.randint(0, len(keys), count)],
        "event_timestamp": [BASE + int(h) * HOUR for h in rng.randint(0, hours, count)],
    })
    if created:
        frame["created"] = frame["event_timestamp"] + pd.to_timedelta(rng.randint(0, 3, count) * 30, unit="m")
        return frame.drop_duplicates(["key", "event_timestamp", "created"]).reset_index(drop=True)
    return frame.drop_duplicates(["key", "event_timestamp"]).reset_index(drop=True)


def generate(root: Path) -> pd.DataFrame:
    """Writes the repo and its data; returns the entity rows."""
    rng = np.random.RandomState(7)
    data = root / "data"
    data.mkdir(parents=True)
    (root / "feature_store.yaml").write_text(YAML)
    (root / "definitions.py").write_text(textwrap.dedent(DEFINITIONS))
    drivers = list(range(1, 11))

    hourly = _unique_times(rng, drivers + [None], 260, 96, created=True)
    hourly = hourly.rename(columns={"key": "driver_id"}).assign(
        conv_rate=rng.rand(len(hourly)).round(3), acc_rate=rng.rand(len(hourly)).round(3),
        trips=rng.randint(0, 50, len(hourly)),
    )
    hourly["driver_id"] = hourly["driver_id"].astype("Int64")
    hourly.to_parquet(data / "driver_hourly.parquet")

    daily = _unique_times(rng, drivers, 40, 5, created=False)
    daily["event_timestamp"] = BASE + (daily["event_timestamp"] - BASE).dt.days * 24 * HOUR
    daily = daily.drop_duplicates(["key", "event_timestamp"])
    pd.DataFrame({
        "drv": daily["key"].astype("int64"), "raw_ts": daily["event_timestamp"],
        "trips_raw": rng.randint(0, 500, len(daily)), "rating": rng.rand(len(daily)).round(2),
    }).to_parquet(data / "driver_daily.parquet")

    customers = [f"c{i}" for i in range(1, 7)]
    pairs = [(d, c) for d in drivers[:5] for c in customers[:4]]
    pair = _unique_times(rng, pairs, 120, 96, created=True)
    pd.DataFrame({
        "driver_id": [p[0] for p in pair["key"]], "customer_id": [p[1] for p in pair["key"]],
        "event_timestamp": pair["event_timestamp"], "created": pair["created"],
        "pair_score": rng.rand(len(pair)).round(3),
    }).to_parquet(data / "pair.parquet")

    profile = _unique_times(rng, customers, 30, 96, created=False)
    pd.DataFrame({
        "customer_id": profile["key"], "ts": profile["event_timestamp"],
        "tier": [["gold", "silver", None][i] for i in rng.randint(0, 3, len(profile))],
        "spend": rng.rand(len(profile)).round(2),
    }).to_parquet(data / "customer.parquet")

    n = 220
    entity = pd.DataFrame({
        "driver_id": pd.array(rng.randint(0, 12, n), dtype="Int64"),  # 0 and 11 have no data
        "customer_id": [customers[i] if i < 6 else None for i in rng.randint(0, 7, n)],
        "referrer_id": [f"c{i}" for i in rng.randint(0, 8, n)],
        "other_driver": pd.array(rng.randint(1, 12, n), dtype="Int64"),
        "event_timestamp": [BASE + pd.Timedelta(minutes=int(m)) for m in rng.randint(-300, 110 * 60, n)],
        "label": rng.randint(0, 2, n),
    })
    boundaries = hourly.dropna(subset=["driver_id"]).head(12)

    def at(offsets) -> pd.DataFrame:
        return pd.DataFrame({
            "driver_id": boundaries["driver_id"].astype("Int64").to_numpy(),
            "customer_id": "c1",
            "referrer_id": "c2",
            "other_driver": pd.array([3] * len(boundaries), dtype="Int64"),
            "event_timestamp": [t + o for t, o in zip(boundaries["event_timestamp"], offsets)],
            "label": 1,
        })

    exact = at([pd.Timedelta(0)] * len(boundaries))  # entity time equal to the feature time
    ttl_edge = at([6 * HOUR + pd.Timedelta(microseconds=i % 2) for i in range(len(boundaries))])
    entity = pd.concat([entity, exact, ttl_edge, entity.head(15)], ignore_index=True)  # head(15): duplicates
    entity.loc[[3, 17, 40], "driver_id"] = pd.NA
    entity.loc[[5, 41], "customer_id"] = None
    # Aware times in a non-UTC zone: both sides must treat them as instants.
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True).dt.tz_convert("America/New_York")
    entity.to_parquet(data / "entity.parquet", coerce_timestamps="us")
    return entity


@contextlib.contextmanager
def working_directory(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def parity(tmp_path_factory, spark):
    from feast import FeatureStore

    root = tmp_path_factory.mktemp("parity")
    entity = generate(root)
    definitions = load_feature_repo(root)  # Feast's objects, parsed by Feast's parse_repo
    store = FeatureStore(repo_path=str(root))
    with working_directory(root):
        store.apply([
            *definitions.entities.values(),
            *definitions.feature_views.values(),
            *definitions.feature_services.values(),
        ])
    return root, store, entity, spark.read.parquet(str(root / "data" / "entity.parquet"))


def _feast_df(parity, features, full_feature_names: bool) -> pd.DataFrame:
    root, store, entity, _ = parity
    request = store.get_feature_service(features) if isinstance(features, str) else features
    with working_directory(root):  # Feast's DuckDB store reads relative paths from the cwd
        job = store.get_historical_features(
            entity_df=entity.copy(), features=request, full_feature_names=full_feature_names
        )
        return job.to_df()


def _normalized(value, data_type):
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(data_type, TimestampType):
        return int(pd.Timestamp(value).tz_convert("UTC").value // 1000) if isinstance(value, pd.Timestamp) else value
    if isinstance(data_type, IntegralType):
        return int(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _sort_key(row: Row):
    return tuple((v is None, v if v is not None else 0) for v in row)


def assert_same_as_feast(parity, features, full_feature_names: bool):
    root, _, _, entity_sdf = parity
    ours = get_historical_features(
        entity_sdf.sparkSession, entity_sdf, feature_repo=root, features=features,
        full_feature_names=full_feature_names,
    )
    theirs = _feast_df(parity, features, full_feature_names)
    assert list(theirs.columns) == ours.columns
    types = {f.name: f.dataType for f in ours.schema.fields}
    ours_rows = ours.select(*[
        F.unix_micros(c).alias(c) if isinstance(types[c], TimestampType) else F.col(c) for c in ours.columns
    ]).collect()
    Fields = Row(*ours.columns)
    our_rows = sorted((Fields(*[_normalized(r[c], types[c]) for c in ours.columns]) for r in ours_rows), key=_sort_key)
    feast_rows = sorted(
        (Fields(*[_normalized(v, types[c]) for c, v in zip(theirs.columns, rec)])
         for rec in theirs.itertuples(index=False, name=None)),
        key=_sort_key,
    )
    assert len(our_rows) == len(parity[2])
    assert_basic_rows_equality(our_rows, feast_rows)
    return our_rows


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_feature_service_matches_feast(parity, full_feature_names):
    rows = assert_same_as_feast(parity, "svc_all", full_feature_names)
    prefix = "driver_hourly__" if full_feature_names else ""
    assert any(r[f"{prefix}trips"] is not None for r in rows) and any(r[f"{prefix}trips"] is None for r in rows)


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_projections_match_feast(parity, full_feature_names):
    """with_name, with_join_key_map and feature subsets."""
    assert_same_as_feast(parity, "svc_projections", full_feature_names)


def test_feature_references_match_feast(parity):
    """Views in order of first appearance, features in requested order, two-key view."""
    refs = [
        "driver_hourly:trips", "driver_customer:pair_score", "driver_daily:rating",
        "driver_hourly:conv_rate", "customer_profile:tier",
    ]
    assert_same_as_feast(parity, refs, full_feature_names=False)


def test_name_collisions_are_errors_like_feast(parity):
    from feast.errors import FeatureNameCollisionError

    root, _, _, entity_sdf = parity
    refs = ["driver_hourly:trips", "driver_hourly:trips"]
    with pytest.raises(FeatureNameCollisionError):
        _feast_df(parity, refs, full_feature_names=True)
    with pytest.raises(FeatureDefinitionError, match="collide"):
        get_historical_features(
            entity_sdf.sparkSession, entity_sdf, feature_repo=root, features=refs, full_feature_names=True
        )
