"""Content fingerprints: order-independent, null-safe, sensitive to every value and the schema."""

from __future__ import annotations

from pyspark.sql import functions as F

from mlv_spark.fingerprint import content_fingerprint, fingerprint

SCHEMA = "k long, s string, x double, arr array<int>, m map<string,int>"
ROWS = [
    (1, "ab", 1.5, [1, 2], {"a": 1}),
    (2, None, None, None, None),
    (3, "c", -0.5, [], {}),
    (3, "c", -0.5, [], {}),  # a duplicate row counts twice
]


def test_independent_of_row_order_and_partitioning(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    first = content_fingerprint(df)
    assert first.row_count == 4
    assert fingerprint(spark.createDataFrame(list(reversed(ROWS)), SCHEMA).repartition(3)) == first.digest
    assert fingerprint(df.coalesce(1)) == first.digest


def test_every_difference_changes_the_digest(spark):
    base = fingerprint(spark.createDataFrame(ROWS, SCHEMA))
    variants = {
        "one value": [(1, "ab", 1.5, [1, 2], {"a": 2}), *ROWS[1:]],
        "duplicate dropped": ROWS[:3],
        "row added": [*ROWS, (4, "d", 0.0, [1], {"z": 0})],
        "null moved": [(1, "ab", 1.5, [1, 2], {"a": 1}), (2, None, 0.0, None, None), *ROWS[2:]],
    }
    digests = {name: fingerprint(spark.createDataFrame(rows, SCHEMA)) for name, rows in variants.items()}
    assert base not in digests.values()
    assert len(set(digests.values())) == len(digests)


def test_encoding_is_unambiguous(spark):
    """Nulls, string boundaries and array boundaries cannot be traded between columns."""
    pairs = [
        ([(None, 1)], [(1, None)], "a int, b int"),
        ([("ab", "c")], [("a", "bc")], "a string, b string"),
        ([([1, 2], [3])], [([1], [2, 3])], "a array<int>, b array<int>"),
        ([([None, 1],)], [([1, None],)], "a array<int>"),
    ]
    for left, right, schema in pairs:
        assert fingerprint(spark.createDataFrame(left, schema)) != fingerprint(
            spark.createDataFrame(right, schema)
        ), (left, right)


def test_schema_names_types_and_order_count(spark):
    df = spark.createDataFrame([(1, 2)], "a int, b int")
    digests = {
        fingerprint(df),
        fingerprint(df.select(F.col("a").alias("c"), "b")),
        fingerprint(df.select(F.col("a").cast("long"), "b")),
        fingerprint(df.select("b", "a")),
    }
    assert len(digests) == 4
    assert fingerprint(spark.createDataFrame([(1, 2)], "a int not null, b int")) == fingerprint(df)


def test_empty_frame(spark):
    empty = spark.createDataFrame([], "a int")
    result = content_fingerprint(empty)
    assert result.row_count == 0
    assert result.digest != fingerprint(spark.createDataFrame([], "a long"))
