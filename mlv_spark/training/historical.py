"""`get_historical_features`: load definitions, read sources through resolvers, join."""

from __future__ import annotations

import os
import time
from typing import Sequence

from pyspark.sql import DataFrame, SparkSession

from mlv_spark.errors import FeatureDefinitionError, InvalidInputError
from mlv_spark.log import get_logger
from mlv_spark.sql import column
from mlv_spark.training.feast_repo import FeatureRepo, RequestedView, load_feature_repo, resolve_features
from mlv_spark.training.pit import ViewInput, ViewJoinSpec, point_in_time_join
from mlv_spark.training.sources import LoadedSource, Resolver, SourceReader, nanos_to_timestamp

log = get_logger(__name__)


def get_historical_features(
    spark: SparkSession,
    entity_df: DataFrame,
    *,
    feature_repo: str | os.PathLike | FeatureRepo,
    features: str | Sequence[str],
    full_feature_names: bool = False,
    table_resolver: Resolver | None = None,
    path_resolver: Resolver | None = None,
    hot_key_rows: int | None = None,
    prune_by_ttl: bool = True,
) -> DataFrame:
    """Point-in-time correct feature values for every row of ``entity_df``.

    ``feature_repo`` is a Feast feature repo path (or an already loaded ``FeatureRepo``);
    ``features`` a feature service name or ``"view:feature"`` references. Sources are read
    through ``table_resolver`` / ``path_resolver``. The result has one row per entity row.
    ``hot_key_rows`` turns on exact skew handling and ``prune_by_ttl`` drops feature rows no
    entity row can see within the TTL before the shuffle (see ``point_in_time_join``).
    """
    if not isinstance(entity_df, DataFrame):
        raise InvalidInputError(
            f"entity_df must be a Spark DataFrame, got {type(entity_df).__name__}"
        )
    started = time.monotonic()
    repo = feature_repo if isinstance(feature_repo, FeatureRepo) else load_feature_repo(feature_repo)
    reader = SourceReader(spark, repo.root, table_resolver=table_resolver, path_resolver=path_resolver)
    repo = repo.with_schema_reader(reader.columns)
    requested = resolve_features(repo, features)
    views = [ViewInput(_join_spec(r), _feature_frame(r, reader.read(r.view.source))) for r in requested]
    result = point_in_time_join(
        entity_df, views, full_feature_names=full_feature_names, hot_key_rows=hot_key_rows,
        prune_by_ttl=prune_by_ttl,
    )
    log.info(
        "planned training set from %s: %d views (%s), %d features, in %.1fs",
        repo.root,
        len(requested),
        ", ".join(r.name for r in requested),
        sum(len(r.features) for r in requested),
        time.monotonic() - started,
    )
    return result


def _join_spec(requested: RequestedView) -> ViewJoinSpec:
    view = requested.view
    return ViewJoinSpec(
        name=requested.name,
        join_keys=view.join_keys,
        features=requested.features,
        timestamp_field=view.timestamp_field,
        created_timestamp_column=view.created_timestamp_column,
        ttl=view.ttl,
        entity_keys=requested.entity_keys,
        tie_break_columns=view.feature_names,
    )


def _feature_frame(requested: RequestedView, loaded: LoadedSource) -> DataFrame:
    """Source rows with field_mapping applied and nanosecond feature values as timestamps."""
    view = requested.view
    df = loaded.df
    mapping = {raw: new for raw, new in view.field_mapping.items() if raw in df.columns}
    clashes = sorted(new for raw, new in mapping.items() if new in df.columns and new not in mapping)
    if clashes:
        raise FeatureDefinitionError(
            f"field_mapping of view {view.name!r} renames onto existing columns {clashes} "
            f"of {loaded.location}"
        )
    times = {view.timestamp_field, view.created_timestamp_column}
    converted = {
        raw: nanos_to_timestamp(column(raw), utc)
        for raw, utc in loaded.nanos_columns.items()
        if mapping.get(raw, raw) not in times
    }
    if converted:
        df = df.withColumns(converted)
    return df.withColumnsRenamed(mapping) if mapping else df

