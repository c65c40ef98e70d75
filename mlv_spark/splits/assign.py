"""Assign entities to named splits (train/val/test): exact per stratum, seeded, deterministic,
sticky across data growth, group-safe, optionally out-of-time. See docs/splits.md.

Pure DataFrame -> DataFrame: no storage, no tracking; the caller writes the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from pyspark.sql import DataFrame

from mlv_spark.errors import InvalidInputError
from mlv_spark.log import get_logger
from mlv_spark.splits.apportion import Ratios
from mlv_spark.splits.exact import assign_exactly
from mlv_spark.splits.hashed import assign_by_hash
from mlv_spark.splits.params import Columns, Method, SplitParams, column_list
from mlv_spark.splits.spec import DEFAULT_BUCKETS, SPLIT_COLUMN, SplitSpec, require_columns, with_periods
from mlv_spark.sql import column

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
    params = SplitParams.of(
        entity_key=entity_key, ratios=ratios, seed=seed, stratify_by=stratify_by, group_by=group_by,
        time_column=time_column, cutoff=cutoff, gap=gap, future_splits=future_splits,
        exclude_train_entities=exclude_train_entities, method=method,
    )
    return assign(df, params, previous=previous, per_row=per_row, one_row_per_entity=one_row_per_entity,
                  buckets=buckets)


def assign(
    df: DataFrame,
    params: SplitParams,
    *,
    previous: DataFrame | None = None,
    per_row: bool = False,
    one_row_per_entity: bool = False,
    buckets: int = DEFAULT_BUCKETS,
) -> DataFrame:
    """`assign_splits` with its parameters as one `SplitParams` (what the split workflow passes)."""
    started = time.perf_counter()
    spec = SplitSpec.build(df, params, previous=previous, per_row=per_row,
                           one_row_per_entity=one_row_per_entity, buckets=buckets)
    rows = with_periods(spec, df)
    result = assign_by_hash(spec, rows) if spec.method == "hash" else assign_exactly(spec, rows, previous)
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
