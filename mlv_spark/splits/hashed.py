"""The hash method of assign_splits: each entity (or group) placed by its salted hash against
fixed thresholds, lazily, in one narrow pass (plus the reduction to entities unless promised)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlv_spark.errors import DATA_ERROR_PREFIX
from mlv_spark.splits.apportion import hash_thresholds
from mlv_spark.splits.spec import (
    PREFIX,
    SPLIT_COLUMN,
    SplitSpec,
    entity_hash,
    exclude_future_of_past_entities,
    group_hash,
    internal,
    key_columns,
    output_columns,
    per_period,
)
from mlv_spark.sql import column, long_sql, string_sql


def assign_by_hash(spec: SplitSpec, rows: DataFrame) -> DataFrame:
    """Each entity (or group) placed by its salted hash against fixed thresholds; lazy."""
    atom_hash = group_hash(spec) if spec.groups else entity_hash(spec)
    by_period = {}
    for p in spec.periods:
        cases = [
            f"WHEN {atom_hash} < {long_sql(threshold)} THEN {string_sql(name)}"
            for name, threshold in zip(p.names, hash_thresholds(p.shares), strict=False)
        ]
        last = string_sql(p.names[-1])
        by_period[p.index] = f"CASE {' '.join(cases)} ELSE {last} END" if cases else last
    checked = _lazy_checks(spec, rows)
    labelled = checked.select("*", F.expr(per_period(internal("period"), by_period)).alias(SPLIT_COLUMN))
    if spec.exclude_train_entities:
        labelled = exclude_future_of_past_entities(labelled, key_columns(spec))
    if spec.per_row:
        return labelled.drop(*[c for c in labelled.columns if c.startswith(PREFIX)])
    if spec.one_row_per_entity:
        return labelled.select(*map(column, output_columns(spec)))
    return _reduce_for_hash(spec, labelled)


def _lazy_checks(spec: SplitSpec, rows: DataFrame) -> DataFrame:
    """Null keys/groups/times fail the Spark action that reads them (the hash method is lazy)."""
    problems = [(column(k).isNull(), f"{DATA_ERROR_PREFIX}entity_key column {k!r} is null in a row; drop or fill those rows") for k in spec.keys]
    problems += [(column(g).isNull(), f"{DATA_ERROR_PREFIX}group_by column {g!r} is null in a row; fill it (e.g. with the entity key)") for g in spec.groups]
    if spec.out_of_time:
        problems.append((F.col(internal("period")) == -1, f"{DATA_ERROR_PREFIX}time_column {spec.time_column!r} is null in a row; drop or fill those rows"))
    guarded = rows
    for condition, message in problems:
        guarded = guarded.filter(F.when(condition, F.raise_error(F.lit(message))).otherwise(F.lit(True)))
    return guarded


def _reduce_for_hash(spec: SplitSpec, labelled: DataFrame) -> DataFrame:
    """One row per entity (and period); differing strata or groups within an entity fail lazily."""
    attributes = [*spec.strata, *spec.groups, SPLIT_COLUMN]
    unit = [*spec.keys, internal("period")]
    aggregations = [F.min(F.struct(*map(column, attributes))).alias(internal("lo")), F.max(F.struct(*map(column, attributes))).alias(internal("hi"))]
    if spec.time_column:
        aggregations.append(F.max(column(spec.time_column)).alias(spec.time_column))
    units = labelled.groupBy(*map(column, unit)).agg(*aggregations)
    message = (
        f"{DATA_ERROR_PREFIX}stratify_by/group_by columns {[*spec.strata, *spec.groups]} differ between "
        "rows of one entity; make them constant per entity"
    )
    units = units.filter(
        F.when(~F.col(internal("lo")).eqNullSafe(F.col(internal("hi"))), F.raise_error(F.lit(message))).otherwise(F.lit(True))
    ).select("*", *[F.col(internal("lo"))[a].alias(a) for a in attributes])
    return units.select(*map(column, output_columns(spec)))
