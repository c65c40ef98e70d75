"""The catalog plugin interface and the table reference it hands out."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark.errors import CatalogError
from mlv_spark.sql import path_exists, quote

WriteMode = Literal["create", "overwrite", "append", "replace_partitions"]
_NAME_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def split_table_name(name: str) -> tuple[str, str]:
    """`namespace.table` (namespace may be dotted) -> (namespace, table). Every part is a plain
    identifier: a '/' or a space would become a nested path or an unreadable location."""
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) < 2 or not all(parts):
        raise CatalogError(f"table name {name!r} must be '<namespace>.<table>', e.g. 'ml_datasets.splits'")
    bad = [p for p in parts if not _NAME_PART.match(p)]
    if bad:
        raise CatalogError(
            f"table name {name!r}: {bad[0]!r} is not a plain identifier; use letters, digits and '_' "
            "(starting with a letter or '_'), dots only between namespace and table, e.g. 'features.user_stats'"
        )
    return ".".join(parts[:-1]), parts[-1]


@dataclass(frozen=True)
class TableRef:
    """Where one table lives at one ref: a Spark identifier, a path, or both."""

    catalog: str
    namespace: str
    table: str
    ref: str | None
    format: str
    identifier: str | None = None
    path: str | None = None

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.table}"

    @property
    def relative_path(self) -> str:
        """Where the table's files live inside its ref (for lakeFS listings and diffs)."""
        return "/".join([*self.namespace.split("."), self.table])

    def describe(self) -> str:
        at = f"@{self.ref}" if self.ref else ""
        return f"{self.catalog}:{self.name}{at} ({self.identifier or self.path})"


class Catalog(ABC):
    """One configured catalog: a name and a flat property map (pyiceberg's `load_catalog(name,
    **properties)` style). Subclasses set `type_name` and implement the hooks."""

    type_name: ClassVar[str]
    format: ClassVar[str]
    versioned: ClassVar[bool] = True  # whether tables live at lakeFS refs

    def __init__(self, name: str, **properties: str):
        self.name = name
        self.properties = {str(k): str(v) for k, v in properties.items()}
        if self.versioned and not self.properties.get("repository"):
            raise CatalogError(f"catalog {name!r} ({self.type_name}) needs a 'repository' property")

    @property
    def repository(self) -> str:
        return self.properties["repository"]

    @property
    def prefix(self) -> str:
        """Path inside every ref under which tables live ('' for the ref's root)."""
        return self.properties.get("prefix", "").strip("/")

    def for_repository(self, repository: str) -> "Catalog":
        """This catalog bound to another lakeFS repository (a distinct Spark catalog name when
        the plugin registers one, since Spark caches a catalog's settings by name)."""
        if not self.versioned:
            raise CatalogError(f"catalog {self.name!r} ({self.type_name}) is not on lakeFS")
        if repository == self.repository:
            return self
        suffix = "".join(c if c.isalnum() else "_" for c in repository)
        base = self.properties.get("base-name", self.name)
        return type(self)(f"{base}__{suffix}", **{**self.properties, "repository": repository, "base-name": base})

    def activate(self, spark: SparkSession) -> "Catalog":
        """Register this catalog's (runtime) settings in an existing session."""
        for key, value in self.spark_conf().items():
            if key.startswith("spark.sql.catalog.") and key != "spark.sql.catalog.spark_catalog":
                spark.conf.set(key, value)
        return self

    @abstractmethod
    def spark_conf(self) -> dict[str, str]:
        """Spark settings that make this catalog usable in a session."""

    @abstractmethod
    def packages(self) -> list[str]:
        """Maven coordinates the catalog needs on the classpath (for --packages on a cluster)."""

    @abstractmethod
    def table(self, name: str, ref: str | None = None) -> TableRef:
        """The reference of table `namespace.table` at lakeFS `ref`."""

    def _check_ref(self, ref: str | None) -> None:
        if self.versioned and not ref:
            raise CatalogError(f"catalog {self.name!r} ({self.type_name}) needs a lakeFS ref for every table")
        if not self.versioned and ref:
            raise CatalogError(f"catalog {self.name!r} ({self.type_name}) is not on lakeFS; got ref {ref!r}")

    @property
    def spark_free_reads(self) -> bool:
        """Whether `read_small` reads without Spark (pyiceberg, for our Iceberg tables on lakeFS)."""
        return False

    def read_small(self, lakefs: Any, name: str, ref: str, *, row_filter: str | None = None,
                   columns: tuple[str, ...] = ("*",)) -> Any:
        """Table `name` at `ref` as a pyarrow Table, read without starting Spark (small tables:
        the rows land in this process); None when the ref has no such table. Only where
        `spark_free_reads`; the others are read through Spark."""
        raise NotImplementedError(f"catalog {self.name!r} ({self.type_name}) reads tables through Spark only")

    def table_path(self, name: str) -> str:
        """The table's directory inside a ref (prefix included)."""
        namespace, table = split_table_name(name)
        return "/".join(p for p in (self.prefix, *namespace.split("."), table) if p)

    def read(self, spark: SparkSession, table: TableRef) -> DataFrame:
        if table.identifier:
            return spark.table(table.identifier)
        return spark.read.format(table.format).load(table.path)

    def write(self, df: DataFrame, table: TableRef, mode: WriteMode = "create",
              partition_by: Sequence[str] = ()) -> None:
        """Write `df` as the table: create (fails if it exists), overwrite, append, or
        replace_partitions (the partitions `df` has rows for are replaced, the others kept: writing
        the same partitions twice leaves one copy).

        `partition_by` applies when the write creates the table (identity partitions)."""
        if table.identifier:
            writer = df.writeTo(table.identifier).using(table.format)
            if partition_by and mode not in ("append", "replace_partitions"):
                writer = writer.partitionedBy(*[F.col(c) for c in partition_by])
            if mode == "create":
                writer.create()
            elif mode == "overwrite":
                writer.createOrReplace()
            elif mode == "replace_partitions":
                writer.overwritePartitions()
            else:
                writer.append()
            return
        spark_mode = {"create": "errorifexists", "overwrite": "overwrite", "append": "append",
                      "replace_partitions": "overwrite"}[mode]
        path_writer = df.write.format(table.format).mode(spark_mode)
        if mode == "overwrite":
            path_writer = path_writer.option("overwriteSchema", "true")
        if mode == "replace_partitions":
            path_writer = path_writer.option("partitionOverwriteMode", "dynamic")
        if partition_by:
            path_writer = path_writer.partitionBy(*partition_by)
        path_writer.save(table.path)

    def exists(self, spark: SparkSession, table: TableRef) -> bool:
        if table.identifier:
            return bool(spark.catalog.tableExists(table.identifier))
        return path_exists(spark, f"{table.path}/_delta_log")

    def version_of(self, spark: SparkSession, table: TableRef) -> dict[str, int | None]:
        """The table format's own version of the table (Iceberg's current snapshot id, Delta's
        version): secondary lineage next to the lakeFS commit."""
        if table.identifier:
            jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
            iceberg = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, table.identifier)
            snapshot = iceberg.currentSnapshot()
            return {"iceberg_snapshot_id": int(snapshot.snapshotId()) if snapshot is not None else None}
        row = spark.sql(f"DESCRIBE HISTORY delta.{quote(table.path or '')} LIMIT 1").first()
        return {"delta_version": int(row["version"]) if row else None}

    def data_bytes(self, spark: SparkSession, table: TableRef) -> int:
        """Bytes of the data files of the table's current version (from its metadata, no listing)."""
        if table.identifier:  # Iceberg: the `files` metadata table of the current snapshot
            row = spark.table(f"{table.identifier}.files").agg(F.sum("file_size_in_bytes")).first()
            return int(row[0] or 0) if row else 0
        row = spark.sql(f"DESCRIBE DETAIL delta.{quote(table.path or '')}").first()
        return int(row["sizeInBytes"] or 0) if row else 0
