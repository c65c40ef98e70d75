"""The `lakefs-delta` plugin: Delta tables at `s3a://<repo>/<ref>/<prefix>/<namespace>/<table>`."""

from __future__ import annotations

from mlv_spark.catalogs.base import Catalog, TableRef, split_table_name
from mlv_spark.jvm import maven_packages


class LakeFSDeltaCatalog(Catalog):
    """Delta's log stores relative paths, so branches are safe; one writer per table per branch.
    Properties: `repository`, `prefix`."""

    type_name = "lakefs-delta"
    format = "delta"

    def spark_conf(self) -> dict[str, str]:
        return {"spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog"}

    def packages(self) -> list[str]:
        return maven_packages("delta", "hadoop-aws")

    def table(self, name: str, ref: str | None = None) -> TableRef:
        self._check_ref(ref)
        namespace, table = split_table_name(name)
        return TableRef(self.name, namespace, table, ref, "delta",
                        path=f"s3a://{self.repository}/{ref}/{self.table_path(name)}")
