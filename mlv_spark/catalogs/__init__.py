"""Catalog plugins: the one seam between table names and Spark, and `Tables`, which reads and
writes them at lakeFS refs.

A plugin is chosen by its `type` from a profile's `[catalogs.<name>]` section, imported only
when used, and turns (name, flat properties, lakeFS ref) into Spark conf, the Maven packages it
needs, and table identifiers or paths — like pyiceberg's `load_catalog(name, **properties)`.
"""

from mlv_spark.catalogs.base import Catalog, TableRef, split_table_name
from mlv_spark.catalogs.registry import CATALOG_TYPES, catalog_properties, load_catalog, load_catalogs, profile_catalog
from mlv_spark.catalogs.tables import Tables

__all__ = ["CATALOG_TYPES", "Catalog", "TableRef", "Tables", "catalog_properties", "load_catalog", "load_catalogs",
           "profile_catalog", "split_table_name"]
