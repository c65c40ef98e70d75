"""Pure parts of the split index: the version definition, version immutability, key encoding."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from mlv_spark.errors import InvalidInputError, SplitVersionError
from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SplitVersion, check_version, decode_entity_key, encode_entity_key, version_record


def version(name: str = "v1", previous_version: str | None = None, **overrides) -> SplitVersion:
    base = dict(entity_key=("user_id",), time_column="event_timestamp", ratios={"train": 0.8, "test": 0.2}, seed=1)
    return SplitVersion(name, "features.labels", "main", SplitParams.of(**{**base, **overrides}), previous_version)


def test_params_hash_is_stable_and_sensitive_to_every_parameter():
    assert version().params_hash == version().params_hash
    assert version(seed=2).params_hash != version().params_hash
    assert version(ratios={"train": 0.7, "test": 0.3}).params_hash != version().params_hash
    assert version(stratify_by="label").params_hash != version().params_hash
    assert version(previous_version="v0").params_hash != version().params_hash
    assert version().with_key_types({"user_id": "bigint"}).params_hash != version().params_hash


def test_a_version_round_trips_through_its_registry_record():
    original = version(stratify_by="label", cutoff="2024-01-01", future_splits=["test"]).with_key_types({"user_id": "bigint"})
    record = version_record(original, "c" * 64, {"train": 8, "test": 2})
    assert SplitVersion.from_record(record) == original


@pytest.mark.parametrize("build, message", [
    (lambda: version(ratios={"train": 0.5}), "sum to 0.5"),
    (lambda: version(entity_key=()), "entity_key is empty"),
    (lambda: version(time_column=None), "time_column is empty"),
    (lambda: version(previous_version="v1", cutoff="2024-01-01"), "out-of-time"),
    (lambda: version(name="v 1"), "split version 'v 1' must be"),
    (lambda: version(name=""), "split version '' must be"),
    (lambda: version(name="a/b"), "split version 'a/b' must be"),
])
def test_bad_parameters_are_refused_before_any_work(build, message):
    with pytest.raises(InvalidInputError, match=message):
        build().validate()


def test_versions_are_immutable():
    record = version_record(version(), "c" * 64, {"train": 8, "test": 2})
    assert check_version(None, version()) is False
    assert check_version(record, version()) is True
    with pytest.raises(SplitVersionError, match=r"\(seed differ\)"):
        check_version(record, version(seed=9))


def test_composite_keys_encode_without_collisions_and_decode_to_their_types(spark):
    df = spark.createDataFrame([("1", 23), ("12", 3)], "a string, b int")
    encoded = df.select(encode_entity_key(["a", "b"]).alias("entity_key"))
    assert {r[0] for r in encoded.collect()} == {'["1","23"]', '["12","3"]'}
    decoded = decode_entity_key(encoded, {"a": "string", "b": "int"}).select("a", "b")
    assert_df_equality(decoded, df, ignore_row_order=True, ignore_nullable=True)
