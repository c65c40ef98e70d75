"""Content fingerprints: order-independent, null-safe, sensitive to every value and the schema."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError
from mlv_spark.fingerprint import content_fingerprint, fingerprint

COLUMNS = "k, s, x, arr, m"
ROWS = [
    "(1L, 'ab', 1.5D, array(1, 2), map('a', 1))",
    "(2L, CAST(NULL AS STRING), CAST(NULL AS DOUBLE), CAST(NULL AS ARRAY<INT>), CAST(NULL AS MAP<STRING, INT>))",
    "(3L, 'c', -0.5D, array(), map())",
    "(3L, 'c', -0.5D, array(), map())",  # a duplicate row counts twice
]


def values(spark, rows: list[str], columns: str = COLUMNS):
    """A local relation from SQL literals (no Python workers involved)."""
    return spark.sql(f"SELECT * FROM VALUES {', '.join(rows)} AS t({columns})")


def test_independent_of_row_order_and_partitioning(spark):
    df = values(spark, ROWS)
    first = content_fingerprint(df)
    assert first.row_count == 4
    assert fingerprint(values(spark, list(reversed(ROWS))).repartition(3)) == first.digest
    assert fingerprint(df.coalesce(1)) == first.digest


def test_every_difference_changes_the_digest(spark):
    base = fingerprint(values(spark, ROWS))
    variants = {
        "one value": ["(1L, 'ab', 1.5D, array(1, 2), map('a', 2))", *ROWS[1:]],
        "duplicate dropped": ROWS[:3],
        "row added": [*ROWS, "(4L, 'd', 0.0D, array(1), map('z', 0))"],
        "null moved": [
            ROWS[0],
            "(2L, CAST(NULL AS STRING), 0.0D, CAST(NULL AS ARRAY<INT>), CAST(NULL AS MAP<STRING, INT>))",
            *ROWS[2:],
        ],
    }
    digests = {name: fingerprint(values(spark, rows)) for name, rows in variants.items()}
    assert base not in digests.values()
    assert len(set(digests.values())) == len(digests)


def test_encoding_is_unambiguous(spark):
    """Nulls, string boundaries and array boundaries cannot be traded between columns."""
    pairs = [
        ("(CAST(NULL AS INT), 1)", "(1, CAST(NULL AS INT))", "a, b"),
        ("('ab', 'c')", "('a', 'bc')", "a, b"),
        ("(array(1, 2), array(3))", "(array(1), array(2, 3))", "a, b"),
        ("(array(CAST(NULL AS INT), 1))", "(array(1, CAST(NULL AS INT)))", "a"),
    ]
    for left, right, columns in pairs:
        assert fingerprint(values(spark, [left], columns)) != fingerprint(values(spark, [right], columns)), (
            left, right,
        )


def test_schema_names_types_and_order_count(spark):
    df = values(spark, ["(1, 2)"], "a, b")
    digests = {
        fingerprint(df),
        fingerprint(df.select(F.col("a").alias("c"), "b")),
        fingerprint(df.select(F.col("a").cast("long"), "b")),
        fingerprint(df.select("b", "a")),
    }
    assert len(digests) == 4
    nullable = df.select(F.when(F.col("a") > 0, F.col("a")).alias("a"), "b")
    assert fingerprint(nullable) == fingerprint(df)  # nullability is not content


def test_empty_frame(spark):
    empty = spark.createDataFrame([], "a int")
    result = content_fingerprint(empty)
    assert result.row_count == 0
    assert result.digest != fingerprint(spark.createDataFrame([], "a long"))


def test_counts_per_value_come_from_the_same_job_and_keep_the_digest(spark):
    df = values(spark, ROWS)
    grouped = content_fingerprint(df, count_by="s")
    assert grouped.counts == {"ab": 1, None: 1, "c": 2}
    assert (grouped.digest, grouped.row_count) == (fingerprint(df), 4)
    empty = content_fingerprint(spark.createDataFrame([], "a int"), count_by="a")
    assert (empty.digest, empty.row_count, empty.counts) == (content_fingerprint(spark.createDataFrame([], "a int")).digest, 0, {})
    with pytest.raises(InvalidInputError, match="count_by='split' is not a column"):
        content_fingerprint(df, count_by="split")
    with pytest.raises(InvalidInputError, match="count_by='s' names 2 columns"):
        content_fingerprint(df.select("s", "s"), count_by="s")


def test_each_groups_digest_is_the_fingerprint_of_its_rows_alone(spark):
    df = spark.createDataFrame([(1, "train", 0.5), (2, "train", None), (3, "val", 1.5), (4, "test", 2.0)],
                               "id long, split string, x double")
    grouped = content_fingerprint(df, count_by="split")
    assert grouped.digest == content_fingerprint(df).digest
    for split in ("train", "val", "test"):
        alone = content_fingerprint(df.where(f"split = '{split}'"))
        assert grouped.digests[split] == alone.digest and grouped.counts[split] == alone.row_count
