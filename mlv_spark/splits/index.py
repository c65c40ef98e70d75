"""The split index table: one small row per (entity, event) saying which split it is in.

`ml_datasets.splits` holds every split version side by side (partitioned by version);
`ml_datasets.split_versions` records each version's parameters, their hash, the source commit
and the counts. Versions are immutable: the same name with the same parameters is a no-op,
with different parameters an error. Pure helpers here; `mlv_spark.workflows` does the I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.errors import InvalidInputError, SplitVersionError
from mlv_spark.splits.params import SplitParams

SPLITS_TABLE = "ml_datasets.splits"
VERSIONS_TABLE = "ml_datasets.split_versions"
INDEX_COLUMNS = ["entity_key", "event_timestamp", "split", "split_version", "split_seed", "stratum", "params_hash"]
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class SplitVersion:
    """A named split version: which table it splits, at which ref, with which parameters.

    `key_types` (the entity key columns' Spark types, to decode the index's `entity_key`) come
    from the source table's schema; the definition, hashed, decides whether a rerun of the same
    name is a no-op or a conflict.
    """

    name: str
    source_table: str
    source_ref: str
    params: SplitParams
    previous_version: str | None = None
    key_types: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> SplitVersion:
        """What the index needs beyond valid parameters: a name, an event time, and no sticky
        out-of-time version."""
        if not _VERSION_NAME.match(self.name or ""):
            raise InvalidInputError(
                f"split version {self.name!r} must be 1-128 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit, e.g. 'v1_stratified_80_10_10'"
            )
        if not self.params.time_column:
            raise InvalidInputError("time_column is empty; the split index needs each row's event time")
        if self.previous_version and self.params.out_of_time:
            raise InvalidInputError(
                "previous_version cannot be combined with an out-of-time cutoff: an entity may hold a past "
                "and a future split there, and sticky placement keeps one split per entity; "
                "compute a new out-of-time version instead")
        return self

    def with_key_types(self, key_types: Mapping[str, str]) -> SplitVersion:
        return replace(self, key_types=dict(key_types))

    def definition(self) -> dict[str, Any]:
        """Source, parameters and key types as one flat JSON object (what the registry stores)."""
        return {"source_table": self.source_table, "source_ref": self.source_ref,
                "previous_version": self.previous_version, "key_types": dict(self.key_types),
                **self.params.to_dict()}

    def definition_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the input of params_hash."""
        return json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))

    @property
    def params_hash(self) -> str:
        return hashlib.sha256(self.definition_json().encode()).hexdigest()[:16]

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> SplitVersion:
        """The version a registry row describes."""
        data = json.loads(record["params_json"])
        return SplitVersion(
            name=record["split_version"], source_table=data["source_table"], source_ref=data["source_ref"],
            params=SplitParams.from_dict(data), previous_version=data.get("previous_version"),
            key_types=data.get("key_types") or {},
        )


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


def build_index(assigned_rows: DataFrame, version: SplitVersion) -> DataFrame:
    """Rows of `assign_splits(..., per_row=True)` -> split index rows (INDEX_COLUMNS), one per
    distinct (entity, event time)."""
    params = version.params
    assert params.time_column is not None  # SplitVersion.validate requires it
    return (
        assigned_rows.where(F.col("split").isNotNull())
        .select(
            encode_entity_key(params.entity_key).alias("entity_key"),
            F.col(params.time_column).cast("timestamp").alias("event_timestamp"),
            F.col("split"),
            F.lit(version.name).alias("split_version"),
            F.lit(params.seed).cast("long").alias("split_seed"),
            stratum_label(params.stratify_by).alias("stratum"),
            F.lit(version.params_hash).alias("params_hash"),
        )
        .dropDuplicates(["entity_key", "event_timestamp"])
    )


def version_record(version: SplitVersion, source_commit: str, counts: Mapping[str, int],
                   fingerprint: str = "") -> dict[str, Any]:
    """The registry row of a version (without its creation time). `fingerprint` is the content
    fingerprint of the version's index rows: whoever reads the version checks its rows against it,
    so a version changed after it was published is caught by the data itself."""
    return {
        "split_version": version.name,
        "params_hash": version.params_hash,
        "params_json": version.definition_json(),
        "source_commit": source_commit,
        "counts_json": json.dumps(dict(sorted(counts.items())), separators=(",", ":")),
        "fingerprint": fingerprint,
    }


VERSION_SCHEMA = ("split_version string, params_hash string, params_json string, source_commit string, "
                  "counts_json string, fingerprint string, created_at timestamp")


def check_version(existing: Mapping[str, Any] | None, version: SplitVersion) -> bool:
    """True when `version` already exists with these parameters (a no-op rerun); raises
    SplitVersionError when it exists with other parameters; False when it is new."""
    if existing is None:
        return False
    if existing["params_hash"] == version.params_hash:
        return True
    old = json.loads(existing["params_json"])
    new = version.definition()
    differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    raise SplitVersionError(
        f"split version {version.name!r} already exists with different parameters ({', '.join(differing)} differ); "
        f"split versions are immutable: choose a new version name"
    )


def split_counts(index: DataFrame) -> tuple[dict[str, int], list[tuple[str | None, str, int]]]:
    """Counts per split and per (stratum, split) in one small aggregation."""
    return tally((r["stratum"], r["split"], r["count"]) for r in index.groupBy("stratum", "split").count().collect())


def tally(counts: Iterable[tuple[str | None, str, int]]) -> tuple[dict[str, int], list[tuple[str | None, str, int]]]:
    """Totals per split and the sorted (stratum, split, count) rows, from counts per (stratum, split)."""
    per_stratum = sorted(((stratum, split, int(count)) for stratum, split, count in counts),
                         key=lambda t: (t[0] is None, t[0] or "", t[1]))
    totals: dict[str, int] = {}
    for _, split, count in per_stratum:
        totals[split] = totals.get(split, 0) + count
    return totals, per_stratum
