"""Read and write catalog tables at lakeFS refs, with the ref checked before Spark runs.

Reads resolve the ref first (a missing ref is a RefNotFoundError, not a Spark stack trace);
writes insist on a branch (tags and commits are immutable).
"""

from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame, SparkSession

from mlv_spark.catalogs.base import Catalog, TableRef, WriteMode
from mlv_spark.errors import CatalogError
from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger

log = get_logger(__name__)


class Tables:
    """Tables of one catalog in one lakeFS repository."""

    def __init__(self, spark: SparkSession, catalog: Catalog, lakefs: LakeFS | None):
        if catalog.versioned and lakefs is None:
            raise CatalogError(f"catalog {catalog.name!r} lives on lakeFS and needs a lakeFS client")
        self.spark = spark
        self.catalog = catalog
        self.lakefs = lakefs

    def ref(self, name: str, ref: str | None) -> TableRef:
        return self.catalog.table(name, ref)

    def read(self, name: str, ref: str | None = None) -> DataFrame:
        """Table `name` as of `ref` (branch, tag or commit id)."""
        table = self.catalog.table(name, ref)
        if self.catalog.versioned and self.lakefs is not None:
            self.lakefs.resolve(ref or "")
        if not self.catalog.exists(self.spark, table):
            raise CatalogError(f"table {table.describe()} does not exist")
        return self.catalog.read(self.spark, table)

    def exists(self, name: str, ref: str | None = None) -> bool:
        table = self.catalog.table(name, ref)
        if self.catalog.versioned and self.lakefs is not None:
            self.lakefs.resolve(ref or "")
        return self.catalog.exists(self.spark, table)

    def data_bytes(self, name: str, ref: str | None = None) -> int:
        """Bytes of table `name`'s current data files at `ref`."""
        table = self.catalog.table(name, ref)
        if not self.catalog.exists(self.spark, table):
            raise CatalogError(f"table {table.describe()} does not exist")
        return self.catalog.data_bytes(self.spark, table)

    def write(self, df: DataFrame, name: str, branch: str | None = None, mode: WriteMode = "create",
              partition_by: Sequence[str] = ()) -> TableRef:
        """Write `df` as table `name` on `branch` (create / overwrite / append)."""
        table = self.catalog.table(name, branch)
        if self.catalog.versioned and self.lakefs is not None:
            self.lakefs.require_branch(branch or "")
        self.catalog.write(df, table, mode, partition_by)
        log.info("tables: wrote %s (%s)", table.describe(), mode)
        return table
