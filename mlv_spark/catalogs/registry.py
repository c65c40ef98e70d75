"""Choose a catalog plugin by the `type` in its properties, importing it only when used."""

from __future__ import annotations

import importlib

from mlv_spark.catalogs.base import Catalog
from mlv_spark.config import Settings
from mlv_spark.errors import CatalogError

#: type -> "module:class"; a plugin's module is imported the first time a catalog of its type loads.
CATALOG_TYPES: dict[str, str] = {
    "lakefs-iceberg": "mlv_spark.catalogs.iceberg:LakeFSIcebergCatalog",
    "lakefs-delta": "mlv_spark.catalogs.delta:LakeFSDeltaCatalog",
    "local-iceberg": "mlv_spark.catalogs.iceberg:LocalIcebergCatalog",
}


def load_catalog(name: str, **properties: str) -> Catalog:
    """The catalog `name` of type `properties["type"]`, configured by the flat `properties`."""
    kind = properties.get("type")
    if kind not in CATALOG_TYPES:
        raise CatalogError(
            f"catalog {name!r} has unknown type {kind!r}; known types: {', '.join(sorted(CATALOG_TYPES))}"
        )
    module_name, _, class_name = CATALOG_TYPES[kind].partition(":")
    try:
        plugin = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise CatalogError(f"catalog type {kind!r} cannot be loaded ({exc}); install mlv-spark with its dependencies") from exc
    return plugin(name, **{k: v for k, v in properties.items() if k != "type"})


def catalog_properties(settings: Settings, name: str) -> dict[str, str]:
    """The flat properties of `[catalogs.<name>]` in the profile, with the profile's defaults
    (lakeFS repository, local warehouse) filled in."""
    if name not in settings.catalogs:
        raise CatalogError(
            f"unknown catalog {name!r}: profile {settings.profile!r} defines {', '.join(sorted(settings.catalogs))}"
        )
    properties = dict(settings.catalogs[name])
    properties.setdefault("repository", settings.lakefs.repository)
    properties.setdefault("warehouse", str(settings.services.run_dir / "warehouse"))
    return properties


def profile_catalog(settings: Settings, name: str, repository: str | None = None) -> Catalog:
    """Catalog `name` of the profile, bound to `repository` when given."""
    catalog = load_catalog(name, **catalog_properties(settings, name))
    return catalog.for_repository(repository) if repository and catalog.versioned else catalog


def load_catalogs(settings: Settings) -> dict[str, Catalog]:
    """Every catalog of the profile."""
    return {name: profile_catalog(settings, name) for name in settings.catalogs}
