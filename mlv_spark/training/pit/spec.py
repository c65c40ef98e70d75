"""The inputs of a point-in-time join: one requested feature view's join spec and rows, the
output names they produce, and which entity column holds the event time (PIT rules 10, 13)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Sequence

from pyspark.sql import DataFrame
from pyspark.sql.types import TimestampNTZType, TimestampType

from mlv_spark.errors import FeatureDefinitionError, InvalidInputError

DEFAULT_ENTITY_TIMESTAMP_COLUMN = "event_timestamp"


@dataclass(frozen=True)
class ViewJoinSpec:
    """What the join needs to know about one requested feature view (projection).

    Column names refer to the feature DataFrame after ``field_mapping`` was applied.
    ``entity_keys`` are the entity columns matched by ``join_keys`` (``with_join_key_map``);
    ``None`` means the same names. ``tie_break_columns`` are hashed to break full ties
    (same keys, event and created time); by default all requested ``features``, but callers
    should pass all of the view's features so the choice does not depend on the request.
    """

    name: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    timestamp_field: str
    created_timestamp_column: str | None = None
    ttl: timedelta | None = None
    entity_keys: tuple[str, ...] | None = None
    tie_break_columns: tuple[str, ...] | None = None

    @property
    def entity_columns(self) -> tuple[str, ...]:
        return self.entity_keys if self.entity_keys is not None else self.join_keys


@dataclass(frozen=True)
class ViewInput:
    """One requested feature view: its metadata and its source rows."""

    spec: ViewJoinSpec
    df: DataFrame


def output_feature_names(specs: Sequence[ViewJoinSpec], full_feature_names: bool) -> list[list[str]]:
    """Output column names per view; a name produced twice is a FeatureDefinitionError."""
    names = [
        [f"{spec.name}__{feature}" if full_feature_names else feature for feature in spec.features]
        for spec in specs
    ]
    counts = Counter(name for view_names in names for name in view_names)
    collided = sorted(name for name, count in counts.items() if count > 1)
    if collided:
        refs = [
            f"{spec.name}:{feature}"
            for spec, view_names in zip(specs, names)
            for feature, name in zip(spec.features, view_names)
            if name in collided
        ]
        hint = "" if full_feature_names else "; use full_feature_names=True or request only one"
        raise FeatureDefinitionError(f"feature names collide: {refs} all produce {collided}{hint}")
    return names


def entity_timestamp_column(entity_df: DataFrame, explicit: str | None = None) -> str:
    """`event_timestamp` if present, else the only timestamp column (PIT rule 10)."""
    types = dict(entity_df.dtypes)
    if explicit is not None:
        if explicit not in types:
            raise InvalidInputError(
                f"entity timestamp column {explicit!r} is not in the entity columns {list(types)}"
            )
        chosen = explicit
    elif DEFAULT_ENTITY_TIMESTAMP_COLUMN in types:
        chosen = DEFAULT_ENTITY_TIMESTAMP_COLUMN
    else:
        candidates = [
            f.name
            for f in entity_df.schema.fields
            if isinstance(f.dataType, (TimestampType, TimestampNTZType))
        ]
        if len(candidates) != 1:
            raise InvalidInputError(
                "cannot tell the entity event time: there is no 'event_timestamp' column and "
                f"{len(candidates)} timestamp columns {candidates}; name the column 'event_timestamp'"
            )
        chosen = candidates[0]
    data_type = entity_df.schema[chosen].dataType
    if not isinstance(data_type, (TimestampType, TimestampNTZType)):
        raise InvalidInputError(
            f"entity timestamp column {chosen!r} has type {data_type.simpleString()}; "
            "cast it to timestamp"
        )
    return chosen

