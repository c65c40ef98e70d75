"""Iceberg plugins: `lakefs-iceberg` (tables at any lakeFS ref) and `local-iceberg` (no lakeFS)."""

from __future__ import annotations

from mlv_spark.catalogs.base import Catalog, TableRef, split_table_name
from mlv_spark.errors import CatalogError
from mlv_spark.jvm import maven_packages
from mlv_spark.sql import quote

ICEBERG_SPARK_CATALOG = "org.apache.iceberg.spark.SparkCatalog"
REF_CATALOG_IMPL = "io.mlvspark.iceberg.LakeFSRefCatalog"


class LakeFSIcebergCatalog(Catalog):
    """Iceberg tables at any lakeFS ref: `<catalog>.<ref>.<namespace>.<table>`.

    Backed by our ref-relative catalog (java/lakefs-iceberg-catalog): metadata holds paths
    relative to the ref, so merged tables stay readable after their branch is deleted.
    Properties: `repository`, `prefix` (path inside the ref under which tables live, default
    none), `root-uri-template` (default `s3a://{repo}/{ref}`), `spark-free-reads` (default true:
    small reads such as the split registry go through pyiceberg, without starting Spark).
    """

    type_name = "lakefs-iceberg"
    format = "iceberg"

    def spark_conf(self) -> dict[str, str]:
        key = f"spark.sql.catalog.{self.name}"
        conf = {
            key: ICEBERG_SPARK_CATALOG,
            f"{key}.catalog-impl": REF_CATALOG_IMPL,
            f"{key}.lakefs.repository": self.repository,
            f"{key}.lakefs.root-uri-template": self.properties.get("root-uri-template", "s3a://{repo}/{ref}"),
            f"{key}.cache-enabled": "false",  # a branch moves under us: always read the current pointer
        }
        if self.prefix:
            conf[f"{key}.lakefs.prefix"] = self.prefix
        return conf

    def packages(self) -> list[str]:
        return maven_packages("iceberg", "hadoop-aws")

    @property
    def spark_free_reads(self) -> bool:
        """On unless the catalog's `spark-free-reads` property is "false"."""
        return self.properties.get("spark-free-reads", "true").strip().lower() != "false"

    def read_small(self, lakefs, name: str, ref: str, *, row_filter: str | None = None,
                   columns: tuple[str, ...] = ("*",)):
        from mlv_spark.catalogs.pyiceberg_ref import load_table, read_rows

        table = load_table(lakefs, ref, self.table_path(name))
        return None if table is None else read_rows(table, row_filter=row_filter, columns=columns)

    def table(self, name: str, ref: str | None = None) -> TableRef:
        self._check_ref(ref)
        assert ref is not None  # a versioned catalog: _check_ref refuses a missing ref
        namespace, table = split_table_name(name)
        parts = [self.name, ref, *namespace.split("."), table]
        return TableRef(self.name, namespace, table, ref, "iceberg", identifier=".".join(quote(p) for p in parts))


class LocalIcebergCatalog(Catalog):
    """A Hadoop Iceberg catalog on a local warehouse, without lakeFS: `<catalog>.<namespace>.<table>`.
    Properties: `warehouse` (a directory)."""

    type_name = "local-iceberg"
    format = "iceberg"
    versioned = False

    def spark_conf(self) -> dict[str, str]:
        if not self.properties.get("warehouse"):
            raise CatalogError(f"catalog {self.name!r} ({self.type_name}) needs a 'warehouse' property")
        key = f"spark.sql.catalog.{self.name}"
        return {key: ICEBERG_SPARK_CATALOG, f"{key}.type": "hadoop", f"{key}.warehouse": self.properties["warehouse"]}

    def packages(self) -> list[str]:
        return maven_packages("iceberg")

    def table(self, name: str, ref: str | None = None) -> TableRef:
        self._check_ref(ref)
        namespace, table = split_table_name(name)
        parts = [self.name, *namespace.split("."), table]
        return TableRef(self.name, namespace, table, None, "iceberg", identifier=".".join(quote(p) for p in parts))
