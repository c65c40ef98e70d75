"""The SQL-text layout of the join's union: internal column names, each view prepared with
positional names, times as epoch microseconds (plus nanoseconds), key types, and the sort key
of a pass. User column names never enter SQL text."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DateType,
    IntegralType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from mlv_spark.errors import FeatureDefinitionError, InvalidInputError
from mlv_spark.training.pit.spec import ViewInput, ViewJoinSpec

MICROS_PER_DAY = 86_400_000_000
NANOS_PER_MICRO = 1000

# Internal column names of the union; user columns never appear at the top level of it.
TIME, NANOS, KIND, TIME_KIND = "__mlv_t", "__mlv_tn", "__mlv_kind", "__mlv_tk"
CREATED, CREATED_NANOS, TIE = "__mlv_c", "__mlv_cn", "__mlv_tb"
ENTITY, BUCKET, SOURCE = "__mlv_e", "__mlv_bucket", "__mlv_src"
FEATURE_ROW, ENTITY_ROW = 0, 1
# Time key of an entity row without event time: odd (an entity row) and below every real time,
# so it sees no feature row; reads back as a null time.
NO_TIME = -(2**63) + 1


def entity_fields(entity_names: list[str]) -> dict[str, str]:
    """Internal name of each entity column (its field in the entity struct)."""
    return {name: f"__mlv_x{i}" for i, name in enumerate(entity_names)}



@dataclass(frozen=True)
class View:
    index: int
    spec: ViewJoinSpec
    df: DataFrame
    key_by_entity_column: dict[str, str]
    orderable: bool  # all feature values can be sort keys (maps cannot)
    nanos: bool

    @property
    def group_key(self) -> tuple[str, ...]:
        return tuple(sorted(self.key_by_entity_column))

    @property
    def columns(self) -> dict[str, str]:
        """Internal (positional) name of each source column, as in ``internal_df``."""
        return {name: f"__mlv_c{i}" for i, name in enumerate(self.df.columns)}

    @property
    def internal_df(self) -> DataFrame:
        return self.df.toDF(*self.columns.values())


def result_name(index: int) -> str:
    return f"__mlv_r{index}"


def values_name(index: int) -> str:
    return f"__mlv_v{index}"


def value_name(index: int, feature: int) -> str:
    return f"__mlv_v{index}_{feature}"


def prepare_view(index: int, view: ViewInput, entity_df: DataFrame) -> View:
    spec, df = view.spec, view.df
    if len(spec.entity_columns) != len(spec.join_keys):
        raise FeatureDefinitionError(
            f"view {spec.name!r}: {len(spec.join_keys)} join keys {list(spec.join_keys)} but "
            f"{len(spec.entity_columns)} entity columns {list(spec.entity_columns)}"
        )
    if len(set(spec.entity_columns)) != len(spec.entity_columns):
        raise FeatureDefinitionError(
            f"view {spec.name!r}: several join keys map to the same entity column "
            f"{list(spec.entity_columns)}"
        )
    missing_entity = [c for c in spec.entity_columns if c not in entity_df.columns]
    if missing_entity:
        raise InvalidInputError(
            f"entity DataFrame lacks join-key columns {missing_entity} needed by view "
            f"{spec.name!r}; it has {entity_df.columns}"
        )
    tie_break = spec.tie_break_columns if spec.tie_break_columns is not None else spec.features
    needed = [*spec.join_keys, spec.timestamp_field, *spec.features, *tie_break]
    if spec.created_timestamp_column:
        needed.append(spec.created_timestamp_column)
    missing = sorted({c for c in needed if c not in df.columns})
    if missing:
        raise FeatureDefinitionError(
            f"source of view {spec.name!r} lacks columns {missing}; it has {df.columns}"
        )
    ambiguous = sorted({c for c in needed if df.columns.count(c) > 1})
    if ambiguous:
        raise FeatureDefinitionError(f"source of view {spec.name!r} has several columns named {ambiguous}")
    schema = df.schema
    time_types = [schema[spec.timestamp_field].dataType]
    if spec.created_timestamp_column:
        time_types.append(schema[spec.created_timestamp_column].dataType)
    return View(
        index=index,
        spec=spec,
        df=df,
        key_by_entity_column=dict(zip(spec.entity_columns, spec.join_keys)),
        orderable=all(orderable(schema[f].dataType) for f in spec.features),
        nanos=any(isinstance(t, LongType) for t in time_types),
    )


def group_by_entity_columns(views: list[View]) -> list[list[View]]:
    """Views joined on the same set of entity columns share one shuffle and sort."""
    groups: dict[tuple[str, ...], list[View]] = {}
    for view in views:
        groups.setdefault(view.group_key, []).append(view)
    return list(groups.values())


def time_parts(expression: str, data_type: DataType, what: str) -> tuple[str, str | None]:
    """SQL text of (epoch microseconds, sub-microsecond nanos or None) of a time, in UTC."""
    if isinstance(data_type, TimestampType):
        return f"unix_micros({expression})", None
    if isinstance(data_type, TimestampNTZType):
        # Wall-clock arithmetic, independent of the session time zone (a cast would apply it).
        since_epoch = f"{expression} - CAST('1970-01-01 00:00:00' AS TIMESTAMP_NTZ)"
        seconds = f"CAST(CAST({since_epoch} AS INTERVAL SECOND) AS DECIMAL(20,6))"
        return f"CAST({seconds} * 1000000 AS BIGINT)", None
    if isinstance(data_type, DateType):
        return f"CAST(unix_date({expression}) AS BIGINT) * {MICROS_PER_DAY}", None
    if isinstance(data_type, LongType):
        # Exact integer floor division (a double division would round epoch nanoseconds).
        return floor_div(expression, NANOS_PER_MICRO), f"CAST(pmod({expression}, {NANOS_PER_MICRO}) AS INT)"
    raise FeatureDefinitionError(
        f"{what} has type {data_type.simpleString()}; expected timestamp, timestamp_ntz, date "
        "or bigint epoch nanoseconds"
    )


def micros_and_nanos(expression: str, data_type: DataType, what: str) -> tuple[str, str]:
    micros, nanos = time_parts(expression, data_type, what)
    return micros, (nanos if nanos is not None else "0")


def common_key_type(entity_column: str, types: list[tuple[str, DataType]]) -> DataType:
    first = types[0][1]
    if all(t == first for _, t in types):
        return first
    if all(isinstance(t, IntegralType) for _, t in types):
        return LongType()
    if all(isinstance(t, StringType) for _, t in types):
        return StringType()
    described = ", ".join(f"{who}: {t.simpleString()}" for who, t in types)
    raise InvalidInputError(
        f"join column {entity_column!r} has incompatible types ({described}); cast one side"
    )


def orderable(data_type: DataType) -> bool:
    if isinstance(data_type, MapType):
        return False
    if isinstance(data_type, ArrayType):
        return orderable(data_type.elementType)
    if isinstance(data_type, StructType):
        return all(orderable(f.dataType) for f in data_type.fields)
    return True



def cast_key(expression: str, data_type: DataType, common: DataType) -> str:
    """A key in the pass's common key type (only integers to bigint, or text to string)."""
    if data_type == common:
        return expression
    return f"CAST({expression} AS {common.simpleString()})"



def floor_div(expression: str, divisor: int) -> str:
    """Exact floor division of a bigint by a positive constant (no double rounding), with one
    integer division (a shift for a power of two): ``div`` truncates toward zero, so a
    negative dividend is moved one up and the quotient one down."""
    if divisor & (divisor - 1) == 0:
        return f"shiftright({expression}, {divisor.bit_length() - 1})"
    return f"CASE WHEN ({expression}) >= 0 THEN ({expression}) div {divisor} ELSE (({expression}) + 1) div {divisor} - 1 END"



@dataclass(frozen=True)
class SortKey:
    """The sort-key columns of one pass (the join keys come first, as partition columns).

    Without nanosecond sources, event time and kind share one column, ``2 * micros + kind``,
    so feature rows (kind 0) sort before entity rows (kind 1) at equal times; with them,
    ``(micros, nanos, kind)`` are kept apart. Created-time columns exist only when a view in
    the pass has one. The tie-break hash and the values follow. Expressions are SQL text.
    """

    nanos: bool
    created: bool

    def time_columns(self, micros: str, nanos: str, kind: int) -> list[str]:
        if not self.nanos:
            return [f"CAST(coalesce({micros} * 2 + {kind}, {NO_TIME}) AS BIGINT) AS {TIME_KIND}"]
        return [
            f"CAST({micros} AS BIGINT) AS {TIME}",
            f"CAST({nanos} AS INT) AS {NANOS}",
            f"CAST({kind} AS INT) AS {KIND}",
        ]

    def created_columns(self, micros: str, nanos: str) -> list[str]:
        if not self.created:
            return []
        columns = [f"CAST({micros} AS BIGINT) AS {CREATED}"]
        if self.nanos:
            columns.append(f"CAST({nanos} AS INT) AS {CREATED_NANOS}")
        return columns

    def names(self) -> list[str]:
        names = [TIME, NANOS, KIND] if self.nanos else [TIME_KIND]
        if self.created:
            names += [CREATED, CREATED_NANOS] if self.nanos else [CREATED]
        return [*names, TIE]

    def window_order(self) -> list[str]:
        return [TIME, NANOS, KIND] if self.nanos else [TIME_KIND]

    def micros(self) -> str:
        """Event time of a union row in epoch microseconds (floored for nanosecond sources)."""
        if self.nanos:
            return TIME
        return f"CASE WHEN {TIME_KIND} != {NO_TIME} THEN shiftright({TIME_KIND}, 1) END"

    def is_entity_row(self) -> str:
        if self.nanos:
            return f"({KIND} = {ENTITY_ROW})"
        return f"(({TIME_KIND} & 1) = {ENTITY_ROW})"

