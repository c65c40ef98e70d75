"""One pass of the join: the views joined on the same entity columns share one union, one
shuffle by join keys, one sort and one carry-forward."""

from __future__ import annotations

from datetime import timedelta
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql.types import DataType

from mlv_spark.fingerprint import row_hash_sql
from mlv_spark.log import get_logger
from mlv_spark.training.pit.carry import Scan, scan_can_compare
from mlv_spark.training.pit.hot_keys import HotKeys
from mlv_spark.training.pit.layout import (
    BUCKET, CREATED, CREATED_NANOS, ENTITY, ENTITY_ROW, FEATURE_ROW, SOURCE, TIE, TIME, SortKey, View, cast_key,
    common_key_type, entity_fields, micros_and_nanos, result_name, value_name, values_name,
)
from mlv_spark.training.pit.ttl import TtlFilter

log = get_logger("mlv_spark.training.pit")


def join_group(
    state: DataFrame,
    entity_df: DataFrame,
    entity_ts: str,
    group: list[View],
    hot_key_rows: int | None,
    prune_by_ttl: bool,
    partitions: int | None,
    scan: Scan | None,
) -> DataFrame:
    """Adds the result struct of every view in ``group`` to each entity row of ``state``;
    ``partitions``: the shuffle's partition count, ``None`` to leave it to Spark; ``scan``:
    the JVM carry-forward, ``None`` for the window."""
    entity_columns = list(group[0].group_key)
    fields_of = entity_fields(entity_df.columns)
    key_names = [f"__mlv_k{i}" for i in range(len(entity_columns))]
    key_types = [
        common_key_type(
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
    sort_key = SortKey(
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
            *[cast_key(k, t, common) + f" AS {n}" for (k, t), common, n in zip(keys, key_types, key_names)],
            *time_columns,
            *created_columns,
            f"CAST({tie} AS BIGINT) AS {TIE}",
            f"{entity} AS {ENTITY}",
            *[f"{c if entity_side else 'NULL'} AS {c}" for c in carried],
            *([f"CAST({'NULL' if source is None else source} AS INT) AS {SOURCE}"] if several else []),
            *[
                f"{values.get((v.index, j), 'NULL')} AS {value_name(v.index, j)}"
                for v in group
                for j in range(len(v.spec.features))
            ],
        ]

    entity_rows = state.selectExpr(
        *layout(
            keys=[(f"{ENTITY}.{fields_of[c]}", entity_df.schema[c].dataType) for c in entity_columns],
            time_columns=sort_key.time_columns(TIME, "0", ENTITY_ROW),
            created_columns=sort_key.created_columns("NULL", "NULL"),
            tie="NULL",
            entity=ENTITY,
            values={},
            entity_side=True,
        )
    )
    parts = [entity_rows]
    ttl_filters: dict[timedelta, TtlFilter] = {}
    for view in group:
        spec, schema, columns = view.spec, view.df.schema, view.columns
        time, time_nanos = micros_and_nanos(
            columns[spec.timestamp_field], schema[spec.timestamp_field].dataType,
            f"timestamp field {spec.timestamp_field!r} of view {spec.name!r}",
        )
        if spec.created_timestamp_column:
            created, created_nanos = micros_and_nanos(
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
                    cast_key(fields_of[c], entity_df.schema[c].dataType, t) for c, t in zip(entity_columns, key_types)
                ]
                ttl_filters[spec.ttl] = TtlFilter.build(
                    entity_df, entity_ts, entity_keys, spec.ttl, scan.small_partitions if scan is not None else None
                )
            rows = ttl_filters[spec.ttl].apply(
                rows, [cast_key(columns[k], schema[k].dataType, t) for k, t in zip(keys, key_types)], time
            )
        parts.append(
            rows.selectExpr(
                *layout(
                    keys=[(columns[k], schema[k].dataType) for k in keys],
                    time_columns=sort_key.time_columns(time, time_nanos, FEATURE_ROW),
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
        skew = HotKeys.find(
            entity_df, entity_ts, group, entity_columns, key_names, key_types, hot_key_rows
        )
        if skew is not None:
            union = skew.assign_buckets(union, sort_key)
            partition.append(BUCKET)

    order = sort_key.names() + [
        value_name(v.index, j) for v in group if v.orderable for j in range(len(v.spec.features))
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
    sort_only = [SOURCE, CREATED, CREATED_NANOS, TIE]
    flat = {*sort_only, *[value_name(v.index, j) for v in group for j in range(len(v.spec.features))]}

    def value_structs() -> list[str]:
        structs = []
        for view in group:
            fields = [f"'f{j}', {value_name(view.index, j)}" for j in range(len(view.spec.features))]
            if view.spec.ttl:
                fields.insert(0, f"'t', {sort_key.micros()}")
            is_view_row = f"{SOURCE} = {view.index}" if several else f"NOT {sort_key.is_entity_row()}"
            struct = f"named_struct({', '.join(fields)})"
            structs.append(f"CASE WHEN {is_view_row} THEN {struct} END AS {values_name(view.index)}")
        return structs

    window = (
        "OVER (" + (f"PARTITION BY {', '.join(partition)} " if partition else "")
        + f"ORDER BY {', '.join(sort_key.window_order())} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    latest = {v.index: f"__mlv_w{v.index}" for v in group}
    extra = [*key_names, BUCKET] if skew is not None else []
    passthrough = [ENTITY, *sort_key.window_order(), *carried, *extra]  # an entity row's columns
    joined = None
    if scan is not None and all(scan_can_compare(t) for t in key_types):
        structured = arranged.selectExpr(*partition, *passthrough, *value_structs())
        joined = scan.carry(structured, len(partition), passthrough, list(latest.values()))
    if joined is None:
        structured = arranged.selectExpr(*[c for c in arranged.columns if c not in flat], *value_structs())
        joined = structured.selectExpr(
            *passthrough, *[f"last({values_name(i)}, true) {window} AS {w}" for i, w in latest.items()],
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
        results.append(f"{winner} AS {result_name(view.index)}")
    log.debug(
        "point-in-time pass over %s: views %s", entity_columns, [v.spec.name for v in group]
    )
    return joined.selectExpr(ENTITY, f"{sort_key.micros()} AS {TIME}", *carried, *results)

