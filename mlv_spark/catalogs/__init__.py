"""Catalog plugins: the one seam between table names and Spark.

A plugin is chosen by its `type` from a profile's `[catalogs.<name>]` section and turns
(name, properties, lakeFS ref) into Spark conf, the Maven packages it needs, and table
identifiers or paths — like pyiceberg's `load_catalog(name, **properties)`.
"""

from mlv_spark.catalogs.base import Catalog, TableRef
from mlv_spark.catalogs.registry import CATALOG_TYPES, load_catalog, load_catalogs

__all__ = ["Catalog", "TableRef", "CATALOG_TYPES", "load_catalog", "load_catalogs"]
