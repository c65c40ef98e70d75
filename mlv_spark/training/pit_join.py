"""Point-in-time join of feature views onto entity rows: pure DataFrame -> DataFrame.

The rules are listed in docs/training-sets.md ("Semantics, rule by rule"), which also explains the
algorithm. In short, for each group of views joined on the same entity columns: one union of
entity rows and feature rows, one shuffle by join keys, one sort by
``(2 * time + kind, created time, tie-break hash, values)`` (feature rows, kind 0, sort
before entity rows at equal times) and a carry-forward of the latest feature row, by a linear
scan in the JVM (``io.mlvspark.pit.CarryForward``, the mlv-spark-scans jar) or, without it, a
running ``last(feature struct, ignorenulls)`` window; TTL is applied to the carried winner
afterwards. Entity rows carry all their columns (and the
results of earlier groups), so nothing is joined back. Before the union, feature rows of views
with a TTL that no entity row can see are dropped (``_TtlFilter``). No I/O happens here.

Time columns are compared as microseconds since the epoch (UTC): ``timestamp`` columns are
instants, ``timestamp_ntz`` and ``date`` columns are read as UTC, and a ``bigint`` time column
of a feature source is epoch *nanoseconds* (how parquet written by pandas is read, see
``sources.py``); its sub-microsecond remainder is then kept as a separate sort key, so
nanosecond data is compared exactly.

The plan is written as SQL text (``selectExpr``) over positional internal names (``toDF``):
user column names never appear in SQL text, and building the plan costs a few JVM calls per
select rather than several per column expression.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import reduce
from typing import Sequence

from py4j.java_gateway import JavaClass
from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    IntegralType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from mlv_spark.errors import FeatureDefinitionError, InvalidInputError
from mlv_spark.fingerprint import row_hash_sql
from mlv_spark.jvm import scan_class

log = logging.getLogger(__name__)

DEFAULT_ENTITY_TIMESTAMP_COLUMN = "event_timestamp"
_MICROS_PER_DAY = 86_400_000_000
_NANOS_PER_MICRO = 1000

# Internal column names of the union; user columns never appear at the top level of it.
_TIME, _NANOS, _KIND, _TIME_KIND = "__mlv_t", "__mlv_tn", "__mlv_kind", "__mlv_tk"
_CREATED, _CREATED_NANOS, _TIE = "__mlv_c", "__mlv_cn", "__mlv_tb"
_ENTITY, _BUCKET, _SOURCE = "__mlv_e", "__mlv_bucket", "__mlv_src"
_FEATURE_ROW, _ENTITY_ROW = 0, 1
# Time key of an entity row without event time: odd (an entity row) and below every real time,
# so it sees no feature row; reads back as a null time.
_NO_TIME = -(2**63) + 1
_NULL_KEY_SPREAD = 64
# A pass shuffles into exactly spark.sql.shuffle.partitions partitions when its inputs hold at
# least this many bytes per partition (Spark's size estimate of the input plans); below that,
# adaptive execution may merge the partitions, as for any shuffle by columns.
_PIN_BYTES_PER_PARTITION = 1 << 20
#: Session setting choosing the carry-forward: "auto" (the JVM scan when its class is on the
#: class path, else the window), "jvm" (the scan, or an error) or "window".
CARRY_CONF = "spark.mlv.pit.carry"
_SCAN_CLASS = "io.mlvspark.pit.CarryForward"


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


def point_in_time_join(
    entity_df: DataFrame,
    views: Sequence[ViewInput],
    *,
    full_feature_names: bool = False,
    event_timestamp_column: str | None = None,
    hot_key_rows: int | None = None,
    prune_by_ttl: bool = True,
) -> DataFrame:
    """For every entity row, the latest feature values of each view as of its event time.

    Output: all entity columns in their order, then the features of each view in the order
    given (rows are not ordered). ``hot_key_rows`` turns on exact skew handling: join keys
    with more rows than that are split into time buckets and stitched back with a carry-in
    step (two extra scans of the inputs to find them); ``None`` leaves it off.
    ``prune_by_ttl`` (on by default) drops, before the shuffle, the feature rows of views with
    a TTL that no entity row can see (``_TtlFilter``): results are the same either way; it
    reads the entity rows once more and saves most when they span a short time next to a
    long feature history. Inputs of at least ``_PIN_BYTES_PER_PARTITION`` per shuffle
    partition (Spark's size estimate) are shuffled into exactly
    ``spark.sql.shuffle.partitions`` partitions; smaller ones are left to adaptive execution
    (window) or take at most the default parallelism (JVM scan). The session setting
    ``CARRY_CONF`` chooses the carry-forward (``_carry_scan``).
    """
    if not views:
        raise InvalidInputError("no feature views requested")
    if hot_key_rows is not None and hot_key_rows < 1:
        raise InvalidInputError(f"hot_key_rows must be a positive row count, got {hot_key_rows}")
    entity_names = entity_df.columns
    duplicated = sorted(n for n, c in Counter(entity_names).items() if c > 1)
    if duplicated:
        raise InvalidInputError(f"entity DataFrame has duplicate columns {duplicated}")
    ts_column = entity_timestamp_column(entity_df, event_timestamp_column)
    names = output_feature_names([v.spec for v in views], full_feature_names)
    clashing = sorted({n for view_names in names for n in view_names} & set(entity_names))
    if clashing:
        raise InvalidInputError(
            f"feature output columns {clashing} clash with entity columns of the same name; "
            "rename the entity columns or use full_feature_names=True"
        )
    prepared = [_prepare_view(index, view, entity_df) for index, view in enumerate(views)]
    scan = _carry_scan(entity_df.sparkSession)
    partitions = _pinned_partitions([entity_df, *[view.df for view in views]])
    if scan is not None and partitions is None:  # the scan's input is planned without AQE
        partitions = _scan_partitions(entity_df.sparkSession)
        scan = replace(scan, small_partitions=partitions)

    # Positional internal names: no quoting, and no regex reading of quoted names when
    # spark.sql.parser.quotedRegexColumnNames is on (Feast's Spark store sets it).
    fields = _entity_fields(entity_names)
    ts_type = entity_df.schema[ts_column].dataType
    entity_time = _time_parts(fields[ts_column], ts_type, f"entity column {ts_column!r}")[0]
    state = entity_df.toDF(*fields.values()).selectExpr(
        f"struct({', '.join(fields.values())}) AS {_ENTITY}", f"{entity_time} AS {_TIME}"
    )
    for group in _group_by_entity_columns(prepared):
        state = _join_group(state, entity_df, ts_column, group, hot_key_rows, prune_by_ttl, partitions, scan)

    entity_out = [
        f"timestamp_micros({_TIME})"
        if name == ts_column and isinstance(ts_type, TimestampNTZType)
        else f"{_ENTITY}.{fields[name]}"
        for name in entity_names
    ]
    feature_out = [
        f"{_result(view.index)}.f{i}" for view, view_names in zip(prepared, names) for i in range(len(view_names))
    ]
    out = state.selectExpr(*[f"{expr} AS __mlv_o{i}" for i, expr in enumerate(entity_out + feature_out)])
    return out.toDF(*entity_names, *[n for view_names in names for n in view_names])


def _entity_fields(entity_names: list[str]) -> dict[str, str]:
    """Internal name of each entity column (its field in the entity struct)."""
    return {name: f"__mlv_x{i}" for i, name in enumerate(entity_names)}


# ----------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class _View:
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


def _result(index: int) -> str:
    return f"__mlv_r{index}"


def _values(index: int) -> str:
    return f"__mlv_v{index}"


def _value(index: int, feature: int) -> str:
    return f"__mlv_v{index}_{feature}"


def _prepare_view(index: int, view: ViewInput, entity_df: DataFrame) -> _View:
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
    return _View(
        index=index,
        spec=spec,
        df=df,
        key_by_entity_column=dict(zip(spec.entity_columns, spec.join_keys)),
        orderable=all(_orderable(schema[f].dataType) for f in spec.features),
        nanos=any(isinstance(t, LongType) for t in time_types),
    )


def _group_by_entity_columns(views: list[_View]) -> list[list[_View]]:
    """Views joined on the same set of entity columns share one shuffle and sort."""
    groups: dict[tuple[str, ...], list[_View]] = {}
    for view in views:
        groups.setdefault(view.group_key, []).append(view)
    return list(groups.values())


def _time_parts(expression: str, data_type: DataType, what: str) -> tuple[str, str | None]:
    """SQL text of (epoch microseconds, sub-microsecond nanos or None) of a time, in UTC."""
    if isinstance(data_type, TimestampType):
        return f"unix_micros({expression})", None
    if isinstance(data_type, TimestampNTZType):
        # Wall-clock arithmetic, independent of the session time zone (a cast would apply it).
        since_epoch = f"{expression} - CAST('1970-01-01 00:00:00' AS TIMESTAMP_NTZ)"
        seconds = f"CAST(CAST({since_epoch} AS INTERVAL SECOND) AS DECIMAL(20,6))"
        return f"CAST({seconds} * 1000000 AS BIGINT)", None
    if isinstance(data_type, DateType):
        return f"CAST(unix_date({expression}) AS BIGINT) * {_MICROS_PER_DAY}", None
    if isinstance(data_type, LongType):
        # Exact integer floor division (a double division would round epoch nanoseconds).
        return _floor_div(expression, _NANOS_PER_MICRO), f"CAST(pmod({expression}, {_NANOS_PER_MICRO}) AS INT)"
    raise FeatureDefinitionError(
        f"{what} has type {data_type.simpleString()}; expected timestamp, timestamp_ntz, date "
        "or bigint epoch nanoseconds"
    )


def _micros_and_nanos(expression: str, data_type: DataType, what: str) -> tuple[str, str]:
    micros, nanos = _time_parts(expression, data_type, what)
    return micros, (nanos if nanos is not None else "0")


def _common_key_type(entity_column: str, types: list[tuple[str, DataType]]) -> DataType:
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


def _orderable(data_type: DataType) -> bool:
    if isinstance(data_type, MapType):
        return False
    if isinstance(data_type, ArrayType):
        return _orderable(data_type.elementType)
    if isinstance(data_type, StructType):
        return all(_orderable(f.dataType) for f in data_type.fields)
    return True


# ----------------------------------------------------------------------------- one pass


@dataclass(frozen=True)
class _SortKey:
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
            return [f"CAST(coalesce({micros} * 2 + {kind}, {_NO_TIME}) AS BIGINT) AS {_TIME_KIND}"]
        return [
            f"CAST({micros} AS BIGINT) AS {_TIME}",
            f"CAST({nanos} AS INT) AS {_NANOS}",
            f"CAST({kind} AS INT) AS {_KIND}",
        ]

    def created_columns(self, micros: str, nanos: str) -> list[str]:
        if not self.created:
            return []
        columns = [f"CAST({micros} AS BIGINT) AS {_CREATED}"]
        if self.nanos:
            columns.append(f"CAST({nanos} AS INT) AS {_CREATED_NANOS}")
        return columns

    def names(self) -> list[str]:
        names = [_TIME, _NANOS, _KIND] if self.nanos else [_TIME_KIND]
        if self.created:
            names += [_CREATED, _CREATED_NANOS] if self.nanos else [_CREATED]
        return [*names, _TIE]

    def window_order(self) -> list[str]:
        return [_TIME, _NANOS, _KIND] if self.nanos else [_TIME_KIND]

    def micros(self) -> str:
        """Event time of a union row in epoch microseconds (floored for nanosecond sources)."""
        if self.nanos:
            return _TIME
        return f"CASE WHEN {_TIME_KIND} != {_NO_TIME} THEN shiftright({_TIME_KIND}, 1) END"

    def is_entity_row(self) -> str:
        if self.nanos:
            return f"({_KIND} = {_ENTITY_ROW})"
        return f"(({_TIME_KIND} & 1) = {_ENTITY_ROW})"


def _join_group(
    state: DataFrame,
    entity_df: DataFrame,
    entity_ts: str,
    group: list[_View],
    hot_key_rows: int | None,
    prune_by_ttl: bool,
    partitions: int | None,
    scan: _Scan | None,
) -> DataFrame:
    """Adds the result struct of every view in ``group`` to each entity row of ``state``;
    ``partitions``: the shuffle's partition count, ``None`` to leave it to Spark; ``scan``:
    the JVM carry-forward, ``None`` for the window."""
    entity_columns = list(group[0].group_key)
    entity_fields = _entity_fields(entity_df.columns)
    key_names = [f"__mlv_k{i}" for i in range(len(entity_columns))]
    key_types = [
        _common_key_type(
            c,
            [(f"entity column {c!r}", entity_df.schema[c].dataType)]
            + [
                (f"view {v.spec.name!r} key {v.key_by_entity_column[c]!r}",
                 v.df.schema[v.key_by_entity_column[c]].dataType)
                for v in group
            ],
        )
        for c in entity_columns
    ]
    sort_key = _SortKey(
        nanos=any(v.nanos for v in group),
        created=any(v.spec.created_timestamp_column for v in group),
    )
    carried = [name for name in state.columns if name.startswith("__mlv_r")]
    several = len(group) > 1  # then a feature row names its view in a column of its own

    def layout(keys: list[tuple[str, DataType]], time_columns: list[str], created_columns: list[str],
               tie: str, entity: str, values: dict[tuple[int, int], str], entity_side: bool,
               source: int | None = None) -> list[str]:
        # Union columns (by position). NULL fills a column another part types; Spark widens it.
        return [
            *[_cast(k, t, common) + f" AS {n}" for (k, t), common, n in zip(keys, key_types, key_names)],
            *time_columns,
            *created_columns,
            f"CAST({tie} AS BIGINT) AS {_TIE}",
            f"{entity} AS {_ENTITY}",
            *[f"{c if entity_side else 'NULL'} AS {c}" for c in carried],
            *([f"CAST({'NULL' if source is None else source} AS INT) AS {_SOURCE}"] if several else []),
            *[
                f"{values.get((v.index, j), 'NULL')} AS {_value(v.index, j)}"
                for v in group
                for j in range(len(v.spec.features))
            ],
        ]

    entity_rows = state.selectExpr(
        *layout(
            keys=[(f"{_ENTITY}.{entity_fields[c]}", entity_df.schema[c].dataType) for c in entity_columns],
            time_columns=sort_key.time_columns(_TIME, "0", _ENTITY_ROW),
            created_columns=sort_key.created_columns("NULL", "NULL"),
            tie="NULL",
            entity=_ENTITY,
            values={},
            entity_side=True,
        )
    )
    parts = [entity_rows]
    ttl_filters: dict[timedelta, _TtlFilter] = {}
    for view in group:
        spec, schema, columns = view.spec, view.df.schema, view.columns
        time, time_nanos = _micros_and_nanos(
            columns[spec.timestamp_field], schema[spec.timestamp_field].dataType,
            f"timestamp field {spec.timestamp_field!r} of view {spec.name!r}",
        )
        if spec.created_timestamp_column:
            created, created_nanos = _micros_and_nanos(
                columns[spec.created_timestamp_column],
                schema[spec.created_timestamp_column].dataType,
                f"created timestamp column {spec.created_timestamp_column!r} of view {spec.name!r}",
            )
        else:
            created, created_nanos = "NULL", "NULL"
        tie_columns = spec.tie_break_columns if spec.tie_break_columns is not None else spec.features
        keys = [view.key_by_entity_column[c] for c in entity_columns]
        present = " AND ".join(f"{columns[k]} IS NOT NULL" for k in [*keys, spec.timestamp_field])
        rows = view.internal_df.where(present)
        if prune_by_ttl and spec.ttl and spec.ttl > timedelta(0):  # a negative TTL sees nothing anyway
            if spec.ttl not in ttl_filters:  # one per TTL of the pass
                entity_keys = [
                    _cast(entity_fields[c], entity_df.schema[c].dataType, t) for c, t in zip(entity_columns, key_types)
                ]
                ttl_filters[spec.ttl] = _TtlFilter.build(
                    entity_df, entity_ts, entity_keys, spec.ttl, scan.small_partitions if scan is not None else None
                )
            rows = ttl_filters[spec.ttl].apply(
                rows, [_cast(columns[k], schema[k].dataType, t) for k, t in zip(keys, key_types)], time
            )
        parts.append(
            rows.selectExpr(
                *layout(
                    keys=[(columns[k], schema[k].dataType) for k in keys],
                    time_columns=sort_key.time_columns(time, time_nanos, _FEATURE_ROW),
                    created_columns=sort_key.created_columns(created, created_nanos),
                    tie=row_hash_sql([(columns[c], schema[c].dataType) for c in tie_columns]),
                    entity="NULL",
                    values={(view.index, j): columns[f] for j, f in enumerate(spec.features)},
                    entity_side=False,
                    source=view.index,
                )
            )
        )
    union = reduce(DataFrame.union, parts)

    partition = list(key_names)
    skew = None
    if hot_key_rows is not None:
        skew = _HotKeys.find(
            entity_df, entity_ts, group, entity_columns, key_names, key_types, hot_key_rows
        )
        if skew is not None:
            union = skew.assign_buckets(union, sort_key)
            partition.append(_BUCKET)

    order = sort_key.names() + [
        _value(v.index, j) for v in group if v.orderable for j in range(len(v.spec.features))
    ]
    # One explicit shuffle and sort by the whole order: join keys, time key, created time,
    # tie-break hash, values. The values travel as flat columns; each view's value struct (with
    # the event time for TTL, taken from the time key) is built after the sort, and the columns
    # only the sort needs are dropped, so fewer bytes are shuffled, sorted and buffered by the
    # window. The window is ordered by the time key alone, a prefix of the sort, so Spark adds
    # no second sort and the window sees the rows in the sort's full order (asserted in
    # test_each_pass_shuffles_and_sorts_once_and_the_window_reuses_the_sort).
    by_name = {name: union[name] for name in [*partition, *order]}  # one JVM call per column
    if not partition:
        shuffled = union.repartition(1)
    elif partitions is None:
        shuffled = union.repartition(*[by_name[n] for n in partition])
    else:
        shuffled = union.repartition(partitions, *[by_name[n] for n in partition])
    arranged = shuffled.sortWithinPartitions(*[by_name[n] for n in [*partition, *order]])
    sort_only = [_SOURCE, _CREATED, _CREATED_NANOS, _TIE]
    flat = {*sort_only, *[_value(v.index, j) for v in group for j in range(len(v.spec.features))]}

    def value_structs() -> list[str]:
        structs = []
        for view in group:
            fields = [f"'f{j}', {_value(view.index, j)}" for j in range(len(view.spec.features))]
            if view.spec.ttl:
                fields.insert(0, f"'t', {sort_key.micros()}")
            is_view_row = f"{_SOURCE} = {view.index}" if several else f"NOT {sort_key.is_entity_row()}"
            struct = f"named_struct({', '.join(fields)})"
            structs.append(f"CASE WHEN {is_view_row} THEN {struct} END AS {_values(view.index)}")
        return structs

    window = (
        "OVER (" + (f"PARTITION BY {', '.join(partition)} " if partition else "")
        + f"ORDER BY {', '.join(sort_key.window_order())} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    latest = {v.index: f"__mlv_w{v.index}" for v in group}
    extra = [*key_names, _BUCKET] if skew is not None else []
    passthrough = [_ENTITY, *sort_key.window_order(), *carried, *extra]  # an entity row's columns
    joined = None
    if scan is not None and all(_scan_can_compare(t) for t in key_types):
        structured = arranged.selectExpr(*partition, *passthrough, *value_structs())
        joined = scan.carry(structured, len(partition), passthrough, list(latest.values()))
    if joined is None:
        structured = arranged.selectExpr(*[c for c in arranged.columns if c not in flat], *value_structs())
        joined = structured.selectExpr(
            *passthrough, *[f"last({_values(i)}, true) {window} AS {w}" for i, w in latest.items()],
        ).where(sort_key.is_entity_row())
    if skew is not None:
        with_structs = union.selectExpr("*", *value_structs())
        joined = skew.carry_in(joined, with_structs, group, latest, order, sort_key)

    results = []
    for view in group:
        winner = latest[view.index]
        if view.spec.ttl:  # None or zero: unlimited
            ttl_micros = view.spec.ttl // timedelta(microseconds=1)
            winner = f"CASE WHEN {winner}.t >= {sort_key.micros()} - {ttl_micros} THEN {winner} END"
        results.append(f"{winner} AS {_result(view.index)}")
    log.debug(
        "point-in-time pass over %s: views %s", entity_columns, [v.spec.name for v in group]
    )
    return joined.selectExpr(_ENTITY, f"{sort_key.micros()} AS {_TIME}", *carried, *results)


@dataclass(frozen=True)
class _Scan:
    """The JVM carry-forward (``io.mlvspark.pit.CarryForward``); ``strict``: its failure is an
    error (``jvm``) rather than a fallback to the window (``auto``)."""

    java: JavaClass
    strict: bool
    #: The passes' partition count when the inputs are too small to pin (``_scan_partitions``),
    #: also used for the TTL filter's aggregation in the scan's plan; ``None`` when pinned.
    small_partitions: int | None = None

    def carry(self, structured: DataFrame, keys: int, passthrough: list[str], latest: list[str]) -> DataFrame | None:
        """Entity rows of ``structured`` (``keys`` partition columns, then ``passthrough``, then
        one value struct per view), each with the latest value struct of each view of its key
        (named ``latest``); ``None`` when the scan cannot be built (not strict: use the window)."""
        spark = structured.sparkSession
        gateway = spark.sparkContext._gateway
        assert gateway is not None

        def ints(values: range) -> object:
            array = gateway.new_array(gateway.jvm.int, len(values))
            for i, value in enumerate(values):
                array[i] = value
            return array

        first_value = keys + len(passthrough)
        try:
            frame = self.java.apply(
                structured._jdf, keys, keys, ints(range(keys, first_value)),
                ints(range(first_value, first_value + len(latest))),
            )
        except Py4JError as error:  # e.g. a Spark whose internals differ from the pinned one
            if self.strict:
                raise
            log.warning("point-in-time join: the JVM scan failed (%s); carrying forward with a window",
                        str(error).splitlines()[0])
            return None
        return DataFrame(frame, spark).toDF(*passthrough, *latest)


def _carry_scan(spark: SparkSession) -> _Scan | None:
    """The JVM carry-forward, or ``None`` for the window (see ``CARRY_CONF``)."""
    found = scan_class(spark, CARRY_CONF, _SCAN_CLASS, "window", "a window to carry features forward")
    return None if found is None else _Scan(*found)


def _scan_can_compare(key_type: DataType) -> bool:
    """Whether the scan's byte-wise key equality is Spark's equality for this key type: not
    for floating point (-0.0 and 0.0, NaNs) or strings with a non-binary collation; such
    keys are carried forward by the window."""
    if isinstance(key_type, StringType):
        return key_type.collation == "UTF8_BINARY"
    return isinstance(key_type, (IntegralType, DecimalType, DateType, TimestampType, TimestampNTZType,
                                 BooleanType, BinaryType))


def _scan_partitions(spark: SparkSession) -> int:
    """Shuffle partitions of a pass whose inputs are too small to pin (or have no size
    estimate): the scan's input is planned without adaptive execution, which would otherwise
    merge them, so take at most the default parallelism."""
    parallelism = spark.sparkContext.defaultParallelism
    configured = _configured_partitions(spark)
    return parallelism if configured is None else max(1, min(configured, parallelism))


def _configured_partitions(spark: SparkSession) -> int | None:
    """``spark.sql.shuffle.partitions``, or ``None`` when it is not a number ("auto" on
    Databricks: the platform chooses)."""
    try:
        return int(spark.conf.get("spark.sql.shuffle.partitions") or "")
    except ValueError:
        return None


def _pinned_partitions(inputs: list[DataFrame]) -> int | None:
    """``spark.sql.shuffle.partitions`` when the inputs are large enough to fill them, else
    ``None``. Adaptive execution merges a shuffle's partitions to about the default
    parallelism, often into a few uneven tasks (8 into 3 on 2 cores) that leave cores idle
    during the sort and window; a pinned count is never merged, so it is kept for inputs
    whose partitions would not be tiny, and small inputs still get few tasks and files."""
    partitions = _configured_partitions(inputs[0].sparkSession)
    if partitions is None:
        return None
    try:
        unknown = inputs[0]._jdf.sparkSession().sessionState().conf().defaultSizeInBytes()  # "no estimate"
        sizes = [int(str(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes())) for df in inputs]
    except AttributeError:  # no JVM plan (Spark Connect): leave it to Spark
        return None
    if partitions < 2 or any(size >= unknown for size in sizes):  # e.g. rows from the driver
        return None
    return partitions if sum(sizes) >= partitions * _PIN_BYTES_PER_PARTITION else None


def _cast(expression: str, data_type: DataType, common: DataType) -> str:
    """A key in the pass's common key type (only integers to bigint, or text to string)."""
    if data_type == common:
        return expression
    return f"CAST({expression} AS {common.simpleString()})"


# ----------------------------------------------------------------------------- TTL pruning


def _floor_div(expression: str, divisor: int) -> str:
    """Exact floor division of a bigint by a positive constant (no double rounding), with one
    integer division (a shift for a power of two): ``div`` truncates toward zero, so a
    negative dividend is moved one up and the quotient one down."""
    if divisor & (divisor - 1) == 0:
        return f"shiftright({expression}, {divisor.bit_length() - 1})"
    return f"CASE WHEN ({expression}) >= 0 THEN ({expression}) div {divisor} ELSE (({expression}) + 1) div {divisor} - 1 END"


@dataclass(frozen=True)
class _TtlFilter:
    """Which feature rows some entity row can see within a TTL: a bounded, conservative filter.

    A feature row at time f (epoch microseconds, floored for nanosecond sources) can only be
    the result for an entity row of its key at time e with e - ttl <= f <= e; any other row,
    even when it is the latest row before an entity row, is older than the TTL allows, and so
    is every row it would shadow, so dropping it changes no result. Time is cut into buckets
    of ttl / 4 and 64 consecutive buckets form a word; for each (hash slot of the join key,
    word folded modulo FOLD) a 64-bit mask marks the buckets some entity row's window
    [e - ttl, e] touches. A feature row is kept when its bucket's bit is set. Slot and fold
    collisions only set more bits, so no row that could be a result is ever dropped; the
    table has at most SLOTS * FOLD rows (4 MB), whatever the data, and is broadcast.
    """

    table: DataFrame  # __mlv_pk (slot and folded word), __mlv_bits
    bucket: int  # bucket width, microseconds

    SLOTS = 1 << 16
    FOLD = 4

    @staticmethod
    def _slot_and_word(keys: list[str], word: str) -> str:
        # SLOTS and FOLD are powers of two: a mask is pmod
        slot = f"(xxhash64({', '.join(keys)}) & {_TtlFilter.SLOTS - 1})"
        return f"(({word}) & {_TtlFilter.FOLD - 1}) * {_TtlFilter.SLOTS} + {slot}"

    @staticmethod
    def build(
        entity_df: DataFrame, entity_ts: str, keys: list[str], ttl: timedelta, partitions: int | None = None
    ) -> "_TtlFilter":
        """From the entity rows: ``keys`` are SQL text over ``_entity_fields`` names, in the
        pass's common key types (as the feature side hashes them). ``partitions``: the masks'
        aggregation runs in that many (for a plan without adaptive execution, which would
        otherwise use spark.sql.shuffle.partitions, unmerged); ``None`` leaves it to Spark."""
        ttl_micros = ttl // timedelta(microseconds=1)
        bucket = max(1, ttl_micros // 4)
        fields = _entity_fields(entity_df.columns)
        time = _time_parts(fields[entity_ts], entity_df.schema[entity_ts].dataType, "entity time")[0]
        first, last = _floor_div(f"__mlv_t - {ttl_micros}", bucket), _floor_div("__mlv_t", bucket)
        masks = (
            entity_df.toDF(*fields.values())
            .selectExpr(*[f"{k} AS __mlv_k{i}" for i, k in enumerate(keys)], f"{time} AS __mlv_t")
            .where("__mlv_t IS NOT NULL")
            .selectExpr(
                *[f"__mlv_k{i}" for i in range(len(keys))], f"{first} AS __mlv_b1", f"{last} AS __mlv_b2",
            )
            .selectExpr(
                "*", f"explode(sequence({_floor_div('__mlv_b1', 64)}, {_floor_div('__mlv_b2', 64)})) AS __mlv_w"
            )
            .selectExpr(
                f"{_TtlFilter._slot_and_word([f'__mlv_k{i}' for i in range(len(keys))], '__mlv_w')} AS __mlv_pk",
                "greatest(__mlv_b1 - __mlv_w * 64, 0) AS __mlv_lo",
                "least(__mlv_b2 - __mlv_w * 64, 63) AS __mlv_hi",
            )
            .selectExpr(
                "__mlv_pk",
                "CASE WHEN __mlv_hi - __mlv_lo = 63 THEN CAST(-1 AS BIGINT) "
                "ELSE shiftleft(shiftleft(CAST(1 AS BIGINT), __mlv_hi - __mlv_lo + 1) - 1, __mlv_lo) END AS __mlv_m",
            )
        )
        if partitions is not None:
            masks = masks.repartition(partitions, "__mlv_pk")
        table = masks.groupBy("__mlv_pk").agg(F.expr("bit_or(__mlv_m) AS __mlv_bits"))
        return _TtlFilter(table=F.broadcast(table), bucket=bucket)

    def apply(self, rows: DataFrame, keys: list[str], micros: str) -> DataFrame:
        """``rows`` (feature rows with non-null keys and time) without those no entity row can
        see; ``keys`` and ``micros`` are SQL text over ``rows`` (keys in the common types)."""
        bucket = _floor_div(micros, self.bucket)
        # Never null (``rows`` has a time), but Spark cannot tell: without the coalesce it
        # infers an IS NOT NULL filter on the join key and computes the key twice per row.
        located = rows.selectExpr(
            "*",
            f"coalesce({self._slot_and_word(keys, _floor_div(bucket, 64))}, 0) AS __mlv_pk",
            f"coalesce(CAST(({bucket}) & 63 AS INT), 0) AS __mlv_pb",
        )
        kept = located.join(self.table, on="__mlv_pk").where("(shiftright(__mlv_bits, __mlv_pb) & 1) = 1")
        return kept.drop("__mlv_pk", "__mlv_pb", "__mlv_bits")


# ----------------------------------------------------------------------------- skew


@dataclass(frozen=True)
class _HotKeys:
    """Join keys with more rows than a threshold, split into time buckets of similar size.

    Buckets are a non-decreasing function of time per key, so every feature row at or before
    an entity row lies in its bucket or an earlier one: the in-bucket winner, if any, is the
    overall winner; otherwise the latest row of the earlier buckets (the carry-in) is.
    """

    table: DataFrame  # keys, __mlv_hot_lo, __mlv_hot_width, __mlv_hot_n
    key_names: list[str]

    @staticmethod
    def find(
        entity_df: DataFrame,
        entity_ts: str,
        group: list[_View],
        entity_columns: list[str],
        key_names: list[str],
        key_types: list[DataType],
        hot_key_rows: int,
    ) -> "_HotKeys | None":
        fields = _entity_fields(entity_df.columns)
        entity_schema = entity_df.schema
        entity_time = _time_parts(fields[entity_ts], entity_schema[entity_ts].dataType, "entity time")[0]
        sides = [
            entity_df.toDF(*fields.values()).selectExpr(
                *[
                    f"{_cast(fields[c], entity_schema[c].dataType, t)} AS {n}"
                    for c, t, n in zip(entity_columns, key_types, key_names)
                ],
                f"{entity_time} AS {_TIME}",
            )
        ]
        for view in group:
            ts, columns, schema = view.spec.timestamp_field, view.columns, view.df.schema
            time = _time_parts(columns[ts], schema[ts].dataType, ts)[0]
            keys = [view.key_by_entity_column[c] for c in entity_columns]
            sides.append(
                view.internal_df.selectExpr(
                    *[
                        f"{_cast(columns[k], schema[k].dataType, t)} AS {n}"
                        for k, t, n in zip(keys, key_types, key_names)
                    ],
                    f"{time} AS {_TIME}",
                )
            )
        counts = (
            reduce(DataFrame.union, sides)
            .where(reduce(lambda a, b: a & b, [F.col(n).isNotNull() for n in key_names], F.col(_TIME).isNotNull()))
            .groupBy(*key_names)
            .agg(F.count(F.lit(1)).alias("n"), F.min(_TIME).alias("lo"), F.max(_TIME).alias("hi"))
            .where(F.col("n") > hot_key_rows)
            .collect()
        )
        if not counts:
            return None
        rows = []
        for row in counts:
            buckets = math.ceil(row["n"] / hot_key_rows)
            width = max(1, math.ceil((row["hi"] - row["lo"] + 1) / buckets))
            rows.append((*[row[n] for n in key_names], row["lo"], width, buckets))
        schema = StructType(
            [StructField(n, t) for n, t in zip(key_names, key_types)]
            + [
                StructField("__mlv_hot_lo", LongType()),
                StructField("__mlv_hot_width", LongType()),
                StructField("__mlv_hot_n", LongType()),
            ]
        )
        log.info("point-in-time join: %d hot keys split into time buckets", len(rows))
        spark = entity_df.sparkSession
        return _HotKeys(table=F.broadcast(spark.createDataFrame(rows, schema)), key_names=key_names)

    def assign_buckets(self, union: DataFrame, sort_key: _SortKey) -> DataFrame:
        micros = F.expr(sort_key.micros())
        bucket = F.least(
            F.greatest(
                F.floor((micros - F.col("__mlv_hot_lo")) / F.col("__mlv_hot_width")),
                F.lit(0),
            ),
            F.col("__mlv_hot_n") - 1,
        ).cast(LongType())
        # Entity rows with a null key match nothing; spread them instead of piling them up.
        null_key = reduce(lambda a, b: a | b, [F.col(n).isNull() for n in self.key_names], F.lit(False))
        spread = F.pmod(F.xxhash64(micros), F.lit(_NULL_KEY_SPREAD))
        columns = union.columns
        with_hot = (
            union.join(self.table, on=self.key_names, how="left")
            if self.key_names
            else union.crossJoin(self.table)  # no join keys: the single group is the hot key
        )
        return (
            with_hot.withColumn(
                _BUCKET,
                F.when(null_key, spread).otherwise(F.coalesce(bucket, F.lit(0))).cast(LongType()),
            )
            .select(*columns, _BUCKET, "__mlv_hot_n")
        )

    def carry_in(
        self,
        joined: DataFrame,
        union: DataFrame,
        group: list[_View],
        latest: dict[int, str],
        order: list[str],
        sort_key: _SortKey,
    ) -> DataFrame:
        """Fills in-bucket misses of hot keys with the latest row of earlier buckets."""
        features = union.where(f"NOT {sort_key.is_entity_row()} AND __mlv_hot_n IS NOT NULL")
        ordering = F.struct(*[F.col(name).alias(f"o{i}") for i, name in enumerate(order)])
        per_bucket = features.groupBy(*self.key_names, _BUCKET).agg(
            *[
                F.max_by(F.col(_values(v.index)), F.when(F.col(_values(v.index)).isNotNull(), ordering))
                .alias(f"__mlv_last{v.index}")
                for v in group
            ]
        )
        all_buckets = self.table.select(
            *self.key_names,
            F.explode(F.sequence(F.lit(0).cast(LongType()), F.col("__mlv_hot_n") - 1)).alias(_BUCKET),
        )
        before = (
            Window.partitionBy(*self.key_names)
            .orderBy(_BUCKET)
            .rowsBetween(Window.unboundedPreceding, -1)
        )
        carry = F.broadcast(
            all_buckets.join(per_bucket, on=[*self.key_names, _BUCKET], how="left").select(
                *self.key_names,
                _BUCKET,
                *[
                    F.last(f"__mlv_last{v.index}", ignorenulls=True).over(before).alias(f"__mlv_in{v.index}")
                    for v in group
                ],
            )
        )
        filled = joined.join(carry, on=[*self.key_names, _BUCKET], how="left")
        return filled.select(
            *[c for c in joined.columns if c not in latest.values()],
            *[
                F.coalesce(F.col(w), F.col(f"__mlv_in{i}")).alias(w)
                for i, w in latest.items()
            ],
        )
