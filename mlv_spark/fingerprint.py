"""Order-independent content fingerprints of DataFrames.

A fingerprint identifies a table's content regardless of row order and partitioning, so a
training set rebuilt from the same inputs can be recognised as identical.

How it is computed (one Spark job, one aggregation):

* Every row is encoded null-safely and without ambiguity: for each column, in order, a
  never-null "is null" flag followed by the value. Spark's hash functions skip nulls, so the
  flag keeps ``(NULL, 1)`` and ``(1, NULL)`` apart; values are hashed one column at a time
  (never concatenated), so ``("ab", "c")`` and ``("a", "bc")`` differ too. Nested values
  (arrays, maps, structs) are hashed as their JSON text with null fields kept, which carries
  lengths and inner nulls; hashing them natively would let ``[1, 2], [3]`` and ``[1], [2, 3]``
  collide.
* Each row gets two independent 64-bit xxhash64 values: one over the encoding with Spark's
  seed, one with a constant prepended (a different starting state, i.e. a different seed).
* The row hashes are summed modulo 2^64 (a sum is order-independent and, unlike xor, does
  not cancel duplicate rows). Spark runs in ANSI mode, where a long ``sum`` would raise on
  overflow, so each hash is split into four 16-bit limbs that are summed as longs (exact up to
  2^47 rows) and recombined modulo 2^64 in Python.
* The digest is SHA-256 over the schema (column names and Spark types in column order;
  nullability and metadata are ignored), the row count and both sums.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructType

from mlv_spark.errors import InvalidInputError
from mlv_spark.sql import string_sql

_SECOND_HASH_SALT = "mlv-spark/fingerprint/2"
_LIMB_BITS = 16
_LIMBS = 64 // _LIMB_BITS


@dataclass(frozen=True)
class Fingerprint:
    """Content digest of a DataFrame, its row count, and per value of `count_by` the row count
    and the digest of those rows alone (what the same rows fingerprinted apart would give)."""

    digest: str
    row_count: int
    counts: dict = field(default_factory=dict)
    digests: dict = field(default_factory=dict)


def _is_nested(data_type: DataType) -> bool:
    return isinstance(data_type, (ArrayType, MapType, StructType))


def row_hash_sql(columns: list[tuple[str, DataType]], salt: str | None = None) -> str:
    """SQL text of the 64-bit xxhash64 of the null-safe encoding of the given values: for each,
    its null flag, then the value (nested values as JSON text). ``columns`` pairs an SQL
    expression (e.g. a plain column name) with its type; an empty list hashes a constant."""
    parts: list[str] = [string_sql(salt)] if salt is not None else []
    for expression, data_type in columns:
        value = f"to_json({expression}, map('ignoreNullFields', 'false'))" if _is_nested(data_type) else expression
        parts += [f"isnull({expression})", value]
    return f"xxhash64({', '.join(parts or ['0'])})"


def _limbs(hash_column: Column, prefix: str) -> list[Column]:
    mask = (1 << _LIMB_BITS) - 1
    return [
        F.sum(F.shiftright(hash_column, i * _LIMB_BITS).bitwiseAND(F.lit(mask))).alias(
            f"{prefix}{i}"
        )
        for i in range(_LIMBS)
    ]


def _combine(row: dict, prefix: str) -> int:
    total = 0
    for i in range(_LIMBS):
        total += int(row[f"{prefix}{i}"] or 0) << (i * _LIMB_BITS)
    return total % (1 << 64)


def schema_signature(df: DataFrame) -> str:
    """Column names and Spark types in column order, as canonical JSON."""
    return json.dumps([[f.name, f.dataType.simpleString()] for f in df.schema.fields])


def content_fingerprint(df: DataFrame, count_by: str | None = None) -> Fingerprint:
    """Digest and row count of ``df``, independent of row order and partitioning (one job).

    With ``count_by`` (a column name) the same job also counts and fingerprints the rows per
    value of that column: the hash sums are taken per value (each value's digest equals the
    fingerprint of those rows alone) and added up here, which gives the same overall digest."""
    if count_by is not None and count_by not in df.columns:
        raise InvalidInputError(f"count_by={count_by!r} is not a column; the columns are {df.columns}")
    if count_by is not None and df.columns.count(count_by) > 1:
        raise InvalidInputError(f"count_by={count_by!r} names {df.columns.count(count_by)} columns; rename them apart")
    # Positional internal names: user column names never enter SQL text.
    names = [f"c{i}" for i in range(len(df.columns))]
    values = list(zip(names, [f.dataType for f in df.schema.fields]))
    group = [f"{names[df.columns.index(count_by)]} AS g"] if count_by is not None else []
    hashed = df.toDF(*names).selectExpr(
        *group, f"{row_hash_sql(values)} AS h1", f"{row_hash_sql(values, _SECOND_HASH_SALT)} AS h2"
    )
    aggregates = [F.count(F.lit(1)).alias("n"), *_limbs(F.col("h1"), "a"), *_limbs(F.col("h2"), "b")]
    rows = [r.asDict() for r in (hashed.groupBy("g") if count_by is not None else hashed).agg(*aggregates).collect()]
    signature = schema_signature(df)
    row_count = sum(int(r["n"]) for r in rows)
    first = sum(_combine(r, "a") for r in rows) % (1 << 64)
    second = sum(_combine(r, "b") for r in rows) % (1 << 64)
    counts = {r["g"]: int(r["n"]) for r in rows} if count_by is not None else {}
    digests = {r["g"]: _digest(signature, int(r["n"]), _combine(r, "a"), _combine(r, "b"))
               for r in rows} if count_by is not None else {}
    return Fingerprint(_digest(signature, row_count, first, second), row_count, counts, digests)


def _digest(signature: str, rows: int, first: int, second: int) -> str:
    return hashlib.sha256(f"{signature}\n{rows}\n{first:016x}\n{second:016x}".encode()).hexdigest()


def fingerprint(df: DataFrame) -> str:
    """Order-independent content hash over ``df``'s schema and rows (hex SHA-256, one job)."""
    return content_fingerprint(df).digest
