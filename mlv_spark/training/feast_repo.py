"""Feast feature definitions, loaded from a feature repo's files without `feast apply`.

``load_feature_repo`` imports the repo's Python files the way Feast's CLI does (repo root as
working directory and on ``sys.path``, modules named by their path relative to the root,
``.feastignore`` honoured) through ``feast.repo_operations.parse_repo``. Each load imports
the files afresh: the repo's modules are removed from ``sys.modules`` before and after, so
loading the same repo twice, or two repos with equally named files, gives each its own
objects. Loading holds a process-wide lock because the working directory is process state.

What ``feast apply`` infers before registering (``feast.inference``) is inferred here too,
per requested view, from the source schema as read through our resolvers:

* a missing ``timestamp_field``: the single timestamp-typed source column;
* entity columns: schema fields named like a join key, then entities with a declared
  ``value_type``, then source columns named like a join key;
* features of a view declared without a feature schema: every other source column except
  the timestamp and created columns and names starting or ending with ``__``;
* feature-service projections without features: all (inferred) features of the view.

Two deliberate differences (see docs/training-sets.md): names are compared *after*
``field_mapping`` (Feast compares raw source names for join keys and stores the raw name of
an inferred timestamp field, which breaks mapped columns), and a join key that is found
neither in the schema nor in the source is an error (Feast would silently join without it).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml
from pyspark.sql import SparkSession
from pyspark.sql.types import DataType

from mlv_spark.errors import FeatureDefinitionError
from mlv_spark.log import get_logger
from mlv_spark.training.sources import Resolver, SourceColumns, SourceReader

log = get_logger(__name__)

_LOAD_LOCK = threading.RLock()
_INTERNAL_NAME = re.compile(r"^__|__$")
_DUMMY_ENTITY_NAME = "__dummy"  # feast.feature_view.DUMMY_ENTITY_NAME: the entity of entityless views


SchemaReader = Callable[[Any], SourceColumns]


@dataclass(frozen=True)
class FeatureField:
    """A feature or entity column of a view (name after field mapping) and its Feast type."""

    name: str
    dtype: str


@dataclass(frozen=True)
class ViewDefinition:
    """A feature view after apply-time inference; names are after ``field_mapping``."""

    name: str
    source: Any  # feast DataSource
    join_keys: tuple[str, ...]
    entity_columns: tuple[FeatureField, ...]
    features: tuple[FeatureField, ...]
    timestamp_field: str
    created_timestamp_column: str | None
    field_mapping: dict[str, str]
    ttl: timedelta | None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


@dataclass(frozen=True)
class RequestedView:
    """One projection of a view in a request: output name, key mapping and features."""

    view: ViewDefinition
    name: str  # view name or alias, used in output names and refs
    join_key_map: dict[str, str]
    features: tuple[str, ...]

    @property
    def entity_keys(self) -> tuple[str, ...]:
        return tuple(self.join_key_map.get(k, k) for k in self.view.join_keys)


@dataclass
class FeatureRepo:
    """Feast objects defined in one feature repo, plus what apply-time inference found."""

    root: Path
    project: str
    feature_views: dict[str, Any]  # feast FeatureView / StreamFeatureView
    feature_services: dict[str, Any]
    entities: dict[str, Any]
    on_demand_feature_views: dict[str, Any]
    schema_reader: SchemaReader | None = None
    _inferred: dict[str, ViewDefinition] = field(default_factory=dict, repr=False)

    def with_schema_reader(self, reader: SchemaReader) -> "FeatureRepo":
        """The same definitions, inferring from sources read by ``reader``."""
        return FeatureRepo(
            root=self.root,
            project=self.project,
            feature_views=self.feature_views,
            feature_services=self.feature_services,
            entities=self.entities,
            on_demand_feature_views=self.on_demand_feature_views,
            schema_reader=reader,
        )

    def view(self, name: str) -> ViewDefinition:
        """The named feature view after apply-time inference."""
        if name not in self.feature_views:
            if name in self.on_demand_feature_views:
                raise FeatureDefinitionError(
                    f"{name!r} is an on-demand feature view; they are not supported yet"
                )
            raise FeatureDefinitionError(
                f"unknown feature view {name!r}; the repo {self.root} defines "
                f"{list_feature_views(self)}"
            )
        if name not in self._inferred:
            self._inferred[name] = _infer_view(self, self.feature_views[name])
        return self._inferred[name]


# ----------------------------------------------------------------------------- loading


def load_feature_repo(
    repo_path: str | os.PathLike,
    *,
    spark: SparkSession | None = None,
    table_resolver: Resolver | None = None,
    path_resolver: Resolver | None = None,
) -> FeatureRepo:
    """Parses the definitions of the Feast feature repo at ``repo_path`` (no registry, no apply).

    With ``spark``, what `feast apply` would infer from source schemas (a missing timestamp
    field, undeclared features or entity columns) is read through the resolvers on demand;
    without it, only views that need no such inference can be resolved.
    """
    root = Path(repo_path).resolve()
    config_file = root / "feature_store.yaml"
    if not config_file.is_file():
        raise FeatureDefinitionError(f"{root} is not a Feast feature repo: no feature_store.yaml")
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
    except yaml.YAMLError as e:
        raise FeatureDefinitionError(f"cannot parse {config_file}: {e}") from e
    project = config.get("project") if isinstance(config, dict) else None
    if not project:
        raise FeatureDefinitionError(f"{config_file} does not name a project")
    contents = _parse_definitions(root)
    views = _unique("feature view", [*contents.feature_views, *contents.stream_feature_views])
    repo = FeatureRepo(
        root=root,
        project=str(project),
        feature_views=views,
        feature_services=_unique("feature service", contents.feature_services),
        entities={e.name: e for e in contents.entities if e.name != _DUMMY_ENTITY_NAME},
        on_demand_feature_views=_unique("on-demand feature view", contents.on_demand_feature_views),
    )
    if spark is not None:
        reader = SourceReader(spark, root, table_resolver=table_resolver, path_resolver=path_resolver)
        repo = repo.with_schema_reader(reader.columns)
    log.info(
        "loaded feature repo %s: %d views, %d services, %d entities",
        root, len(repo.feature_views), len(repo.feature_services), len(repo.entities),
    )
    return repo


def _unique(kind: str, objects: Iterable) -> dict[str, Any]:
    by_name: dict[str, Any] = {}
    for obj in objects:
        if obj.name in by_name:
            raise FeatureDefinitionError(f"two {kind}s are named {obj.name!r}; names must be unique")
        by_name[obj.name] = obj
    return by_name


def _module_names(root: Path, files: Sequence[Path]) -> set[str]:
    names: set[str] = set()
    for file in files:
        parts = file.relative_to(root).with_suffix("").parts
        names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


def _inside(module: object, root: Path) -> bool:
    locations = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    for location in locations:
        if location and Path(location).resolve().is_relative_to(root):
            return True
    return False


def _parse_definitions(root: Path):
    from feast.repo_operations import get_repo_files, parse_repo

    with _LOAD_LOCK:
        files = get_repo_files(root)
        names = _module_names(root, files)
        shadowing = sorted(n for n in names if n.split(".")[0] in sys.stdlib_module_names)
        if shadowing:
            raise FeatureDefinitionError(
                f"files in {root} would import as standard-library modules {shadowing}; rename them"
            )
        displaced = {n: sys.modules.pop(n) for n in names if n in sys.modules}
        before = set(sys.modules)
        saved_cwd, saved_bytecode = os.getcwd(), sys.dont_write_bytecode
        sys.path.insert(0, str(root))
        try:
            os.chdir(root)
            sys.dont_write_bytecode = True
            importlib.invalidate_caches()
            with warnings.catch_warnings():
                # Feast warns on every SparkSource a repo builds that the API is alpha (we pin
                # Feast and test against it); its modules re-enable the warning on import.
                warnings.filterwarnings("ignore", message="The spark data source API is an experimental feature",
                                        category=RuntimeWarning)
                return parse_repo(root)
        except FeatureDefinitionError:
            raise
        except Exception as e:
            raise FeatureDefinitionError(
                f"cannot load the feature definitions in {root}: {type(e).__name__}: {e}"
            ) from e
        finally:
            os.chdir(saved_cwd)
            sys.dont_write_bytecode = saved_bytecode
            sys.path.remove(str(root))
            for name in set(sys.modules) - before:
                if name in names or _inside(sys.modules[name], root):
                    del sys.modules[name]
            sys.modules.update(displaced)


# ----------------------------------------------------------------------------- inference


def _feast_dtype(data_type: DataType, is_time: bool) -> str:
    from feast.type_map import spark_to_feast_value_type

    if is_time:
        return "UNIX_TIMESTAMP"
    try:
        return spark_to_feast_value_type(data_type.simpleString()).name
    except Exception:  # a type Feast cannot map: keep Spark's name for the record
        return data_type.simpleString()


def _infer_view(repo: FeatureRepo, fv) -> ViewDefinition:
    from feast.value_type import ValueType

    source = fv.batch_source
    if source is None:
        raise FeatureDefinitionError(f"feature view {fv.name!r} has no batch source to read")
    mapping = dict(source.field_mapping or {})
    columns: SourceColumns | None = None

    def source_columns(reason: str) -> SourceColumns:
        nonlocal columns
        if columns is None:
            if repo.schema_reader is None:
                raise FeatureDefinitionError(
                    f"feature view {fv.name!r} needs its source schema to infer {reason}; "
                    "pass spark= to load_feature_repo (get_historical_features does)"
                )
            columns = repo.schema_reader(source)
        return columns

    timestamp_field = source.timestamp_field or ""
    if not timestamp_field:
        found = source_columns("its timestamp field")
        candidates = [name for name, _ in found.columns if name in found.time_columns]
        if len(candidates) != 1:
            raise FeatureDefinitionError(
                f"cannot infer the timestamp field of view {fv.name!r}: the source has "
                f"{len(candidates)} timestamp columns {candidates}; set timestamp_field"
            )
        timestamp_field = mapping.get(candidates[0], candidates[0])
    created = source.created_timestamp_column or None

    join_keys: list[str] = []
    for entity_name in fv.entities:
        if entity_name == _DUMMY_ENTITY_NAME:
            continue
        entity = repo.entities.get(entity_name)
        if entity is None:
            raise FeatureDefinitionError(
                f"feature view {fv.name!r} uses entity {entity_name!r}, which the repo does not "
                f"define; it defines {sorted(repo.entities)}"
            )
        join_keys.append(entity.join_key)

    entity_columns = {f.name: FeatureField(f.name, _field_type(f)) for f in fv.entity_columns}
    for entity_name in fv.entities:
        entity = repo.entities.get(entity_name)
        if entity is None or entity_name == _DUMMY_ENTITY_NAME:
            continue
        if entity.join_key not in entity_columns and entity.value_type != ValueType.UNKNOWN:
            entity_columns[entity.join_key] = FeatureField(entity.join_key, entity.value_type.name)
    features = [FeatureField(f.name, _field_type(f)) for f in fv.features]

    if len(entity_columns) < len(join_keys) or not features:
        found = source_columns("its features" if not features else "its entity columns")
        excluded = {timestamp_field, created}
        infer_features = not features
        for raw, data_type in found.columns:
            name = mapping.get(raw, raw)
            if name in excluded:
                continue
            dtype = _feast_dtype(data_type, raw in found.time_columns)
            if name in join_keys:
                entity_columns.setdefault(name, FeatureField(name, dtype))
            elif infer_features and not _INTERNAL_NAME.search(raw):
                features.append(FeatureField(name, dtype))
    missing_keys = [k for k in join_keys if k not in entity_columns]
    if missing_keys:
        raise FeatureDefinitionError(
            f"feature view {fv.name!r}: join keys {missing_keys} are neither in its schema nor "
            "in its source"
        )
    if not features:
        raise FeatureDefinitionError(f"feature view {fv.name!r} has no features")
    ttl = fv.ttl if fv.ttl else None
    return ViewDefinition(
        name=fv.name,
        source=source,
        join_keys=tuple(join_keys),
        entity_columns=tuple(entity_columns[k] for k in join_keys),
        features=tuple(features),
        timestamp_field=timestamp_field,
        created_timestamp_column=created,
        field_mapping=mapping,
        ttl=ttl,
    )


def _field_type(field_) -> str:
    """The Feast value type name of a declared field (as inference reports it)."""
    try:
        return field_.dtype.to_value_type().name
    except Exception:  # a type without a value-type equivalent: keep its own name
        return str(field_.dtype)


# ----------------------------------------------------------------------------- requests


def list_feature_views(repo: FeatureRepo) -> list[str]:
    """Names of the feature views in the repo, sorted."""
    return sorted(repo.feature_views)


def list_feature_services(repo: FeatureRepo) -> list[str]:
    """Names of the feature services in the repo, sorted."""
    return sorted(repo.feature_services)


def expand_feature_service(repo: FeatureRepo, name: str) -> list[str]:
    """The ``view_or_alias:feature`` references a feature service stands for, in order."""
    return [f"{r.name}:{f}" for r in _service_projections(repo, name) for f in r.features]


def resolve_features(repo: FeatureRepo, features: str | Sequence[str]) -> list[RequestedView]:
    """Requested views in order of first appearance, features in requested order.

    ``features`` is a feature service name or a list of ``"view:feature"`` references.
    """
    if isinstance(features, str):
        return _service_projections(repo, features)
    refs = list(features)
    if not refs:
        raise FeatureDefinitionError("no features requested")
    grouped: dict[str, list[str]] = {}
    for ref in refs:
        if not isinstance(ref, str) or ref.count(":") != 1:
            raise FeatureDefinitionError(
                f"feature reference {ref!r} is not of the form 'view:feature'"
            )
        view_name, feature = ref.split(":")
        _reject_version(view_name, ref)
        view = repo.view(view_name)
        _check_feature(view, view.name, feature)
        grouped.setdefault(view_name, []).append(feature)
    return [
        RequestedView(view=repo.view(v), name=v, join_key_map={}, features=tuple(fs))
        for v, fs in grouped.items()
    ]


def _reject_version(view_name: str, ref: str) -> None:
    if "@" in view_name:
        raise FeatureDefinitionError(
            f"{ref!r} pins a feature view version; versions need a Feast registry and are not "
            "supported"
        )


def _check_feature(view: ViewDefinition, shown_as: str, feature: str) -> None:
    if feature not in view.feature_names:
        raise FeatureDefinitionError(
            f"feature view {shown_as!r} has no feature {feature!r}; it has {list(view.feature_names)}"
        )


def _service_projections(repo: FeatureRepo, name: str) -> list[RequestedView]:
    service = repo.feature_services.get(name)
    if service is None:
        raise FeatureDefinitionError(
            f"unknown feature service {name!r}; the repo {repo.root} defines "
            f"{list_feature_services(repo)}"
        )
    requested: dict[str, RequestedView] = {}
    for projection in list(service.feature_view_projections):
        if projection.version_tag is not None:
            raise FeatureDefinitionError(
                f"feature service {name!r} pins a version of view {projection.name!r}; "
                "versions need a Feast registry and are not supported"
            )
        view = repo.view(projection.name)
        shown_as = projection.name_to_use()
        if projection.desired_features:
            for feature in projection.desired_features:
                _check_feature(view, shown_as, feature)
            wanted = set(projection.desired_features)
            chosen = [f for f in view.feature_names if f in wanted]
        elif projection.features:
            chosen = [f.name for f in projection.features]
            for feature in chosen:
                _check_feature(view, shown_as, feature)
        else:
            chosen = list(view.feature_names)
        _merge(requested, RequestedView(view, shown_as, dict(projection.join_key_map), tuple(chosen)))
    for ref in getattr(service, "_pending_feature_refs", []) or []:
        view_name, _, feature = ref.partition(":")
        _reject_version(view_name, ref)
        view = repo.view(view_name)
        if feature:
            _check_feature(view, view_name, feature)
        picked = (feature,) if feature else view.feature_names
        _merge(requested, RequestedView(view, view_name, {}, picked))
    return list(requested.values())


def _merge(requested: dict[str, RequestedView], new: RequestedView) -> None:
    """Projections with the same output name merge, as in Feast."""
    old = requested.get(new.name)
    if old is None:
        requested[new.name] = new
        return
    if old.view.name != new.view.name or old.join_key_map != new.join_key_map:
        raise FeatureDefinitionError(
            f"two projections are both named {new.name!r} but differ in view or join-key map"
        )
    extra = tuple(f for f in new.features if f not in old.features)
    requested[new.name] = RequestedView(old.view, old.name, old.join_key_map, old.features + extra)
