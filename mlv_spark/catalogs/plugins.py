"""The shipped catalog plugins: lakefs-iceberg, lakefs-delta, local-iceberg."""

from __future__ import annotations

from mlv_spark.catalogs.base import Catalog, TableRef, quote, split_table_name
from mlv_spark.jvm import maven_packages

ICEBERG_SPARK_CATALOG = "org.apache.iceberg.spark.SparkCatalog"
REF_CATALOG_IMPL = "io.mlvspark.iceberg.LakeFSRefCatalog"


class LakeFSIcebergCatalog(Catalog):
    """Iceberg tables at any lakeFS ref: `<catalog>.<ref>.<namespace>.<table>`.

    Backed by our ref-relative catalog (java/lakefs-iceberg-catalog): metadata holds paths
    relative to the ref, so merged tables stay readable after their branch is deleted.
    Properties: `repository` (default: the profile's lakeFS repository), `prefix` (path
    inside the ref under which tables live, default none).
    """

    type_name = "lakefs-iceberg"
    format = "iceberg"

    @property
    def repository(self) -> str:
        return self.properties.get("repository", self.settings.lakefs.repository)

    def spark_conf(self) -> dict[str, str]:
        key = f"spark.sql.catalog.{self.name}"
        conf = {
            key: ICEBERG_SPARK_CATALOG,
            f"{key}.catalog-impl": REF_CATALOG_IMPL,
            f"{key}.lakefs.repository": self.repository,
            f"{key}.lakefs.root-uri-template": self.properties.get("root-uri-template", "s3a://{repo}/{ref}"),
            f"{key}.cache-enabled": "false",  # a branch moves under us: always read the current pointer
        }
        if self.properties.get("prefix"):
            conf[f"{key}.lakefs.prefix"] = self.properties["prefix"]
        return conf

    def packages(self) -> list[str]:
        return maven_packages("iceberg", "hadoop-aws")

    def table(self, name: str, ref: str | None = None) -> TableRef:
        self._check_ref(ref)
        assert ref is not None  # a versioned catalog: _check_ref refuses a missing ref
        namespace, table = split_table_name(name)
        parts = [self.name, ref, *namespace.split("."), table]
        return TableRef(self.name, namespace, table, ref, "iceberg",
                        identifier=".".join(quote(p) for p in parts))


class LakeFSDeltaCatalog(Catalog):
    """Delta tables at `s3a://<repo>/<ref>/<namespace>/<table>`.

    Delta's log stores relative paths, so branches are safe; one writer per table per branch.
    """

    type_name = "lakefs-delta"
    format = "delta"

    def spark_conf(self) -> dict[str, str]:
        return {"spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog"}

    def packages(self) -> list[str]:
        return maven_packages("delta", "hadoop-aws")

    def table(self, name: str, ref: str | None = None) -> TableRef:
        self._check_ref(ref)
        namespace, table = split_table_name(name)
        repository = self.properties.get("repository", self.settings.lakefs.repository)
        prefix = self.properties.get("prefix", "").strip("/")
        parts = [p for p in (prefix, *namespace.split("."), table) if p]
        return TableRef(self.name, namespace, table, ref, "delta",
                        path=f"s3a://{repository}/{ref}/" + "/".join(parts))


class LocalIcebergCatalog(Catalog):
    """A Hadoop Iceberg catalog on a local warehouse, without lakeFS: `<catalog>.<namespace>.<table>`."""

    type_name = "local-iceberg"
    format = "iceberg"
    versioned = False

    def spark_conf(self) -> dict[str, str]:
        key = f"spark.sql.catalog.{self.name}"
        warehouse = self.properties.get("warehouse", str(self.settings.services.run_dir / "warehouse"))
        return {key: ICEBERG_SPARK_CATALOG, f"{key}.type": "hadoop", f"{key}.warehouse": warehouse}

    def packages(self) -> list[str]:
        return maven_packages("iceberg")

    def table(self, name: str, ref: str | None = None) -> TableRef:
        self._check_ref(ref)
        namespace, table = split_table_name(name)
        parts = [self.name, *namespace.split("."), table]
        return TableRef(self.name, namespace, table, None, "iceberg",
                        identifier=".".join(quote(p) for p in parts))
