"""The split index table: one small row per (entity, event) saying which split it is in.

`ml_datasets.splits` holds every split version side by side (partitioned by version);
`ml_datasets.split_versions` records each version's parameters, their hash, the source commit
and the counts. Versions are immutable: the same name with the same parameters is a no-op,
with different parameters an error. Pure helpers here; the job does the I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.errors import InvalidInputError, SplitVersionError
from mlv_spark.split_apportion import parse_ratios

SPLITS_TABLE = "ml_datasets.splits"
VERSIONS_TABLE = "ml_datasets.split_versions"
INDEX_COLUMNS = ["entity_key", "event_timestamp", "split", "split_version", "split_seed", "stratum", "params_hash"]


@dataclass(frozen=True)
class SplitParams:
    """Everything that determines a split version's content (besides the source data)."""

    source_table: str
    source_ref: str
    entity_key: tuple[str, ...]
    time_column: str
    ratios: Mapping[str, float]
    seed: int
    stratify_by: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    method: str = "exact"
    previous_version: str | None = None
    cutoff: str | None = None
    gap_seconds: float | None = None
    future_splits: tuple[str, ...] | None = None
    exclude_train_entities: bool = False
    key_types: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> "SplitParams":
        """Cheap checks that need no data: ratios, names, seed."""
        parse_ratios(self.ratios)
        if not self.entity_key or not all(self.entity_key):
            raise InvalidInputError("entity_key is empty; name the column(s) identifying an entity")
        if not self.time_column:
            raise InvalidInputError("time_column is empty; the split index needs each row's event time")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidInputError(f"seed={self.seed!r} must be an integer")
        if self.previous_version and self.cutoff:
            raise InvalidInputError(
                "previous_version cannot be combined with an out-of-time cutoff: an entity may hold a past "
                "and a future split there, and sticky placement keeps one split per entity; "
                "compute a new out-of-time version instead")
        return self

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the input of params_hash."""
        data = asdict(self)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)

    @property
    def params_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def assign_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for mlv_spark.splits.assign_splits (without df/previous)."""
        return {
            "entity_key": list(self.entity_key),
            "ratios": dict(self.ratios),
            "seed": self.seed,
            "stratify_by": list(self.stratify_by) or None,
            "group_by": list(self.group_by) or None,
            "time_column": self.time_column,
            "cutoff": self.cutoff,
            "gap": None if self.gap_seconds is None else timedelta(seconds=self.gap_seconds),
            "future_splits": list(self.future_splits) if self.future_splits else None,
            "exclude_train_entities": self.exclude_train_entities,
            "method": self.method,
            "per_row": True,
        }


def encode_entity_key(columns: Sequence[str]) -> Column:
    """The index's string `entity_key`: the value itself for one key column, a JSON array for
    several (unambiguous: ('1','23') and ('12','3') stay distinct)."""
    if len(columns) == 1:
        return F.col(columns[0]).cast("string")
    return F.to_json(F.array(*[F.col(c).cast("string") for c in columns]))


def decode_entity_key(index: DataFrame, key_types: Mapping[str, str]) -> DataFrame:
    """Turn `entity_key` back into the original key columns with their original types."""
    names = list(key_types)
    if len(names) == 1:
        return index.withColumn(names[0], F.col("entity_key").cast(key_types[names[0]]))
    parts = F.from_json(F.col("entity_key"), T.ArrayType(T.StringType()))
    for position, name in enumerate(names):
        index = index.withColumn(name, parts.getItem(position).cast(key_types[name]))
    return index


def stratum_label(columns: Sequence[str]) -> Column:
    if not columns:
        return F.lit(None).cast("string")
    if len(columns) == 1:
        return F.col(columns[0]).cast("string")
    return F.to_json(F.array(*[F.col(c).cast("string") for c in columns]))


def build_index(assigned_rows: DataFrame, params: SplitParams, version: str) -> DataFrame:
    """Rows of `assign_splits(..., per_row=True)` -> split index rows (INDEX_COLUMNS), one per
    distinct (entity, event time)."""
    return (
        assigned_rows.where(F.col("split").isNotNull())
        .select(
            encode_entity_key(params.entity_key).alias("entity_key"),
            F.col(params.time_column).cast("timestamp").alias("event_timestamp"),
            F.col("split"),
            F.lit(version).alias("split_version"),
            F.lit(params.seed).cast("long").alias("split_seed"),
            stratum_label(params.stratify_by).alias("stratum"),
            F.lit(params.params_hash).alias("params_hash"),
        )
        .dropDuplicates(["entity_key", "event_timestamp"])
    )


def version_record(params: SplitParams, version: str, source_commit: str, counts: Mapping[str, int]) -> dict[str, Any]:
    return {
        "split_version": version,
        "params_hash": params.params_hash,
        "params_json": params.to_json(),
        "source_commit": source_commit,
        "counts_json": json.dumps(dict(sorted(counts.items())), separators=(",", ":")),
    }


VERSION_SCHEMA = "split_version string, params_hash string, params_json string, source_commit string, counts_json string, created_at timestamp"


def check_version(existing: Mapping[str, Any] | None, params: SplitParams, version: str) -> bool:
    """True when `version` already exists with these parameters (a no-op rerun); raises
    SplitVersionError when it exists with other parameters; False when it is new."""
    if existing is None:
        return False
    if existing["params_hash"] == params.params_hash:
        return True
    old = json.loads(existing["params_json"])
    new = json.loads(params.to_json())
    differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    raise SplitVersionError(
        f"split version {version!r} already exists with different parameters ({', '.join(differing)} differ); "
        f"split versions are immutable: choose a new version name"
    )


def split_counts(index: DataFrame) -> tuple[dict[str, int], list[tuple[str | None, str, int]]]:
    """Counts per split and per (stratum, split) in one small aggregation."""
    rows = index.groupBy("stratum", "split").count().collect()
    per_stratum = sorted(((r["stratum"], r["split"], int(r["count"])) for r in rows),
                         key=lambda t: (t[0] is None, t[0] or "", t[1]))
    totals: dict[str, int] = {}
    for _, split, count in per_stratum:
        totals[split] = totals.get(split, 0) + count
    return totals, per_stratum
