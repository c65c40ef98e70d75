"""The one reader of the split registry (`ml_datasets.split_versions`) and the split index at a ref."""

from __future__ import annotations

from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlv_spark.catalogs import Tables
from mlv_spark.errors import InvalidInputError, SplitVersionError
from mlv_spark.fingerprint import content_fingerprint
from mlv_spark.splits.index import SPLITS_TABLE, VERSIONS_TABLE, SplitVersion, decode_entity_key
from mlv_spark.sql import quote as sql_name


class SplitRegistry:
    """Split versions recorded at one ref (best a commit id: then nothing moves underneath)."""

    def __init__(self, tables: Tables, ref: str):
        self.tables = tables
        self.ref = ref

    def exists(self) -> bool:
        return self.tables.exists(VERSIONS_TABLE, self.ref)

    def record(self, version: str) -> dict[str, Any] | None:
        """The registry row of `version`, None when it is not recorded (or there is no registry)."""
        if not self.exists():
            return None
        rows = self.tables.read(VERSIONS_TABLE, self.ref).where(F.col("split_version") == version).limit(1).collect()
        return rows[0].asDict() if rows else None

    def names(self) -> list[str]:
        if not self.exists():
            return []
        return sorted(r[0] for r in self.tables.read(VERSIONS_TABLE, self.ref).select("split_version").collect())

    def require(self, version: str) -> tuple[SplitVersion, dict[str, Any]]:
        """The version and its registry row, or a SplitVersionError naming the known ones."""
        record = self.record(version)
        if record is None:
            known = self.names()
            where = f"at {self.ref[:12]}" if len(self.ref) == 64 else f"at {self.ref}"
            if not known:
                raise SplitVersionError(f"no split versions {where}: run jobs/compute_splits.py first")
            raise SplitVersionError(f"unknown split version {version!r} {where}; known: {known}")
        return SplitVersion.from_record(record), record

    def index(self, version: str) -> DataFrame:
        """The index rows of `version` (all splits)."""
        return self.tables.read(SPLITS_TABLE, self.ref).where(F.col("split_version") == version)

    def verify(self, version: str, record: dict[str, Any]) -> None:
        """The version's rows are those published: their fingerprint is the one the registry
        recorded (one small job over the version's index rows). A SplitVersionError otherwise."""
        recorded = record.get("fingerprint")
        if not recorded:  # published before fingerprints were recorded
            return
        actual = content_fingerprint(self.index(version)).digest
        if actual != recorded:
            raise SplitVersionError(
                f"split version {version!r} at {self.ref[:12]} was changed after it was published: its rows' "
                f"fingerprint is {actual[:16]}, the registry recorded {recorded[:16]}; split versions are immutable: "
                "find the commit that rewrote ml_datasets/splits (lakeFS log) and revert it, or publish a new version")

    def entity_rows(self, version: str, splits: Sequence[str], columns: Sequence[str] = (), *, verify: bool = True
                    ) -> tuple[DataFrame, SplitVersion, dict[str, Any]]:
        """The index rows of `version` in `splits`, with the original key columns restored:
        (key columns…, event_timestamp, split, `columns`…). `columns` (labels, other join keys)
        are joined back from the version's source table at its source commit, on the key and the
        event time; where several source rows share both, the smallest values are taken."""
        definition, record = self.require(version)
        if verify:
            self.verify(version, record)
        known = definition.params.split_names
        unknown = [s for s in splits if s not in known]
        if unknown or not splits:
            raise InvalidInputError(f"split(s) {unknown or list(splits)} not in split version {version!r}; it has {known}")
        index = self.index(version).where(F.col("split").isin(list(splits)))
        keys = list(definition.key_types)
        rows = decode_entity_key(index, definition.key_types).select(*keys, "event_timestamp", "split")
        extra = [c for c in dict.fromkeys(columns) if c not in rows.columns]
        if extra:
            rows = rows.join(self._source_columns(definition, record, keys, extra), [*keys, "event_timestamp"], "left")
        return rows, definition, record

    def _source_columns(self, definition: SplitVersion, record: dict[str, Any], keys: list[str],
                        columns: list[str]) -> DataFrame:
        source = self.tables.read(definition.source_table, record["source_commit"])
        missing = [c for c in columns if c not in source.columns]
        if missing:
            raise InvalidInputError(
                f"column(s) {missing} are not in {definition.source_table}, the source of split version "
                f"{definition.name!r}; it has {source.columns}")
        time_column = definition.params.time_column
        assert time_column is not None  # every split version has one
        values = F.min(F.struct(*[F.col(sql_name(c)) for c in columns])).alias("__values")
        return (source.select(*[F.col(sql_name(k)) for k in keys],
                              F.col(sql_name(time_column)).cast("timestamp").alias("event_timestamp"),
                              *[F.col(sql_name(c)) for c in columns])
                .groupBy(*keys, "event_timestamp").agg(values)
                .select(*keys, "event_timestamp", *[F.col("__values")[c].alias(c) for c in columns]))
