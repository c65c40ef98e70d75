"""Pure parts of feature pipelines: declarations, parameters, validation against Feast views, the
anti-pattern rule for split tables, and the demo pipeline's leakage-free merchant risk."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.cli import parse_params
from mlv_spark.errors import InvalidInputError
from mlv_spark.lifecycle.doctor import split_table_groups
from mlv_spark.lifecycle.experiment import params_hash
from mlv_spark.modules import load_module
from mlv_spark.pipeline import Output, Pipeline, ViewContract, check_outputs, check_pipeline, validate_output
from mlv_spark.training.pit import ViewInput, ViewJoinSpec, point_in_time_join
from tests.conftest import REPO_ROOT

T0 = datetime(2024, 1, 1)
CONTRACT = ViewContract(
    view="user_txn_stats", source_table="features.user_txn_stats",
    columns={"user_id": "INT64", "event_timestamp": "UNIX_TIMESTAMP", "txn_count_7d": "INT64", "amount_sum_7d": "DOUBLE"},
    time_columns=("event_timestamp",), key_columns=("user_id",))
SCHEMA = T.StructType([T.StructField("user_id", T.LongType()), T.StructField("event_timestamp", T.TimestampType()),
                       T.StructField("txn_count_7d", T.LongType()), T.StructField("amount_sum_7d", T.DoubleType())])


def stats(rows: int, **nulls: int) -> dict[str, int]:
    return {"__rows__": rows, **{f.name: nulls.get(f.name, 0) for f in SCHEMA.fields}}


def test_a_valid_output_passes():
    assert validate_output(Output("features.user_txn_stats", ("user_txn_stats",)), SCHEMA, stats(10), [CONTRACT]) == []


@pytest.mark.parametrize("schema, counts, output, message", [
    (T.StructType([*SCHEMA.fields[:2], T.StructField("txn_count_7d", T.DoubleType()), SCHEMA.fields[3]]), stats(10),
     Output("features.user_txn_stats"), "txn_count_7d is double, but Feast view 'user_txn_stats' declares INT64 (bigint)"),
    (T.StructType(SCHEMA.fields[:3]), stats(10), Output("features.user_txn_stats"), "lacks column 'amount_sum_7d'"),
    (T.StructType([SCHEMA.fields[0], T.StructField("event_timestamp", T.StringType()), *SCHEMA.fields[2:]]), stats(10),
     Output("features.user_txn_stats"), "event_timestamp is string; view 'user_txn_stats' needs a timestamp"),
    (SCHEMA, stats(10, event_timestamp=1), Output("features.user_txn_stats"), "event_timestamp is null in 1 of 10 rows"),
    (SCHEMA, stats(10, user_id=2), Output("features.user_txn_stats"), "user_id is null in 2 of 10 rows"),
    (SCHEMA, stats(0), Output("features.user_txn_stats"), "has 0 rows, fewer than the declared minimum 1"),
    (SCHEMA, stats(10), Output("features.user_txn_stats", max_rows=5), "more than the declared maximum 5"),
    (SCHEMA, stats(10, amount_sum_7d=3), Output("features.user_txn_stats", max_null_rate={"*": 0.1}),
     "amount_sum_7d is null in 30.0% of rows; the pipeline allows 10.0%"),
    (SCHEMA, stats(10), Output("features.other"), "Feast view 'user_txn_stats' reads 'features.user_txn_stats', not 'features.other'"),
    (SCHEMA, stats(10), Output("features.user_txn_stats", max_null_rate={"nope": 0.0}), "names columns it does not have: ['nope']"),
])
def test_each_broken_rule_is_named(schema, counts, output, message):
    problems = validate_output(output, schema, counts, [CONTRACT])
    assert any(message in p for p in problems), problems


def test_parameters_take_their_defaults_types_and_reject_unknown_names():
    pipeline = Pipeline("p", (), (Output("a.b"),), build=lambda ctx: {}, params={"n": 1, "rate": 0.5, "on": False, "s": "x"})
    assert pipeline.resolve_params({"n": "3", "rate": "0.25", "on": "true"}) == {"n": 3, "rate": 0.25, "on": True, "s": "x"}
    with pytest.raises(InvalidInputError, match=r"has no parameter\(s\) \['m'\]; it takes \['n', 'on', 'rate', 's'\]"):
        pipeline.resolve_params({"m": "1"})
    with pytest.raises(InvalidInputError, match=r"--param n='three': pipeline 'p' expects a int"):
        pipeline.resolve_params({"n": "three"})
    assert parse_params(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(InvalidInputError, match="--param"):
            parse_params(bad)


def test_pipeline_declarations_and_results_are_checked(spark):
    class Module:
        PIPELINE = Pipeline("p", ("raw.x",), (Output("a.b"), Output("a.b")), build=lambda ctx: {})

    with pytest.raises(InvalidInputError, match="declares an output twice"):
        check_pipeline(Module, "m.py")
    with pytest.raises(InvalidInputError, match="defines no PIPELINE"):
        check_pipeline(object(), "m.py")
    pipeline = Pipeline("p", ("raw.x",), (Output("a.b"),), build=lambda ctx: {})
    with pytest.raises(InvalidInputError, match=r"returned \[\] but declares \['a.b'\]"):
        check_outputs(pipeline, {})
    check_outputs(pipeline, {"a.b": spark.range(1)})


def test_the_demo_pipelines_are_found_by_name_and_their_parameters_checked():
    search = [REPO_ROOT / "examples" / "pipelines", REPO_ROOT / "examples" / "raw"]
    module = load_module("fraud_features", search, what="pipeline")
    with pytest.raises(InvalidInputError, match="amount_transform='sqrt'; use raw or log1p"):
        module.PIPELINE.resolve_params({"amount_transform": "sqrt"})
    raw = load_module("card_transactions", search, what="pipeline").PIPELINE
    with pytest.raises(InvalidInputError, match="users=0, days=90: give at least 1 user"):
        raw.resolve_params({"users": "0"})
    with pytest.raises(InvalidInputError, match=r"unknown pipeline 'nope'.*known: card_transactions, fraud_features"):
        load_module("nope", search, what="pipeline")


def test_split_tables_are_grouped_by_what_is_left_of_their_names():
    tables = ["features/fraud_train", "features/fraud_val", "features/fraud_test", "features/user_stats",
              "ml/train-set", "ml/test-set", "features/trainer_stats", "features/contest"]
    assert sorted(split_table_groups(tables)) == [
        ["features/fraud_test", "features/fraud_train", "features/fraud_val"], ["ml/test-set", "ml/train-set"]]


def test_work_identity_covers_owner_and_every_parameter():
    assert params_hash("pipeline:a", {"x": 1}) == params_hash("pipeline:a", {"x": 1})
    assert params_hash("pipeline:a", {"x": 1}) != params_hash("pipeline:a", {"x": 2})
    assert params_hash("pipeline:a", {"x": 1}) != params_hash("pipeline:b", {"x": 1})


def test_merchant_risk_sees_only_labels_that_had_arrived(spark):
    """A transaction at day 10 must not see the fraud label of an earlier transaction that arrives
    on day 12, though that transaction happened before it: the rate comes from labels known then."""
    fraud_features = load_module("fraud_features", [REPO_ROOT / "examples" / "pipelines"])
    txns = spark.createDataFrame([
        (1, 7, 100, T0 + timedelta(days=1)),   # fraud, label arrives on day 12 (after the transaction of day 10)
        (2, 7, 100, T0 + timedelta(days=2)),   # legit, label arrives on day 3
        (3, 8, 100, T0 + timedelta(days=10)),  # the transaction being scored
        (4, 8, 100, T0 + timedelta(days=13)),  # scored after the fraud label arrived
    ], "txn_id long, user_id long, merchant_id long, event_timestamp timestamp")
    labels = spark.createDataFrame([
        (1, 1, T0 + timedelta(days=12)), (2, 0, T0 + timedelta(days=3)),
    ], "txn_id long, is_fraud int, label_timestamp timestamp")
    risk = fraud_features.merchant_risk(txns, labels)
    entity = txns.where("txn_id IN (3, 4)").select("txn_id", "merchant_id", "event_timestamp")
    spec = ViewJoinSpec("merchant_risk", ("merchant_id",), ("merchant_fraud_rate", "merchant_labels_known"),
                        "event_timestamp", ttl=timedelta(days=365))
    joined = point_in_time_join(entity, [ViewInput(spec, risk)])
    prior = fraud_features.PRIOR_LABELS * fraud_features.PRIOR_RATE
    expected = spark.createDataFrame([
        (3, 100, T0 + timedelta(days=10), (0 + prior) / (1 + fraud_features.PRIOR_LABELS), 1),
        (4, 100, T0 + timedelta(days=13), (1 + prior) / (2 + fraud_features.PRIOR_LABELS), 2),
    ], "txn_id long, merchant_id long, event_timestamp timestamp, merchant_fraud_rate double, merchant_labels_known long")
    assert_df_equality(joined, expected, ignore_row_order=True, ignore_nullable=True)
    # the leak a naive feature would have: the merchant's rate over all its labels, whenever they arrived
    naive = labels.join(txns, "txn_id").groupBy("merchant_id").agg(F.avg("is_fraud").alias("rate")).first()["rate"]
    assert naive == 0.5 and joined.where("txn_id = 3").first()["merchant_fraud_rate"] < 0.1
