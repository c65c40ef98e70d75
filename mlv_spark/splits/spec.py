"""The plan of one assign_splits call and the column expressions both split methods share
(internal to mlv_spark.splits).

`SplitSpec.build` checks a `SplitParams` against the DataFrame's schema, before any Spark job
but the cutoff's parse; the expressions here define the salted hashes, the stratum ids and the
periods that both split methods rely on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.errors import InvalidInputError
from mlv_spark.splits.apportion import parse_ratios
from mlv_spark.splits.params import Method, SplitParams
from mlv_spark.sql import column, long_sql, string_sql

SPLIT_COLUMN = "split"
#: Hash buckets per stratum in the exact method's histogram pass (a power of two).
DEFAULT_BUCKETS = 2**14
PREFIX = "__split_"  # prefix of internal columns
KEY_TYPES = (
    T.StringType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.DecimalType,
    T.DateType, T.TimestampType, T.TimestampNTZType, T.BooleanType, T.BinaryType,
)  # fmt: skip
TIME_TYPES = (T.TimestampType, T.TimestampNTZType, T.DateType)


@dataclass(frozen=True)
class Period:
    """A set of splits that share a population: all splits, or the past / future ones."""

    index: int
    names: tuple[str, ...]
    shares: tuple[Fraction, ...]


@dataclass(frozen=True)
class SplitSpec:
    """One call's parameters with what the DataFrame adds: key types, periods and their
    bounds, and how the result is shaped (`build` raises on anything the data contradicts)."""

    params: SplitParams
    key_types: list[T.DataType]
    periods: list[Period]
    period_bounds: tuple[Column, Column] | None
    per_row: bool
    one_row_per_entity: bool
    bits: int
    sticky: bool

    @property
    def keys(self) -> list[str]:
        return list(self.params.entity_key)

    @property
    def strata(self) -> list[str]:
        return list(self.params.stratify_by)

    @property
    def groups(self) -> list[str]:
        return list(self.params.group_by)

    @property
    def names(self) -> list[str]:
        return self.params.split_names

    @property
    def time_column(self) -> str | None:
        return self.params.time_column

    @property
    def seed(self) -> int:
        return self.params.seed

    @property
    def method(self) -> Method:
        return self.params.method

    @property
    def exclude_train_entities(self) -> bool:
        return self.params.exclude_train_entities

    @property
    def out_of_time(self) -> bool:
        """True when a cutoff splits events into a past and a future period."""
        return self.period_bounds is not None

    @staticmethod
    def build(
        df: DataFrame,
        params: SplitParams,
        *,
        previous: DataFrame | None = None,
        per_row: bool = False,
        one_row_per_entity: bool = False,
        buckets: int = DEFAULT_BUCKETS,
    ) -> SplitSpec:
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 2 or buckets > 2**20 or buckets & (buckets - 1):
            raise InvalidInputError(f"buckets={buckets!r} must be a power of two in [2, 2**20]")
        if not isinstance(df, DataFrame):
            raise InvalidInputError(f"df must be a pyspark DataFrame, got {type(df).__name__}")
        keys, groups, time_column = list(params.entity_key), list(params.group_by), params.time_column
        used = [*keys, *params.stratify_by, *groups, *([time_column] if time_column else [])]
        require_columns(df, used, "df")
        clash = [c for c in df.columns if c.startswith(PREFIX) or (per_row and c == SPLIT_COLUMN)]
        if clash:
            raise InvalidInputError(f"df has reserved column(s) {clash}; rename them")
        schema = {f.name: f.dataType for f in df.schema.fields}
        for name in [*keys, *groups]:
            if not isinstance(schema[name], KEY_TYPES):
                raise InvalidInputError(
                    f"column {name!r} has type {schema[name].simpleString()}; keys and groups "
                    "must be string, integral, decimal, date, timestamp, boolean or binary "
                    "(cast floats to decimal or string)"
                )
        if previous is not None:
            if params.method == "hash":
                raise InvalidInputError(
                    "previous is only used by method='exact'; the hash method is stable as data "
                    "grows by construction, so drop previous"
                )
            if not isinstance(previous, DataFrame):
                raise InvalidInputError(f"previous must be a DataFrame, got {type(previous).__name__}")
            require_columns(previous, [*keys, SPLIT_COLUMN], "previous")
        periods, bounds = _periods(df, schema, params)
        return SplitSpec(
            params=params, key_types=[schema[k] for k in keys], periods=periods, period_bounds=bounds,
            per_row=bool(per_row), one_row_per_entity=bool(one_row_per_entity),
            bits=buckets.bit_length() - 1, sticky=previous is not None,
        )


def _periods(
    df: DataFrame, schema: dict[str, T.DataType], params: SplitParams
) -> tuple[list[Period], tuple[Column, Column] | None]:
    """One period with every split, or (out-of-time) past and future periods and their bounds."""
    names, shares = parse_ratios(params.ratios)
    if params.cutoff is None:
        return [Period(0, tuple(names), tuple(shares))], None
    time_column, cutoff = params.time_column, params.cutoff
    assert time_column is not None  # SplitParams requires it with a cutoff
    dtype = schema[time_column]
    if not isinstance(dtype, TIME_TYPES):
        raise InvalidInputError(
            f"time_column {time_column!r} has type {dtype.simpleString()}; use a timestamp or date"
        )
    future = list(params.future_splits) if params.future_splits is not None else names[1:]
    compare_type = T.TimestampNTZType() if isinstance(dtype, T.TimestampNTZType) else T.TimestampType()
    if isinstance(cutoff, str):  # parsed the way Spark parses it: one tiny job
        # SQL's try_cast: Column.try_cast is Spark 4's only
        start = F.expr(f"try_cast({string_sql(cutoff)} AS {compare_type.simpleString()})")
        parsed = df.sparkSession.range(1).select(start.isNull().alias("invalid")).first()
        if parsed is None or parsed["invalid"]:
            raise InvalidInputError(f"cutoff={cutoff!r} is not a valid timestamp; use e.g. '2024-01-31 00:00:00'")
    else:
        start = F.lit(cutoff).cast(compare_type)
    end = start + F.lit(params.gap or timedelta(0))
    past = [n for n in names if n not in future]
    periods = []
    for index, members in enumerate((past, [n for n in names if n in future])):
        member_shares = [shares[names.index(n)] for n in members]
        total = sum(member_shares, Fraction(0))
        periods.append(Period(index, tuple(members), tuple(s / total for s in member_shares)))
    return periods, (start, end)


def require_columns(df: DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise naming the columns `df` lacks, and the ones it has."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInputError(f"{what} has no column(s) {missing}; its columns are {df.columns}")


# ---- column expressions shared by both methods --------------------------------------------


def internal(name: str) -> str:
    """Name of an internal column (never clashes with the caller's, see SplitSpec.build)."""
    return PREFIX + name


# The expressions below are SQL text over internal names only: `with_periods` adds an internal
# alias of every key, stratum and group column, so a caller's column name never enters
# SQL text (no quoting; no regex reading of quoted names under
# spark.sql.parser.quotedRegexColumnNames), and a plan costs a few JVM calls per step.


def key_columns(spec: SplitSpec) -> list[str]:
    """Internal aliases of the entity_key columns."""
    return [internal(f"key{i}") for i in range(len(spec.keys))]


def stratum_columns(spec: SplitSpec) -> list[str]:
    """Internal aliases of the stratify_by columns."""
    return [internal(f"stratum{i}") for i in range(len(spec.strata))]


def group_columns(spec: SplitSpec) -> list[str]:
    """Internal aliases of the group_by columns."""
    return [internal(f"group{i}") for i in range(len(spec.groups))]


def aliases(spec: SplitSpec) -> list[Column]:
    """The internal alias of each key, stratum and group column of the caller's frame."""
    pairs = [*zip(spec.keys, key_columns(spec)), *zip(spec.strata, stratum_columns(spec)), *zip(spec.groups, group_columns(spec))]
    return [column(name).alias(alias) for name, alias in pairs]


def seed_sql(spec: SplitSpec) -> str:
    """The seed as a 64-bit literal: the first value every salted hash consumes."""
    return long_sql(spec.seed)


def nullable_hash(spec: SplitSpec, salt: str, columns: Sequence[str]) -> str:
    """Salted xxhash64 over columns that may be null: each value is preceded by a null marker.

    Spark hashes each argument in turn, chaining the state, so ('1','23') and ('12','3') are
    different inputs (no concatenation); but it skips nulls, which the markers make visible.
    """
    marked = [part for column in columns for part in (f"isnull({column})", column)]
    return f"xxhash64({', '.join([seed_sql(spec), string_sql(salt), *marked])})"


def entity_hash(spec: SplitSpec) -> str:
    """The salted 64-bit hash that orders entities (keys are never null, see validation)."""
    return f"xxhash64({', '.join([seed_sql(spec), *key_columns(spec)])})"


def group_hash(spec: SplitSpec) -> str:
    """The salted 64-bit hash that orders groups (group_by columns are never null)."""
    return f"xxhash64({', '.join([seed_sql(spec), string_sql('group'), *group_columns(spec)])})"


def entity_tie(spec: SplitSpec) -> str:
    """The key, in a form that survives a trip through Python exactly; breaks equal hashes."""
    fields = []
    for i, (key, dtype) in enumerate(zip(key_columns(spec), spec.key_types, strict=True)):
        if isinstance(dtype, T.TimestampType):
            key = f"unix_micros({key})"
        elif isinstance(dtype, T.DateType):
            key = f"unix_date({key})"
        elif isinstance(dtype, T.TimestampNTZType):
            key = f"CAST({key} AS STRING)"
        fields.append(f"'t{i}', {key}")
    return f"named_struct({', '.join(fields)})"


def tie_type(spec: SplitSpec) -> T.StructType:
    """Type of `entity_tie` (or, for groups, of the group id that breaks equal group hashes)."""
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


def period_column(spec: SplitSpec) -> Column:
    """0 (past, or the only period), 1 (future), -1 (time is null), null (in the gap)."""
    if spec.period_bounds is None:
        return F.lit(0)
    start, end = spec.period_bounds
    event = column(spec.time_column)  # type: ignore[arg-type]
    return F.when(event.isNull(), -1).when(event < start, 0).when(event >= end, 1)


def with_periods(spec: SplitSpec, df: DataFrame) -> DataFrame:
    """`df` with its period and the internal aliases; rows in the gap are dropped (they
    belong to no split)."""
    return df.select("*", *aliases(spec), period_column(spec).alias(internal("period"))).filter(
        F.col(internal("period")).isNotNull()
    )


def output_columns(spec: SplitSpec) -> list[str]:
    """Columns of the entity-level result, in order."""
    time_cols = [spec.time_column] if spec.time_column else []
    return [*spec.keys, *spec.strata, *spec.groups, *time_cols, SPLIT_COLUMN]


def per_period(period: str, by_period: dict[int, str]) -> str:
    """`by_period[period]` as SQL text."""
    if len(by_period) == 1:
        return next(iter(by_period.values()))
    cases = " ".join(f"WHEN {period} = {index} THEN {value}" for index, value in by_period.items())
    return f"CASE {cases} END"


def exclude_future_of_past_entities(frame: DataFrame, keys: Sequence[str]) -> DataFrame:
    """Drop future rows/units (period 1) of entities, given by their `keys` columns, that also
    have past (training-period) events."""
    period = internal("period")
    has_past = f"max(CAST({period} = 0 AS INT)) OVER (PARTITION BY {', '.join(keys)})"
    flagged = frame.select("*", F.expr(has_past).alias(internal("has_past")))
    return flagged.filter(f"NOT ({period} = 1 AND {internal('has_past')} = 1)").drop(internal("has_past"))


def any_null(columns: Sequence[str]) -> str:
    """1 when any of `columns` is null, else 0."""
    return f"greatest({', '.join(['0', '0', *[f'CAST(isnull({c}) AS INT)' for c in columns]])})"
