"""Assign entities to named splits (train/val/test): exact per stratum, seeded, deterministic,
sticky across data growth, group-safe, optionally out-of-time. See docs/splits.md.

Pure DataFrame -> DataFrame: no storage, no tracking; the caller writes the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.errors import InvalidInputError, MlvError
from mlv_spark.log import get_logger
from mlv_spark.split_apportion import (
    Ratios,
    hash_thresholds,
    largest_remainder,
    new_entity_quotas,
    parse_ratios,
    tie_rank,
)
from mlv_spark.split_cuts import (
    Cut,
    StratumHistogram,
    Unresolved,
    build_histograms,
    circle_cuts,
    cut_from_ranked,
    find_cut,
)

log = get_logger(__name__)

SPLIT_COLUMN = "split"
#: Hash buckets per stratum in the histogram pass (a power of two). More buckets: a bigger
#: histogram on the driver, fewer atoms in the rare bucket that must be ranked.
DEFAULT_BUCKETS = 2**14
#: Buckets either side of each cut's expected position whose atoms the histogram lists one by
#: one, so a big stratum's cut is settled without a second look at the data. Covers six standard
#: deviations of the cut's position for strata above (buckets / 16)**2 atoms.
CANDIDATE_WINDOW = 48

_P = "__split_"  # prefix of internal columns
_KEY_TYPES = (
    T.StringType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.DecimalType,
    T.DateType, T.TimestampType, T.TimestampNTZType, T.BooleanType, T.BinaryType,
)  # fmt: skip
_TIME_TYPES = (T.TimestampType, T.TimestampNTZType, T.DateType)

Columns = str | Sequence[str]
Method = Literal["exact", "hash"]


class StratumIdCollisionError(MlvError):
    """Two different strata got the same 64-bit stratum id (odds ~ strata**2 / 2**65)."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


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
            shuffle that reduces rows to entities. Not verified.
        buckets: hash buckets per stratum for the exact method (power of two).
    """
    started = time.perf_counter()
    spec = _Spec.build(
        df, entity_key=entity_key, ratios=ratios, seed=seed, stratify_by=stratify_by,
        group_by=group_by, previous=previous, time_column=time_column, cutoff=cutoff, gap=gap,
        future_splits=future_splits, exclude_train_entities=exclude_train_entities,
        method=method, per_row=per_row, one_row_per_entity=one_row_per_entity, buckets=buckets,
    )  # fmt: skip
    rows = _rows(spec, df)
    if spec.method == "hash":
        result = _assign_by_hash(spec, rows)
    else:
        result = _assign_exactly(spec, rows, previous)
    log.info("assign_splits: planned %s assignment in %.2fs", spec.method, time.perf_counter() - started)
    return result


def attach_splits(df: DataFrame, assignment: DataFrame, *, entity_key: Columns) -> DataFrame:
    """Every row of `df` with its entity's `split` from an entity-level `assignment`.

    Rows whose entity is not in `assignment` are dropped. For out-of-time assignments, where a
    row's split also depends on its time, use `assign_splits(..., per_row=True)` instead.
    """
    keys = _column_list(entity_key, "entity_key", required=True)
    _require_columns(df, keys, "df")
    _require_columns(assignment, [*keys, SPLIT_COLUMN], "assignment")
    if SPLIT_COLUMN in df.columns:
        raise InvalidInputError(
            f"df already has a column {SPLIT_COLUMN!r}; drop or rename it before attaching splits"
        )
    return df.join(assignment.select(*keys, SPLIT_COLUMN), on=keys, how="inner")


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Period:
    """A set of splits that share a population: all splits, or the past / future ones."""

    index: int
    names: tuple[str, ...]
    shares: tuple[Fraction, ...]


@dataclass(frozen=True)
class _Spec:
    keys: list[str]
    strata: list[str]
    groups: list[str]
    time_column: str | None
    key_types: list[T.DataType]
    names: list[str]
    periods: list[_Period]
    seed: int
    period_bounds: tuple[Column, Column] | None
    exclude_train_entities: bool
    method: Method
    per_row: bool
    one_row_per_entity: bool
    bits: int
    sticky: bool

    @property
    def out_of_time(self) -> bool:
        return self.period_bounds is not None

    @staticmethod
    def build(df: DataFrame, **kw: object) -> _Spec:  # noqa: C901 - one check per argument
        names, shares = parse_ratios(kw["ratios"])  # type: ignore[arg-type]
        seed = kw["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
            raise InvalidInputError(f"seed={seed!r} must be an int that fits in 64 bits")
        method = kw["method"]
        if method not in ("exact", "hash"):
            raise InvalidInputError(f"method={method!r} is unknown; use 'exact' or 'hash'")
        buckets = kw["buckets"]
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 2 or buckets > 2**20 or buckets & (buckets - 1):
            raise InvalidInputError(f"buckets={buckets!r} must be a power of two in [2, 2**20]")
        if not isinstance(df, DataFrame):
            raise InvalidInputError(f"df must be a pyspark DataFrame, got {type(df).__name__}")

        keys = _column_list(kw["entity_key"], "entity_key", required=True)
        strata = _column_list(kw["stratify_by"], "stratify_by")
        groups = _column_list(kw["group_by"], "group_by")
        time_column = kw["time_column"]
        if time_column is not None and not isinstance(time_column, str):
            raise InvalidInputError(f"time_column={time_column!r} must be a column name")
        used = [*keys, *strata, *groups, *([time_column] if time_column else [])]
        _require_columns(df, used, "df")
        clash = [c for c in df.columns if c.startswith(_P) or (kw["per_row"] and c == SPLIT_COLUMN)]
        if clash:
            raise InvalidInputError(f"df has reserved column(s) {clash}; rename them")
        schema = {f.name: f.dataType for f in df.schema.fields}
        key_types = [schema[k] for k in keys]
        for column in [*keys, *groups]:
            if not isinstance(schema[column], _KEY_TYPES):
                raise InvalidInputError(
                    f"column {column!r} has type {schema[column].simpleString()}; keys and groups "
                    "must be string, integral, decimal, date, timestamp, boolean or binary "
                    "(cast floats to decimal or string)"
                )

        previous = kw["previous"]
        if previous is not None:
            if method == "hash":
                raise InvalidInputError(
                    "previous is only used by method='exact'; the hash method is stable as data "
                    "grows by construction, so drop previous"
                )
            if not isinstance(previous, DataFrame):
                raise InvalidInputError(f"previous must be a DataFrame, got {type(previous).__name__}")
            _require_columns(previous, [*keys, SPLIT_COLUMN], "previous")

        periods, bounds = _periods(df, schema, names, shares, kw)
        if kw["exclude_train_entities"] and bounds is None:
            raise InvalidInputError(
                "exclude_train_entities=True needs the out-of-time mode; also give time_column and cutoff"
            )
        return _Spec(
            keys=keys, strata=strata, groups=groups, time_column=time_column, key_types=key_types,
            names=names, periods=periods, seed=seed, period_bounds=bounds,
            exclude_train_entities=bool(kw["exclude_train_entities"]), method=method,
            per_row=bool(kw["per_row"]), one_row_per_entity=bool(kw["one_row_per_entity"]),
            bits=buckets.bit_length() - 1, sticky=previous is not None,
        )  # fmt: skip


def _periods(
    df: DataFrame, schema: dict[str, T.DataType], names: list[str], shares: list[Fraction], kw: dict
) -> tuple[list[_Period], tuple[Column, Column] | None]:
    """One period with every split, or (out-of-time) past and future periods and their bounds."""
    time_column, cutoff, gap, future = kw["time_column"], kw["cutoff"], kw["gap"], kw["future_splits"]
    if cutoff is None:
        if gap is not None or future is not None:
            raise InvalidInputError("gap and future_splits need a cutoff (the out-of-time mode)")
        return [_Period(0, tuple(names), tuple(shares))], None
    if time_column is None:
        raise InvalidInputError("cutoff needs time_column, the event time of each row")
    dtype = schema[time_column]
    if not isinstance(dtype, _TIME_TYPES):
        raise InvalidInputError(
            f"time_column {time_column!r} has type {dtype.simpleString()}; use a timestamp or date"
        )
    if gap is None:
        gap = timedelta(0)
    if not isinstance(gap, timedelta) or gap < timedelta(0):
        raise InvalidInputError(f"gap={gap!r} must be a timedelta >= 0")
    future = list(names[1:]) if future is None else list(future)
    unknown = [f for f in future if f not in names]
    if unknown or not future or len(set(future)) == len(names):
        raise InvalidInputError(
            f"future_splits={future!r} must name some but not all of the splits {names}"
        )
    if not isinstance(cutoff, (str, datetime, date)):
        raise InvalidInputError(f"cutoff={cutoff!r} must be a datetime, date or timestamp string")
    compare_type = T.TimestampNTZType() if isinstance(dtype, T.TimestampNTZType) else T.TimestampType()
    start = F.lit(cutoff).try_cast(compare_type) if isinstance(cutoff, str) else F.lit(cutoff).cast(compare_type)
    if df.sparkSession.range(1).select(start.isNull()).first()[0]:
        raise InvalidInputError(f"cutoff={cutoff!r} is not a valid timestamp; use e.g. '2024-01-31 00:00:00'")
    end = start + F.lit(gap)
    past = [n for n in names if n not in future]
    periods = []
    for index, members in enumerate((past, [n for n in names if n in future])):
        member_shares = [shares[names.index(n)] for n in members]
        total = sum(member_shares, Fraction(0))
        periods.append(_Period(index, tuple(members), tuple(s / total for s in member_shares)))
    return periods, (start, end)


def _column_list(value: object, what: str, *, required: bool = False) -> list[str]:
    if value is None:
        columns: list = []
    elif isinstance(value, str):
        columns = [value]
    elif isinstance(value, Sequence):
        columns = list(value)
    else:
        raise InvalidInputError(f"{what}={value!r} must be a column name or a list of them")
    if not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
        raise InvalidInputError(f"{what}={value!r} must be distinct, non-empty column names")
    if required and not columns:
        raise InvalidInputError(f"{what} is empty; name the column(s) identifying an entity")
    return columns


def _require_columns(df: DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInputError(f"{what} has no column(s) {missing}; its columns are {df.columns}")


# --------------------------------------------------------------------------------------------
# Column expressions shared by both methods
# --------------------------------------------------------------------------------------------


def _c(name: str) -> str:
    return _P + name


def _seed(spec: _Spec) -> Column:
    return F.lit(spec.seed).cast("long")


def _nullable_hash(spec: _Spec, salt: str, columns: Sequence[Column]) -> Column:
    """Salted xxhash64 over columns that may be null: each value is preceded by a null marker.

    Spark hashes each argument in turn, chaining the state, so ('1','23') and ('12','3') are
    different inputs (no concatenation); but it skips nulls, which the markers make visible.
    """
    marked: list[Column] = []
    for column in columns:
        marked += [column.isNull(), column]
    return F.xxhash64(_seed(spec), F.lit(salt), *marked)


def _entity_hash(spec: _Spec) -> Column:
    """The salted 64-bit hash that orders entities (keys are never null, see validation)."""
    return F.xxhash64(_seed(spec), *[F.col(k) for k in spec.keys])


def _group_hash(spec: _Spec) -> Column:
    return F.xxhash64(_seed(spec), F.lit("group"), *[F.col(g) for g in spec.groups])


def _entity_tie(spec: _Spec) -> Column:
    """The key, in a form that survives a trip through Python exactly; breaks equal hashes."""
    fields = []
    for i, (name, dtype) in enumerate(zip(spec.keys, spec.key_types, strict=True)):
        column = F.col(name)
        if isinstance(dtype, T.TimestampType):
            column = F.unix_micros(column)
        elif isinstance(dtype, T.DateType):
            column = F.unix_date(column)
        elif isinstance(dtype, T.TimestampNTZType):
            column = column.cast("string")
        fields.append(column.alias(f"t{i}"))
    return F.struct(*fields)


def _period_column(spec: _Spec) -> Column:
    """0 (past, or the only period), 1 (future), -1 (time is null), null (in the gap)."""
    if spec.period_bounds is None:
        return F.lit(0)
    start, end = spec.period_bounds
    event = F.col(spec.time_column)  # type: ignore[arg-type]
    return F.when(event.isNull(), -1).when(event < start, 0).when(event >= end, 1)


def _rows(spec: _Spec, df: DataFrame) -> DataFrame:
    """`df` with its period; rows in the gap are dropped (they belong to no split)."""
    return df.withColumn(_c("period"), _period_column(spec)).filter(F.col(_c("period")).isNotNull())


def _output_columns(spec: _Spec) -> list[str]:
    time_cols = [spec.time_column] if spec.time_column else []
    return [*spec.keys, *spec.strata, *spec.groups, *time_cols, SPLIT_COLUMN]


def _split_by_cases(period: Column, by_period: dict[int, Column]) -> Column:
    expression = None
    for index, value in by_period.items():
        expression = F.when(period == index, value) if expression is None else expression.when(period == index, value)
    assert expression is not None
    return expression


# --------------------------------------------------------------------------------------------
# Hash method: one narrow pass
# --------------------------------------------------------------------------------------------


def _assign_by_hash(spec: _Spec, rows: DataFrame) -> DataFrame:
    """Each entity (or group) placed by its salted hash against fixed thresholds; lazy."""
    atom_hash = _group_hash(spec) if spec.groups else _entity_hash(spec)
    period = F.col(_c("period"))
    by_period = {}
    for p in spec.periods:
        expression = None
        for name, threshold in zip(p.names, hash_thresholds(p.shares), strict=False):
            condition = atom_hash < F.lit(threshold)
            expression = F.when(condition, name) if expression is None else expression.when(condition, name)
        by_period[p.index] = F.lit(p.names[-1]) if expression is None else expression.otherwise(p.names[-1])
    checked = _lazy_checks(spec, rows)
    labelled = checked.withColumn(SPLIT_COLUMN, _split_by_cases(period, by_period))
    if spec.exclude_train_entities:
        labelled = _exclude_future_of_past_entities(spec, labelled)
    if spec.per_row:
        return labelled.drop(*[c for c in labelled.columns if c.startswith(_P)])
    if spec.one_row_per_entity:
        return labelled.select(*_output_columns(spec))
    return _reduce_for_hash(spec, labelled)


def _lazy_checks(spec: _Spec, rows: DataFrame) -> DataFrame:
    """Null keys/groups/times fail the Spark action that reads them (the hash method is lazy)."""
    problems = [(F.col(k).isNull(), f"InvalidInputError: entity_key column {k!r} is null in a row; drop or fill those rows") for k in spec.keys]
    problems += [(F.col(g).isNull(), f"InvalidInputError: group_by column {g!r} is null in a row; fill it (e.g. with the entity key)") for g in spec.groups]
    if spec.out_of_time:
        problems.append((F.col(_c("period")) == -1, f"InvalidInputError: time_column {spec.time_column!r} is null in a row; drop or fill those rows"))
    guarded = rows
    for condition, message in problems:
        guarded = guarded.filter(F.when(condition, F.raise_error(F.lit(message))).otherwise(F.lit(True)))
    return guarded


def _reduce_for_hash(spec: _Spec, labelled: DataFrame) -> DataFrame:
    """One row per entity (and period); differing strata or groups within an entity fail lazily."""
    attributes = [*spec.strata, *spec.groups, SPLIT_COLUMN]
    unit = [*spec.keys, _c("period")]
    aggregations = [F.min(F.struct(*attributes)).alias(_c("lo")), F.max(F.struct(*attributes)).alias(_c("hi"))]
    if spec.time_column:
        aggregations.append(F.max(spec.time_column).alias(spec.time_column))
    units = labelled.groupBy(*unit).agg(*aggregations)
    message = (
        f"InvalidInputError: stratify_by/group_by columns {[*spec.strata, *spec.groups]} differ between "
        "rows of one entity; make them constant per entity"
    )
    units = units.filter(
        F.when(~F.col(_c("lo")).eqNullSafe(F.col(_c("hi"))), F.raise_error(F.lit(message))).otherwise(F.lit(True))
    ).select("*", *[F.col(_c("lo"))[a].alias(a) for a in attributes])
    return units.select(*_output_columns(spec))


def _exclude_future_of_past_entities(spec: _Spec, frame: DataFrame) -> DataFrame:
    """Drop future rows/units of entities that also have past (training-period) events."""
    has_past = F.max((F.col(_c("period")) == 0).cast("int")).over(Window.partitionBy(*spec.keys))
    return frame.withColumn(_c("has_past"), has_past).filter(
        ~((F.col(_c("period")) == 1) & (F.col(_c("has_past")) == 1))
    ).drop(_c("has_past"))


# --------------------------------------------------------------------------------------------
# Exact method
# --------------------------------------------------------------------------------------------


def _assign_exactly(spec: _Spec, rows: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Histogram pass (eager), rare boundary pass, then one lazy pass comparing to cut atoms."""
    spark = rows.sparkSession
    histograms = _histogram_pass(spec, rows, previous)
    started = time.perf_counter()
    plans, unresolved = _plan_cuts(spec, histograms)
    if unresolved:
        _boundary_pass(spec, rows, previous, histograms, plans, unresolved)
    log.info(
        "assign_splits: cuts: %d settled from the histogram, %d from ranking %d boundary buckets, %.2fs",
        sum(len(c) for _, c in plans.values()) - len(unresolved), len(unresolved),
        len({(sid, u.position) for sid, _, u in unresolved}), time.perf_counter() - started,
    )
    cut_table = F.broadcast(_cut_table(spark, spec, plans))
    return _final_pass(spec, rows, previous, cut_table)


# ---- frames: rows -> units (entity, period) -> atoms (unit, or group of units) --------------


def _units(spec: _Spec, rows: DataFrame, previous: DataFrame | None, *, with_values: bool) -> DataFrame:
    """One row per unit = (entity, period), with stratum id, hashes, tie, previous split, flags.

    `with_values` keeps the stratum/group/time values (for the output); without it every
    aggregate is fixed-width, so Spark uses hash aggregation, and conflicts become flags.
    """
    time_cols = [spec.time_column] if spec.time_column else []
    if spec.one_row_per_entity:
        units = rows if with_values else rows.select(*spec.keys, *spec.strata, *spec.groups, _c("period"))
        units = units.withColumn(_c("variants"), F.lit(1))
    else:
        distinct = [*spec.keys, _c("period"), *spec.strata, *spec.groups]
        units = (
            rows.select(*distinct, *time_cols)
            .repartition(*spec.keys)  # one shuffle: the aggregations below keep this partitioning
            .groupBy(*distinct)
            .agg(*([F.max(spec.time_column).alias(spec.time_column)] if spec.time_column else [F.count(F.lit(1)).alias(_c("rows"))]))
        )
        if spec.exclude_train_entities:
            units = _exclude_future_of_past_entities(spec, units)
    units = _with_ids(spec, units)
    if not with_values and not spec.one_row_per_entity:
        units = units.groupBy(*spec.keys, _c("period")).agg(
            F.count(F.lit(1)).alias(_c("variants")),
            F.min(_c("sid")).alias(_c("sid")), F.max(_c("sid")).alias(_c("sid_hi")),
            F.min(_c("chk")).alias(_c("chk")), F.max(_c("chk")).alias(_c("chk_hi")),
            F.min(_c("gid")).alias(_c("gid")), F.max(_c("gid")).alias(_c("gid_hi")),
            F.min(_c("gh")).alias(_c("gh")), F.max(_c("null_group")).alias(_c("null_group")),
        )  # fmt: skip
    elif spec.one_row_per_entity:
        units = units.withColumn(_c("sid_hi"), F.col(_c("sid"))).withColumn(_c("gid_hi"), F.col(_c("gid")))
    units = units.withColumn(_c("h"), _entity_hash(spec)).withColumn(_c("tie"), _entity_tie(spec))
    units = units.withColumn(_c("null_key"), _any_null([F.col(k) for k in spec.keys]))
    return _with_previous(spec, units, previous)


def _any_null(columns: Sequence[Column]) -> Column:
    """1 when any of `columns` is null, else 0."""
    return F.greatest(F.lit(0), F.lit(0), *[c.isNull().cast("int") for c in columns])


def _with_ids(spec: _Spec, units: DataFrame) -> DataFrame:
    period = F.col(_c("period"))
    stratum = [F.col(s) for s in spec.strata]
    group = [F.col(g) for g in spec.groups]
    return units.select(
        "*",
        _nullable_hash(spec, "stratum", [period, *stratum]).alias(_c("sid")),
        _nullable_hash(spec, "stratum-check", [period, *stratum]).alias(_c("chk")),
        (_nullable_hash(spec, "group-id", group) if group else F.lit(0).cast("long")).alias(_c("gid")),
        (_group_hash(spec) if group else F.lit(0).cast("long")).alias(_c("gh")),
        _any_null(group).alias(_c("null_group")),
    )


def _with_previous(spec: _Spec, units: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Add `prev` (global split index kept from `previous`, else null) and `bad_prev`."""
    if previous is None:
        return units.withColumn(_c("prev"), F.lit(None).cast("int")).withColumn(_c("bad_prev"), F.lit(0))
    split = F.col(SPLIT_COLUMN)
    index_of = F.create_map(*[F.lit(x) for i, n in enumerate(spec.names) for x in (n, i)])
    period_of = F.create_map(*[F.lit(x) for p in spec.periods for n in p.names for x in (n, p.index)])
    index, period_of = F.element_at(index_of, split), F.element_at(period_of, split)
    labelled = previous.select(*spec.keys, index.alias("i"), period_of.alias("p"))
    aggregations = [F.sum(F.col("p").isNull().cast("int")).alias(_c("prev_unknown"))]
    for p in spec.periods:
        in_period = F.col("p") == p.index
        aggregations += [
            F.min(F.when(in_period, F.col("i"))).alias(_c(f"prev_lo{p.index}")),
            F.max(F.when(in_period, F.col("i"))).alias(_c(f"prev_hi{p.index}")),
        ]
    per_key = labelled.groupBy(*spec.keys).agg(*aggregations)
    joined = units.join(per_key, on=spec.keys, how="left")
    period = F.col(_c("period"))
    lo = _split_by_cases(period, {p.index: F.col(_c(f"prev_lo{p.index}")) for p in spec.periods})
    hi = _split_by_cases(period, {p.index: F.col(_c(f"prev_hi{p.index}")) for p in spec.periods})
    bad = (F.coalesce(F.col(_c("prev_unknown")), F.lit(0)) > 0) | (lo != hi)
    helper = [_c("prev_unknown"), *[_c(f"prev_{e}{p.index}") for p in spec.periods for e in ("lo", "hi")]]
    return joined.withColumn(_c("prev"), lo).withColumn(_c("bad_prev"), F.coalesce(bad.cast("int"), F.lit(0))).drop(*helper)


def _atoms(spec: _Spec, units: DataFrame) -> DataFrame:
    """What the cuts order: units, or whole groups (weight = units, stratum = the dominant one)."""
    flags = ["null_key", "bad_prev", "null_group"]
    units = units.withColumn(_c("conflict_stratum"), (F.col(_c("sid")) != F.col(_c("sid_hi"))).cast("int")).withColumn(
        _c("conflict_group"), (F.col(_c("gid")) != F.col(_c("gid_hi"))).cast("int")
    )
    flags += ["conflict_stratum", "conflict_group"]
    if not spec.groups:
        return units.withColumn(_c("w"), F.lit(1).cast("long"))
    per_stratum = units.groupBy(_c("period"), _c("gid"), _c("sid")).agg(
        F.count(F.lit(1)).alias(_c("n")), F.min(_c("chk")).alias(_c("chk")), F.min(_c("gh")).alias(_c("gh")),
        F.min(_c("prev")).alias(_c("prev_lo")), F.max(_c("prev")).alias(_c("prev_hi")),
        *[F.sum(_c(f)).alias(_c(f)) for f in flags],
    )  # fmt: skip
    # the stratum with most units wins; equal counts go to the larger stratum id (deterministic)
    order = F.col(_c("n")).cast("decimal(38,0)") * F.lit(Decimal(2**64)) + F.col(_c("sid")).cast("decimal(38,0)")
    groups = per_stratum.groupBy(_c("period"), _c("gid")).agg(
        F.sum(_c("n")).alias(_c("w")), F.max_by(_c("sid"), order).alias(_c("sid")), F.max_by(_c("chk"), order).alias(_c("chk")),
        F.min(_c("gh")).alias(_c("h")), F.min(_c("prev_lo")).alias(_c("prev")), F.max(_c("prev_hi")).alias(_c("prev_hi")),
        *[F.sum(_c(f)).alias(_c(f)) for f in flags],
    )  # fmt: skip
    return groups.withColumn(_c("tie"), F.struct(F.col(_c("gid")).alias("t0"))).withColumn(
        _c("bad_prev"), F.col(_c("bad_prev")) + F.coalesce((F.col(_c("prev")) != F.col(_c("prev_hi"))).cast("int"), F.lit(0))
    )


def _bucket(spec: _Spec, atom_hash: Column) -> Column:
    """Top bits of the signed hash, shifted to [0, buckets): monotone in the hash."""
    return (F.shiftright(atom_hash, 64 - spec.bits) + F.lit(2 ** (spec.bits - 1))).cast("int")


def _rotation(spec: _Spec) -> Column:
    """Seeded 64-bit rotation of a stratum's circle (see split_cuts.circle_cuts)."""
    return F.xxhash64(_seed(spec), F.lit("rotation"), F.col(_c("sid")))


def _candidate(spec: _Spec, bucket: Column) -> Column:
    """Is the bucket within CANDIDATE_WINDOW of where an arc of its stratum is expected to start?

    Hashes are uniform, so arc j starts near hash fraction rotation + C_j / total (mod 1)."""
    size = 2**spec.bits
    rotated = F.shiftright(_rotation(spec), 64 - spec.bits) + F.lit(size // 2)  # in [0, size)
    by_period = {}
    for p in spec.periods:
        condition = F.lit(False)
        cumulative = Fraction(0)
        for share in p.shares:
            distance = F.abs(bucket - F.pmod(rotated + F.lit(int(cumulative * size)), F.lit(size)))
            condition = condition | (F.least(distance, F.lit(size) - distance) <= CANDIDATE_WINDOW)
            cumulative += share
        by_period[p.index] = condition
    return _split_by_cases(F.col(_c("period")), by_period)


# ---- pass 1: histogram ----------------------------------------------------------------------

_FLAG_MESSAGES = {
    "null_key": "entity_key column(s) {keys} are null in {n} unit(s); drop or fill those rows",
    "null_time": "time_column {time!r} is null in {n} unit(s); drop those rows or fill the time",
    "null_group": "group_by column(s) {groups} are null in {n} unit(s); fill them (e.g. with the entity key)",
    "conflict_stratum": "stratify_by column(s) {strata} differ between rows of {n} entit(ies), e.g. {example}; "
    "derive one stratum per entity (e.g. from its latest row) before splitting",
    "conflict_group": "group_by column(s) {groups} differ between rows of {n} entit(ies), e.g. {example}; "
    "an entity must belong to one group",
    "bad_prev": "previous gives {n} unit(s) a split that is unknown, ambiguous or split inside a group, "
    "e.g. {example}; previous must hold one known split (one of {names}) per key",
}


def _histogram_pass(spec: _Spec, rows: DataFrame, previous: DataFrame | None) -> dict[int, StratumHistogram]:
    """Per stratum, per hash bucket: total weight, count, min/max hash; validates in the same pass."""
    units = _units(spec, rows, previous, with_values=False)
    atoms = _atoms(spec, units)
    bucket = F.when(F.col(_c("prev")).isNotNull(), -1 - F.col(_c("prev"))).otherwise(_bucket(spec, F.col(_c("h"))))
    atoms = atoms.withColumn(_c("bucket"), bucket).withColumn(
        _c("null_time"), (F.col(_c("period")) == -1).cast("int")
    )
    cand = F.when(F.col(_c("prev")).isNull() & _candidate(spec, F.col(_c("bucket"))), F.col(_c("h")))
    flags = ["null_key", "null_time", "null_group", "conflict_stratum", "conflict_group", "bad_prev"]
    started = time.perf_counter()
    arrow = (
        atoms.groupBy(F.col(_c("period")).alias("period"), F.col(_c("sid")).alias("sid"), F.col(_c("bucket")).alias("bucket"), cand.alias("cand"))
        .agg(
            F.sum(_c("w")).alias("w"), F.count(F.lit(1)).alias("n"),
            F.min(_c("h")).alias("hmin"), F.max(_c("h")).alias("hmax"),
            F.min(_c("chk")).alias("chk_lo"), F.max(_c("chk")).alias("chk_hi"),
            F.min(_rotation(spec)).alias("rotation"),
            *[F.sum(_c(f)).alias(f) for f in flags],
        )  # fmt: skip
        .toArrow()
    )
    collected = time.perf_counter() - started
    for flag in flags:
        count = pc.sum(arrow.column(flag)).as_py() or 0
        if count:
            raise InvalidInputError(_flag_message(spec, flag, count, units))
    if arrow.num_rows == 0:
        raise InvalidInputError(
            "df has no rows to split" + (" outside the gap" if spec.out_of_time else "") + "; check the input and filters"
        )
    table = {name: arrow.column(name).to_numpy(zero_copy_only=False) for name in ("sid", "period", "bucket", "w", "n", "hmin", "hmax", "rotation")}
    table["cand_valid"] = arrow.column("cand").is_valid().to_numpy(zero_copy_only=False)
    table["cand"] = arrow.column("cand").fill_null(0).to_numpy(zero_copy_only=False)
    histograms = build_histograms(table)
    _check_stratum_ids(arrow)
    log.info(
        "assign_splits: histogram pass: %d atoms in %d strata, %d histogram rows (%.2fs on Spark, %.2fs on the driver)",
        int(table["n"].sum()), len(histograms), arrow.num_rows, collected, time.perf_counter() - started - collected,
    )
    return histograms


def _check_stratum_ids(arrow) -> None:
    """Each stratum id must stand for one stratum: its second, independent hash never varies."""
    by_sid = arrow.group_by("sid").aggregate([("chk_lo", "min"), ("chk_hi", "max")])
    lo, hi = by_sid.column("chk_lo_min").to_numpy(), by_sid.column("chk_hi_max").to_numpy()
    collided = by_sid.column("sid").to_numpy()[lo != hi]
    if len(collided):
        raise StratumIdCollisionError(
            f"strata share the 64-bit stratum id(s) {collided[:3].tolist()}; run again with another seed"
        )


def _flag_message(spec: _Spec, flag: str, count: int, units: DataFrame) -> str:
    """Error text for a failed data check, with one offending key fetched only on this path."""
    offending = {
        "conflict_stratum": F.col(_c("sid")) != F.col(_c("sid_hi")),
        "conflict_group": F.col(_c("gid")) != F.col(_c("gid_hi")),
        "bad_prev": F.col(_c("bad_prev")) > 0,
    }
    example = None
    if flag in offending:
        example = units.filter(offending[flag]).select(*spec.keys).first()
        if example is None and flag == "bad_prev" and spec.groups:  # disagreement inside a group
            split_groups = _atoms(spec, units).filter(F.col(_c("bad_prev")) > 0).select(_c("period"), _c("gid"))
            example = units.join(split_groups, on=[_c("period"), _c("gid")]).select(*spec.keys).first()
    return _FLAG_MESSAGES[flag].format(
        keys=spec.keys, time=spec.time_column, groups=spec.groups, strata=spec.strata, n=count,
        example=repr(tuple(example)) if example is not None else "?", names=spec.names,
    )


# ---- cuts -----------------------------------------------------------------------------------


def _plan_cuts(
    spec: _Spec, histograms: dict[int, StratumHistogram]
) -> tuple[dict[int, tuple[list[str], list[Cut | Unresolved]]], list[tuple[int, int, Unresolved]]]:
    """Per stratum: targets by largest remainder, quotas for its new atoms, the arcs those
    quotas take on the stratum's seeded circle, and the cut atoms where the arcs start."""
    plans: dict[int, tuple[list[str], list[Cut | Unresolved]]] = {}
    unresolved: list[tuple[int, int, Unresolved]] = []
    for sid, hist in histograms.items():
        period = spec.periods[hist.period]
        ranks = [tie_rank(spec.seed, sid, name) for name in period.names]
        old = [hist.old_weights.get(spec.names.index(name), 0) for name in period.names]
        new_total = hist.new_weight
        targets = largest_remainder(new_total + sum(old), period.shares, ranks)
        quotas = new_entity_quotas(new_total, old, targets, ranks) if sum(old) else targets
        hist.targets, hist.quotas = targets, quotas
        positions, owners = circle_cuts(new_total, quotas, hist.rotation)
        stratum_cuts: list[Cut | Unresolved] = []
        for j, position in enumerate(positions):
            cut = find_cut(hist, position)
            if isinstance(cut, Unresolved):
                unresolved.append((sid, j, cut))
            stratum_cuts.append(cut)
        plans[sid] = ([period.names[o] for o in owners], stratum_cuts)
    return plans, unresolved


def _boundary_pass(
    spec: _Spec,
    rows: DataFrame,
    previous: DataFrame | None,
    histograms: dict[int, StratumHistogram],
    plans: dict[int, tuple[list[str], list[Cut | Unresolved]]],
    unresolved: list[tuple[int, int, Unresolved]],
) -> None:
    """Rank the atoms of the few buckets holding an unsettled cut (only those rows are shuffled)."""
    spark = rows.sparkSession
    pairs = sorted({(sid, int(histograms[sid].buckets[u.position])) for sid, _, u in unresolved})
    wanted_buckets = sorted({b for _, b in pairs})
    atom_hash = _group_hash(spec) if spec.groups else _entity_hash(spec)
    narrowed = rows.filter(_bucket(spec, atom_hash).isin(wanted_buckets))
    atoms = _atoms(spec, _units(spec, narrowed, previous, with_values=False))
    atoms = atoms.filter(F.col(_c("prev")).isNull()).withColumn(_c("bucket"), _bucket(spec, F.col(_c("h"))))
    pair_frame = spark.createDataFrame(pairs, f"{_c('sid')} long, {_c('bucket')} int")
    ranked = (
        atoms.join(F.broadcast(pair_frame), on=[_c("sid"), _c("bucket")], how="left_semi")
        .withColumn("rank", F.row_number().over(Window.partitionBy(_c("sid"), _c("bucket")).orderBy(_c("h"), _c("tie"))))
        .select(_c("sid"), _c("bucket"), "rank", _c("h"), _c("tie"), _c("w"))
        .collect()
    )
    members: dict[tuple[int, int], list[tuple[int, tuple, int]]] = {}
    for row in sorted(ranked, key=lambda r: (r[0], r[1], r[2])):
        members.setdefault((row[0], row[1]), []).append((row[3], tuple(row[4]), row[5]))
    for sid, j, cut in unresolved:
        bucket_index = int(histograms[sid].buckets[cut.position])
        plans[sid][1][j] = cut_from_ranked(histograms[sid], cut, members.get((sid, bucket_index), []))
    log.info("assign_splits: boundary pass ranked %d atoms in %d buckets", len(ranked), len(pairs))


def _tie_type(spec: _Spec) -> T.StructType:
    if spec.groups:
        return T.StructType([T.StructField("t0", T.LongType())])
    fields = []
    for i, dtype in enumerate(spec.key_types):
        if isinstance(dtype, T.TimestampType):
            dtype = T.LongType()
        elif isinstance(dtype, T.DateType):
            dtype = T.IntegerType()
        elif isinstance(dtype, T.TimestampNTZType):
            dtype = T.StringType()
        fields.append(T.StructField(f"t{i}", dtype))
    return T.StructType(fields)


def _cut_count(spec: _Spec) -> int:
    """Cuts per stratum in the cut table: at most one per split (where its arc starts)."""
    return max(len(p.names) for p in spec.periods)


def _cut_table(spark, spec: _Spec, plans: dict[int, tuple[list[str], list]]) -> DataFrame:
    """One small row per stratum: the split owning each segment, and each cut atom's (hash, tie)."""
    count = _cut_count(spec)
    tie_type = _tie_type(spec)
    fields = [T.StructField(_c("sid"), T.LongType(), False), T.StructField(_c("owners"), T.ArrayType(T.StringType()))]
    for j in range(count):
        fields += [T.StructField(_c(f"ch{j}"), T.LongType()), T.StructField(_c(f"ct{j}"), tie_type)]
    records = []
    for sid, (owners, stratum_cuts) in plans.items():
        record: list = [sid, owners + owners[-1:] * (count + 1 - len(owners))]
        for cut in list(stratum_cuts) + [Cut(None)] * (count - len(stratum_cuts)):
            assert isinstance(cut, Cut)
            record += [cut.hash, cut.tie]
        records.append(tuple(record))
    return spark.createDataFrame(records, T.StructType(fields))


def _split_from_cuts(spec: _Spec) -> Column:
    """Split of an atom joined to its stratum's cut row: the owner of the segment it falls in."""
    h, tie = F.col(_c("h")), F.col(_c("tie"))
    owners = F.col(_c("owners"))
    expression = None
    for j in range(_cut_count(spec)):
        ch, ct = F.col(_c(f"ch{j}")), F.col(_c(f"ct{j}"))
        past = F.coalesce((h > ch) | ((h == ch) & (ct.isNull() | (tie >= ct))), F.lit(False))
        expression = F.when(~past, owners[j]) if expression is None else expression.when(~past, owners[j])
    last = owners[_cut_count(spec)]
    new_split = last if expression is None else expression.otherwise(last)
    kept = F.element_at(F.array(*[F.lit(n) for n in spec.names]), F.col(_c("prev")) + 1)
    return F.when(F.col(_c("prev")).isNotNull(), kept).otherwise(new_split)


# ---- final pass -----------------------------------------------------------------------------


def _final_pass(spec: _Spec, rows: DataFrame, previous: DataFrame | None, cut_table: DataFrame) -> DataFrame:
    """Lazy: each atom compared with its stratum's cut atoms; no window, no sort."""
    simple_rows = spec.per_row and not spec.groups and previous is None and not spec.exclude_train_entities
    if simple_rows:
        # every row of an entity carries the entity's stratum (validated), so rows map directly
        labelled = _with_ids(spec, rows).withColumn(_c("h"), _entity_hash(spec)).withColumn(_c("tie"), _entity_tie(spec))
        labelled = labelled.withColumn(_c("prev"), F.lit(None).cast("int")).join(cut_table, on=_c("sid"))
        labelled = labelled.withColumn(SPLIT_COLUMN, _split_from_cuts(spec))
        return labelled.select(*rows.columns[:-1], SPLIT_COLUMN)
    units = _units(spec, rows, previous, with_values=True)
    if spec.groups:
        atoms = _atoms(spec, _units(spec, rows, previous, with_values=False)).join(cut_table, on=_c("sid"))
        group_split = atoms.select(_c("period"), _c("gid"), _split_from_cuts(spec).alias(SPLIT_COLUMN))
        assigned = units.join(group_split, on=[_c("period"), _c("gid")])
    else:
        assigned = units.join(cut_table, on=_c("sid")).withColumn(SPLIT_COLUMN, _split_from_cuts(spec))
    if not spec.per_row:
        return assigned.select(*_output_columns(spec))
    unit_key = [*spec.keys, _c("period")]
    return rows.join(assigned.select(*unit_key, SPLIT_COLUMN), on=unit_key).select(*rows.columns[:-1], SPLIT_COLUMN)
