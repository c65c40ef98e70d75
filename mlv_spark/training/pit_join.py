"""Point-in-time join of feature views onto entity rows: pure DataFrame -> DataFrame.

The rules are listed in docs/training-sets.md ("Semantics, rule by rule"), which also explains the
algorithm. In short, for each group of views joined on the same entity columns: one union of
entity rows and feature rows, one shuffle by join keys, one sort by
``(2 * time + kind, created time, tie-break hash, values)`` (feature rows, kind 0, sort
before entity rows at equal times) and a running ``last(feature struct, ignorenulls)``; TTL
is applied to the carried winner afterwards. Entity rows carry all their columns (and the
results of earlier groups), so nothing is joined back. No I/O happens here.

Time columns are compared as microseconds since the epoch (UTC): ``timestamp`` columns are
instants, ``timestamp_ntz`` and ``date`` columns are read as UTC, and a ``bigint`` time column
of a feature source is epoch *nanoseconds* (how parquet written by pandas is read, see
``sources.py``); its sub-microsecond remainder is then kept as a separate sort key, so
nanosecond data is compared exactly.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from functools import reduce
from typing import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DateType,
    IntegerType,
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
from mlv_spark.fingerprint import row_hash
from mlv_spark.sql import column

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
) -> DataFrame:
    """For every entity row, the latest feature values of each view as of its event time.

    Output: all entity columns in their order, then the features of each view in the order
    given (rows are not ordered). ``hot_key_rows`` turns on exact skew handling: join keys
    with more rows than that are split into time buckets and stitched back with a carry-in
    step (two extra scans of the inputs to find them); ``None`` leaves it off.
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

    ts_type = entity_df.schema[ts_column].dataType
    state = entity_df.select(
        F.struct(*[column(name) for name in entity_names]).alias(_ENTITY),
        _time_parts(column(ts_column), ts_type, f"entity column {ts_column!r}")[0].alias(_TIME),
    )
    for group in _group_by_entity_columns(prepared):
        state = _join_group(state, entity_df, ts_column, group, hot_key_rows)

    entity_out = [
        (
            F.timestamp_micros(F.col(_TIME)).alias(name)
            if name == ts_column and isinstance(ts_type, TimestampNTZType)
            else F.col(_ENTITY).getField(name).alias(name)
        )
        for name in entity_names
    ]
    feature_out = [
        F.col(_result(view.index)).getField(f"f{i}").alias(out_name)
        for view, view_names in zip(prepared, names)
        for i, out_name in enumerate(view_names)
    ]
    return state.select(*entity_out, *feature_out)


# ----------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class _View:
    index: int
    spec: ViewJoinSpec
    df: DataFrame
    key_by_entity_column: dict[str, str]
    value_type: StructType
    nanos: bool

    @property
    def group_key(self) -> tuple[str, ...]:
        return tuple(sorted(self.key_by_entity_column))

    @property
    def feature_fields(self) -> list[StructField]:
        """The value struct's feature fields (f0, f1, ...), without the TTL time ``t``."""
        return [f for f in self.value_type.fields if f.name != "t"]


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
    schema = df.schema
    time_types = [schema[spec.timestamp_field].dataType]
    if spec.created_timestamp_column:
        time_types.append(schema[spec.created_timestamp_column].dataType)
    value_type = StructType(
        ([StructField("t", LongType())] if spec.ttl else [])
        + [StructField(f"f{i}", schema[f].dataType) for i, f in enumerate(spec.features)]
    )
    return _View(
        index=index,
        spec=spec,
        df=df,
        key_by_entity_column=dict(zip(spec.entity_columns, spec.join_keys)),
        value_type=value_type,
        nanos=any(isinstance(t, LongType) for t in time_types),
    )


def _group_by_entity_columns(views: list[_View]) -> list[list[_View]]:
    """Views joined on the same set of entity columns share one shuffle and sort."""
    groups: dict[tuple[str, ...], list[_View]] = {}
    for view in views:
        groups.setdefault(view.group_key, []).append(view)
    return list(groups.values())


def _time_parts(column: Column, data_type: DataType, what: str) -> tuple[Column, Column | None]:
    """(epoch microseconds, sub-microsecond nanos or None) of a time column, in UTC."""
    if isinstance(data_type, TimestampType):
        return F.unix_micros(column), None
    if isinstance(data_type, TimestampNTZType):
        # Wall-clock arithmetic, independent of the session time zone (a cast would apply it).
        since_epoch = column - F.lit("1970-01-01 00:00:00").cast(TimestampNTZType())
        seconds = since_epoch.cast("interval second").cast("decimal(20,6)")
        return (seconds * F.lit(1_000_000)).cast(LongType()), None
    if isinstance(data_type, DateType):
        return F.unix_date(column).cast(LongType()) * F.lit(_MICROS_PER_DAY), None
    if isinstance(data_type, LongType):
        # Exact floor division (a double division would round epoch nanoseconds).
        micros = F.floor(column.cast("decimal(20,0)") / F.lit(_NANOS_PER_MICRO)).cast(LongType())
        return micros, F.pmod(column, F.lit(_NANOS_PER_MICRO)).cast(IntegerType())
    raise FeatureDefinitionError(
        f"{what} has type {data_type.simpleString()}; expected timestamp, timestamp_ntz, date "
        "or bigint epoch nanoseconds"
    )


def _micros_and_nanos(column: Column, data_type: DataType, what: str) -> tuple[Column, Column]:
    micros, nanos = _time_parts(column, data_type, what)
    return micros, (nanos if nanos is not None else F.lit(0))


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
    the pass has one. The tie-break hash and the values follow.
    """

    nanos: bool
    created: bool

    def time_columns(self, micros: Column, nanos: Column, kind: int) -> list[Column]:
        if not self.nanos:
            key = F.coalesce(micros * F.lit(2) + F.lit(kind), F.lit(_NO_TIME))
            return [key.cast(LongType()).alias(_TIME_KIND)]
        return [
            micros.cast(LongType()).alias(_TIME),
            nanos.cast(IntegerType()).alias(_NANOS),
            F.lit(kind).cast(IntegerType()).alias(_KIND),
        ]

    def created_columns(self, micros: Column, nanos: Column) -> list[Column]:
        if not self.created:
            return []
        columns = [micros.cast(LongType()).alias(_CREATED)]
        if self.nanos:
            columns.append(nanos.cast(IntegerType()).alias(_CREATED_NANOS))
        return columns

    def names(self) -> list[str]:
        names = [_TIME, _NANOS, _KIND] if self.nanos else [_TIME_KIND]
        if self.created:
            names += [_CREATED, _CREATED_NANOS] if self.nanos else [_CREATED]
        return [*names, _TIE]

    def micros(self) -> Column:
        """Event time of a union row in epoch microseconds (floored for nanosecond sources)."""
        if self.nanos:
            return F.col(_TIME)
        return F.when(F.col(_TIME_KIND) != F.lit(_NO_TIME), F.shiftright(F.col(_TIME_KIND), 1))

    def is_entity_row(self) -> Column:
        if self.nanos:
            return F.col(_KIND) == F.lit(_ENTITY_ROW)
        return F.col(_TIME_KIND).bitwiseAND(F.lit(1)) == F.lit(_ENTITY_ROW)


def _join_group(
    state: DataFrame,
    entity_df: DataFrame,
    entity_ts: str,
    group: list[_View],
    hot_key_rows: int | None,
) -> DataFrame:
    """Adds the result struct of every view in ``group`` to each entity row of ``state``."""
    entity_columns = list(group[0].group_key)
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
    state_schema = state.schema
    carried = [f.name for f in state_schema.fields if f.name.startswith("__mlv_r")]
    null = F.lit(None)

    several = len(group) > 1  # then a feature row names its view in a column of its own

    def layout(keys, time_columns, created_columns, tie, entity, values, entity_side, source=None) -> list[Column]:
        return [
            *[k.cast(t).alias(n) for k, t, n in zip(keys, key_types, key_names)],
            *time_columns,
            *created_columns,
            tie.cast(LongType()).alias(_TIE),
            entity.alias(_ENTITY),
            *[
                (F.col(c) if entity_side else null.cast(state_schema[c].dataType)).alias(c)
                for c in carried
            ],
            *([(null if source is None else F.lit(source)).cast(IntegerType()).alias(_SOURCE)] if several else []),
            *[
                values.get((v.index, j), null.cast(field.dataType)).alias(_value(v.index, j))
                for v in group
                for j, field in enumerate(v.feature_fields)
            ],
        ]

    entity_rows = state.select(
        *layout(
            keys=[F.col(_ENTITY).getField(c) for c in entity_columns],
            time_columns=sort_key.time_columns(F.col(_TIME), F.lit(0), _ENTITY_ROW),
            created_columns=sort_key.created_columns(null, null),
            tie=null,
            entity=F.col(_ENTITY),
            values={},
            entity_side=True,
        )
    )
    entity_type = state_schema[_ENTITY].dataType
    parts = [entity_rows]
    for view in group:
        spec, schema = view.spec, view.df.schema
        time, time_nanos = _micros_and_nanos(
            column(spec.timestamp_field), schema[spec.timestamp_field].dataType,
            f"timestamp field {spec.timestamp_field!r} of view {spec.name!r}",
        )
        if spec.created_timestamp_column:
            created, created_nanos = _micros_and_nanos(
                column(spec.created_timestamp_column),
                schema[spec.created_timestamp_column].dataType,
                f"created timestamp column {spec.created_timestamp_column!r} of view {spec.name!r}",
            )
        else:
            created, created_nanos = null, null
        tie_columns = spec.tie_break_columns if spec.tie_break_columns is not None else spec.features
        keys = [column(view.key_by_entity_column[c]) for c in entity_columns]
        rows = view.df.where(
            reduce(lambda a, b: a & b, [k.isNotNull() for k in keys], column(spec.timestamp_field).isNotNull())
        )
        parts.append(
            rows.select(
                *layout(
                    keys=keys,
                    time_columns=sort_key.time_columns(time, time_nanos, _FEATURE_ROW),
                    created_columns=sort_key.created_columns(created, created_nanos),
                    tie=row_hash([(column(c), schema[c].dataType) for c in tie_columns]),
                    entity=null.cast(entity_type),
                    values={(view.index, j): column(f) for j, f in enumerate(spec.features)},
                    entity_side=False,
                    source=view.index,
                )
            )
        )
    union = reduce(DataFrame.union, parts)

    partition = [F.col(n) for n in key_names]
    skew = None
    if hot_key_rows is not None:
        skew = _HotKeys.find(
            entity_df, entity_ts, group, entity_columns, key_names, key_types, hot_key_rows
        )
        if skew is not None:
            union = skew.assign_buckets(union, sort_key)
            partition.append(F.col(_BUCKET))

    order = [F.col(name) for name in sort_key.names()] + [
        F.col(_value(v.index, j))
        for v in group
        if _orderable(v.value_type)
        for j in range(len(v.feature_fields))
    ]
    # One explicit shuffle and sort by the whole order: join keys, time key, created time,
    # tie-break hash, values. The values travel as flat columns; each view's value struct (with
    # the event time for TTL, taken from the time key) is built after the sort, and the columns
    # only the sort needs are dropped, so fewer bytes are shuffled, sorted and buffered by the
    # window. The window is ordered by the time key alone, a prefix of the sort, so Spark adds
    # no second sort and the window sees the rows in the sort's full order (asserted in
    # test_each_pass_shuffles_and_sorts_once_and_the_window_reuses_the_sort).
    arranged = (union.repartition(*partition) if partition else union.repartition(1)).sortWithinPartitions(
        *partition, *order
    )
    sort_only = [_SOURCE, _CREATED, _CREATED_NANOS, _TIE]
    flat = {*sort_only, *[_value(v.index, j) for v in group for j in range(len(v.feature_fields))]}
    window_order = [F.col(_TIME), F.col(_NANOS), F.col(_KIND)] if sort_key.nanos else [F.col(_TIME_KIND)]

    def with_value_structs(frame: DataFrame, keep_flat: bool) -> DataFrame:
        structs = []
        for view in group:
            fields = [F.col(_value(view.index, j)).alias(f"f{j}") for j in range(len(view.feature_fields))]
            if view.spec.ttl:
                fields.insert(0, sort_key.micros().alias("t"))
            is_view_row = F.col(_SOURCE) == F.lit(view.index) if several else ~sort_key.is_entity_row()
            structs.append(F.when(is_view_row, F.struct(*fields)).alias(_values(view.index)))
        kept = [c for c in frame.columns if keep_flat or c not in flat]
        return frame.select(*kept, *structs)

    window = (
        Window.partitionBy(*partition)
        .orderBy(*window_order)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    latest = {v.index: f"__mlv_w{v.index}" for v in group}
    extra = [*key_names, _BUCKET] if skew is not None else []
    time_names = [_TIME] if sort_key.nanos else [_TIME_KIND]
    joined = with_value_structs(arranged, keep_flat=False).select(
        _ENTITY, *time_names, *carried, *extra,
        *[F.last(_values(i), ignorenulls=True).over(window).alias(w) for i, w in latest.items()],
    ).where(sort_key.is_entity_row())
    if skew is not None:
        joined = skew.carry_in(joined, with_value_structs(union, keep_flat=True), group, latest, order, sort_key)

    entity_micros = sort_key.micros()
    results = []
    for view in group:
        winner = F.col(latest[view.index])
        if view.spec.ttl:  # None or zero: unlimited
            ttl_micros = view.spec.ttl // timedelta(microseconds=1)
            winner = F.when(winner.getField("t") >= entity_micros - F.lit(ttl_micros), winner)
        results.append(winner.alias(_result(view.index)))
    log.debug(
        "point-in-time pass over %s: views %s", entity_columns, [v.spec.name for v in group]
    )
    return joined.select(_ENTITY, entity_micros.alias(_TIME), *carried, *results)


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
        sides = [
            entity_df.select(
                *[column(c).cast(t).alias(n) for c, t, n in zip(entity_columns, key_types, key_names)],
                _time_parts(column(entity_ts), entity_df.schema[entity_ts].dataType, "entity time")[0]
                .alias(_TIME),
            )
        ]
        for view in group:
            ts = view.spec.timestamp_field
            time, _ = _micros_and_nanos(column(ts), view.df.schema[ts].dataType, ts)
            sides.append(
                view.df.select(
                    *[
                        column(view.key_by_entity_column[c]).cast(t).alias(n)
                        for c, t, n in zip(entity_columns, key_types, key_names)
                    ],
                    time.alias(_TIME),
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
        micros = sort_key.micros()
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
        order: list[Column],
        sort_key: _SortKey,
    ) -> DataFrame:
        """Fills in-bucket misses of hot keys with the latest row of earlier buckets."""
        features = union.where(~sort_key.is_entity_row() & F.col("__mlv_hot_n").isNotNull())
        ordering = F.struct(*[o.alias(f"o{i}") for i, o in enumerate(order)])
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
