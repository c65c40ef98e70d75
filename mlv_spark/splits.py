"""Assign entities to named splits (train/val/test): exact per stratum, seeded, deterministic,
sticky across data growth, group-safe, optionally out-of-time. See docs/splits.md.

Pure DataFrame -> DataFrame: no storage, no tracking; the caller writes the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError
from mlv_spark.log import get_logger
from mlv_spark.split_apportion import Ratios, hash_thresholds
from mlv_spark.split_exact import StratumIdCollisionError, assign_exactly
from mlv_spark.split_spec import (
    DEFAULT_BUCKETS,
    SPLIT_COLUMN,
    Columns,
    Method,
    SplitSpec,
    per_period,
    column_list,
    entity_hash,
    exclude_future_of_past_entities,
    group_hash,
    internal,
    key_columns,
    PREFIX,
    output_columns,
    require_columns,
    with_periods,
)
from mlv_spark.sql import column, long_sql, string_sql

__all__ = ["assign_splits", "attach_splits", "SPLIT_COLUMN", "StratumIdCollisionError"]

log = get_logger(__name__)


def assign_splits(
    df: DataFrame,
    *,
    entity_key: Columns,
    ratios: Ratios,
    seed: int,
    stratify_by: Columns | None = None,
    group_by: Columns | None = None,
    previous: DataFrame | None = None,
    time_column: str | None = None,
    cutoff: datetime | date | str | None = None,
    gap: timedelta | None = None,
    future_splits: Sequence[str] | None = None,
    exclude_train_entities: bool = False,
    method: Method = "exact",
    per_row: bool = False,
    one_row_per_entity: bool = False,
    buckets: int = DEFAULT_BUCKETS,
) -> DataFrame:
    """Place every entity of `df` in exactly one split named in `ratios`.

    Returns one row per entity: the key column(s), the stratum and group columns when given,
    `time_column` (the entity's latest event) when given, and `split`. With `per_row=True` it
    returns instead every row of `df` with its entity's `split` (the split index a training job
    needs). `method="exact"` hits the largest-remainder target of every stratum and runs a
    histogram pass first (eager, it validates the data); `method="hash"` places each entity by
    its salted hash alone, lazily in one narrow pass. Policies and guarantees: docs/splits.md.

    Args:
        entity_key: column(s) identifying an entity; never null.
        ratios: split name -> share, e.g. {"train": 0.8, "val": 0.1, "test": 0.1}; sums to 1.
        seed: salts every hash; another seed gives an independent draw.
        stratify_by: column(s) whose every value combination is apportioned separately; must
            be constant over the rows of an entity (null is a value of its own).
        group_by: column(s) of a group whose entities must share one split (e.g. a household).
        previous: an earlier assignment (key column(s) and `split`); those entities keep it.
        time_column, cutoff, gap, future_splits, exclude_train_entities: out-of-time mode; the
            events at or after cutoff + gap go to `future_splits` (default: every split but
            the first), those before cutoff to the others, those in the gap to none.
        one_row_per_entity: promise that `df` already has one row per entity, which skips the
            shuffle that reduces rows to entities. Not verified. (Without it the exact method
            counts each entity's rows and reduces them a second time only when needed.)
        buckets: hash buckets per stratum for the exact method (power of two).
    """
    started = time.perf_counter()
    spec = SplitSpec.build(
        df, entity_key=entity_key, ratios=ratios, seed=seed, stratify_by=stratify_by,
        group_by=group_by, previous=previous, time_column=time_column, cutoff=cutoff, gap=gap,
        future_splits=future_splits, exclude_train_entities=exclude_train_entities,
        method=method, per_row=per_row, one_row_per_entity=one_row_per_entity, buckets=buckets,
    )  # fmt: skip
    rows = with_periods(spec, df)
    if spec.method == "hash":
        result = _assign_by_hash(spec, rows)
    else:
        result = assign_exactly(spec, rows, previous)
    log.info("assign_splits: planned %s assignment in %.2fs", spec.method, time.perf_counter() - started)
    return result


def attach_splits(df: DataFrame, assignment: DataFrame, *, entity_key: Columns) -> DataFrame:
    """Every row of `df` with its entity's `split` from an entity-level `assignment`.

    Rows whose entity is not in `assignment` are dropped. For out-of-time assignments, where a
    row's split also depends on its time, use `assign_splits(..., per_row=True)` instead.
    """
    keys = column_list(entity_key, "entity_key", required=True)
    require_columns(df, keys, "df")
    require_columns(assignment, [*keys, SPLIT_COLUMN], "assignment")
    if SPLIT_COLUMN in df.columns:
        raise InvalidInputError(
            f"df already has a column {SPLIT_COLUMN!r}; drop or rename it before attaching splits"
        )
    return df.join(assignment.select(*map(column, keys), SPLIT_COLUMN), on=keys, how="inner")


# ---- hash method: one narrow pass ----------------------------------------------------------


def _assign_by_hash(spec: SplitSpec, rows: DataFrame) -> DataFrame:
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
    problems = [(column(k).isNull(), f"InvalidInputError: entity_key column {k!r} is null in a row; drop or fill those rows") for k in spec.keys]
    problems += [(column(g).isNull(), f"InvalidInputError: group_by column {g!r} is null in a row; fill it (e.g. with the entity key)") for g in spec.groups]
    if spec.out_of_time:
        problems.append((F.col(internal("period")) == -1, f"InvalidInputError: time_column {spec.time_column!r} is null in a row; drop or fill those rows"))
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
        f"InvalidInputError: stratify_by/group_by columns {[*spec.strata, *spec.groups]} differ between "
        "rows of one entity; make them constant per entity"
    )
    units = units.filter(
        F.when(~F.col(internal("lo")).eqNullSafe(F.col(internal("hi"))), F.raise_error(F.lit(message))).otherwise(F.lit(True))
    ).select("*", *[F.col(internal("lo"))[a].alias(a) for a in attributes])
    return units.select(*map(column, output_columns(spec)))
