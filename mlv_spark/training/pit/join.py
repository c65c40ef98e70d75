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
with a TTL that no entity row can see are dropped (``TtlFilter``). No I/O happens here.

Time columns are compared as microseconds since the epoch (UTC): ``timestamp`` columns are
instants, ``timestamp_ntz`` and ``date`` columns are read as UTC, and a ``bigint`` time column
of a feature source is epoch *nanoseconds* (how parquet written by pandas is read, see
``sources.py``); its sub-microsecond remainder is then kept as a separate sort key, so
nanosecond data is compared exactly.

The plan is written as SQL text (``selectExpr``) over positional internal names (``toDF``):
user column names never appear in SQL text, and building the plan costs a few JVM calls per
select rather than several per column expression.

Modules: ``spec`` (inputs, output names), ``layout`` (internal names, times, keys, sort key),
``passes`` (one shuffle, sort and carry-forward per group of views), ``carry`` (the JVM scan
or the window), ``ttl`` (TTL pruning), ``hot_keys`` (skew).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Sequence

from pyspark.sql import DataFrame
from pyspark.sql.types import TimestampNTZType

from mlv_spark.errors import InvalidInputError
from mlv_spark.training.pit.carry import carry_scan, pinned_partitions, scan_partitions
from mlv_spark.training.pit.layout import ENTITY, TIME, entity_fields, group_by_entity_columns, prepare_view, result_name, time_parts
from mlv_spark.training.pit.passes import join_group
from mlv_spark.training.pit.spec import ViewInput, entity_timestamp_column, output_feature_names


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
    a TTL that no entity row can see (``TtlFilter``): results are the same either way; it
    reads the entity rows once more and saves most when they span a short time next to a
    long feature history. Inputs of at least ``PIN_BYTES_PER_PARTITION`` per shuffle
    partition (Spark's size estimate) are shuffled into exactly
    ``spark.sql.shuffle.partitions`` partitions; smaller ones are left to adaptive execution
    (window) or take at most the default parallelism (JVM scan). The session setting
    ``CARRY_CONF`` chooses the carry-forward (``carry_scan``).
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
    prepared = [prepare_view(index, view, entity_df) for index, view in enumerate(views)]
    scan = carry_scan(entity_df.sparkSession)
    partitions = pinned_partitions([entity_df, *[view.df for view in views]])
    if scan is not None and partitions is None:  # the scan's input is planned without AQE
        partitions = scan_partitions(entity_df.sparkSession)
        scan = replace(scan, small_partitions=partitions)

    # Positional internal names: no quoting, and no regex reading of quoted names when
    # spark.sql.parser.quotedRegexColumnNames is on (Feast's Spark store sets it).
    fields = entity_fields(entity_names)
    ts_type = entity_df.schema[ts_column].dataType
    entity_time = time_parts(fields[ts_column], ts_type, f"entity column {ts_column!r}")[0]
    state = entity_df.toDF(*fields.values()).selectExpr(
        f"struct({', '.join(fields.values())}) AS {ENTITY}", f"{entity_time} AS {TIME}"
    )
    for group in group_by_entity_columns(prepared):
        state = join_group(state, entity_df, ts_column, group, hot_key_rows, prune_by_ttl, partitions, scan)

    entity_out = [
        f"timestamp_micros({TIME})"
        if name == ts_column and isinstance(ts_type, TimestampNTZType)
        else f"{ENTITY}.{fields[name]}"
        for name in entity_names
    ]
    feature_out = [
        f"{result_name(view.index)}.f{i}" for view, view_names in zip(prepared, names) for i in range(len(view_names))
    ]
    out = state.selectExpr(*[f"{expr} AS __mlv_o{i}" for i, expr in enumerate(entity_out + feature_out)])
    return out.toDF(*entity_names, *[n for view_names in names for n in view_names])
