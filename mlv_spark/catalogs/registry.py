"""Choose a catalog plugin by the `type` in its properties."""

from __future__ import annotations

from mlv_spark.catalogs.base import Catalog
from mlv_spark.catalogs.plugins import LakeFSDeltaCatalog, LakeFSIcebergCatalog, LocalIcebergCatalog
from mlv_spark.config import Settings
from mlv_spark.errors import CatalogError

CATALOG_TYPES: dict[str, type[Catalog]] = {
    cls.type_name: cls for cls in (LakeFSIcebergCatalog, LakeFSDeltaCatalog, LocalIcebergCatalog)
}


def load_catalog(name: str, settings: Settings) -> Catalog:
    """The catalog configured as `[catalogs.<name>]` in the active profile."""
    if name not in settings.catalogs:
        raise CatalogError(
            f"unknown catalog {name!r}: profile {settings.profile!r} defines {', '.join(sorted(settings.catalogs))}"
        )
    properties = settings.catalogs[name]
    kind = properties["type"]
    if kind not in CATALOG_TYPES:
        raise CatalogError(f"catalog {name!r} has unknown type {kind!r}; known types: {', '.join(sorted(CATALOG_TYPES))}")
    return CATALOG_TYPES[kind](name, properties, settings)


def load_catalogs(settings: Settings) -> dict[str, Catalog]:
    return {name: load_catalog(name, settings) for name in settings.catalogs}
