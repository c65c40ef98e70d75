"""Pure parts of the split index: parameters, version immutability, key encoding."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from mlv_spark.errors import InvalidInputError, SplitVersionError
from mlv_spark.split_index import SplitParams, check_version, decode_entity_key, encode_entity_key, version_record


def params(**overrides) -> SplitParams:
    base = dict(source_table="features.labels", source_ref="main", entity_key=("user_id",),
                time_column="event_timestamp", ratios={"train": 0.8, "test": 0.2}, seed=1)
    return SplitParams(**{**base, **overrides})


def test_params_hash_is_stable_and_sensitive_to_every_parameter():
    assert params().params_hash == params().params_hash
    assert params(seed=2).params_hash != params().params_hash
    assert params(ratios={"train": 0.7, "test": 0.3}).params_hash != params().params_hash


@pytest.mark.parametrize("bad, message", [
    (dict(ratios={"train": 0.5}), "sum to 0.5"),
    (dict(entity_key=()), "entity_key is empty"),
    (dict(time_column=""), "time_column is empty"),
    (dict(previous_version="v1", cutoff="2024-01-01"), "out-of-time"),
])
def test_bad_parameters_are_refused_before_any_work(bad, message):
    with pytest.raises(InvalidInputError, match=message):
        params(**bad).validate()


def test_versions_are_immutable():
    record = version_record(params(), "v1", "c" * 64, {"train": 8, "test": 2})
    assert check_version(None, params(), "v1") is False
    assert check_version(record, params(), "v1") is True
    with pytest.raises(SplitVersionError, match=r"\(seed differ\)"):
        check_version(record, params(seed=9), "v1")


def test_composite_keys_encode_without_collisions_and_decode_to_their_types(spark):
    df = spark.createDataFrame([("1", 23), ("12", 3)], "a string, b int")
    encoded = df.select(encode_entity_key(["a", "b"]).alias("entity_key"))
    assert {r[0] for r in encoded.collect()} == {'["1","23"]', '["12","3"]'}
    decoded = decode_entity_key(encoded, {"a": "string", "b": "int"}).select("a", "b")
    assert_df_equality(decoded, df, ignore_row_order=True, ignore_nullable=True)
