"""What a feature pipeline is: Git-versioned Python code that declares its input tables, its
output tables and the Feast feature views each output feeds, and returns DataFrames.

A pipeline module defines `PIPELINE = Pipeline(...)`; `build(ctx)` reads its inputs only
through `ctx.read(name)` (the catalog at the experiment branch) and returns one DataFrame per
declared output. `jobs/feature_pipeline.py` runs it through the experiment-branch lifecycle;
`validate_output` is the check before the commit: the output's schema against the Feast views
it feeds (names and types as Feast declares them), timestamps present and non-null, and the
row counts and null rates the pipeline declares. Pure: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.errors import InvalidInputError

#: Feast value types (as `mlv_spark.training.feast_repo` reports them) -> the Spark type a table
#: column must have to feed them.
FEAST_TO_SPARK: dict[str, T.DataType] = {
    "INT64": T.LongType(), "INT32": T.IntegerType(), "DOUBLE": T.DoubleType(), "FLOAT": T.FloatType(),
    "STRING": T.StringType(), "BOOL": T.BooleanType(), "BYTES": T.BinaryType(), "UNIX_TIMESTAMP": T.TimestampType(),
}


@dataclass(frozen=True)
class Output:
    """One output table: the Feast views it feeds and the bounds its data must keep.

    `max_null_rate` maps a column (or "*" for every column) to the highest share of nulls
    allowed; join keys and time columns of the views it feeds must never be null."""

    table: str
    feature_views: tuple[str, ...] = ()
    min_rows: int = 1
    max_rows: int | None = None
    max_null_rate: Mapping[str, float] = field(default_factory=dict)
    partition_by: tuple[str, ...] = ()


@dataclass
class PipelineContext:
    """What `build` gets: its parameters and a reader of its declared inputs."""

    params: Mapping[str, Any]
    read: Callable[[str], DataFrame]
    spark: Any  # pyspark.sql.SparkSession


@dataclass(frozen=True)
class Pipeline:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[Output, ...]
    build: Callable[[PipelineContext], Mapping[str, DataFrame]]
    params: Mapping[str, Any] = field(default_factory=dict)  # names and defaults
    description: str = ""
    #: Checks the resolved parameters before anything is written; raises InvalidInputError.
    check: Callable[[Mapping[str, Any]], None] | None = None

    def output(self, table: str) -> Output:
        return next(o for o in self.outputs if o.table == table)

    def resolve_params(self, given: Mapping[str, str]) -> dict[str, Any]:
        """The defaults overridden by `given` (command-line text, converted to each default's type)."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise InvalidInputError(
                f"pipeline {self.name!r} has no parameter(s) {unknown}; it takes {sorted(self.params) or 'none'}"
            )
        resolved = dict(self.params)
        for key, text in given.items():
            default = self.params[key]
            try:
                resolved[key] = _convert(text, default)
            except ValueError:
                raise InvalidInputError(
                    f"--param {key}={text!r}: pipeline {self.name!r} expects a {type(default).__name__} "
                    f"(default {default!r})") from None
        if self.check is not None:
            self.check(resolved)
        return resolved


def _convert(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def check_pipeline(module: Any, source: str) -> Pipeline:
    """The `PIPELINE` a module defines, checked for shape (declared outputs, no duplicates)."""
    pipeline = getattr(module, "PIPELINE", None)
    if not isinstance(pipeline, Pipeline):
        raise InvalidInputError(f"{source} defines no PIPELINE = mlv_spark.pipeline.Pipeline(...)")
    tables = [o.table for o in pipeline.outputs]
    if not tables:
        raise InvalidInputError(f"pipeline {pipeline.name!r} declares no outputs")
    if len(set(tables)) != len(tables):
        raise InvalidInputError(f"pipeline {pipeline.name!r} declares an output twice: {tables}")
    overlap = sorted(set(tables) & set(pipeline.inputs))
    if overlap:
        raise InvalidInputError(f"pipeline {pipeline.name!r} reads and writes {overlap}; write new tables instead")
    return pipeline


def check_outputs(pipeline: Pipeline, frames: Mapping[str, DataFrame]) -> None:
    """`build` returned exactly the declared outputs, as DataFrames."""
    declared = {o.table for o in pipeline.outputs}
    if set(frames) != declared:
        raise InvalidInputError(
            f"pipeline {pipeline.name!r} returned {sorted(frames)} but declares {sorted(declared)}")
    bad = [name for name, df in frames.items() if not isinstance(df, DataFrame)]
    if bad:
        raise InvalidInputError(f"pipeline {pipeline.name!r} returned non-DataFrame values for {bad}")


@dataclass(frozen=True)
class ViewContract:
    """What a Feast view requires of the table it reads (names after field mapping)."""

    view: str
    source_table: str | None
    columns: Mapping[str, str]  # column -> Feast value type
    time_columns: tuple[str, ...]
    key_columns: tuple[str, ...]


def contract_of(view: Any) -> ViewContract:
    """What a `ViewDefinition` (mlv_spark.training.feast_repo) requires of its source table, in
    the table's own column names (before the view's field mapping)."""
    raw = {new: old for old, new in view.field_mapping.items()}
    columns = {raw.get(f.name, f.name): f.dtype for f in (*view.entity_columns, *view.features)}
    times = [view.timestamp_field, *([view.created_timestamp_column] if view.created_timestamp_column else [])]
    for name in times:
        columns[raw.get(name, name)] = "UNIX_TIMESTAMP"
    return ViewContract(
        view=view.name, source_table=getattr(view.source, "table", None) or None, columns=columns,
        time_columns=tuple(raw.get(t, t) for t in times), key_columns=tuple(raw.get(k, k) for k in view.join_keys),
    )


def output_stats(df: DataFrame) -> dict[str, int]:
    """Row count and null count per column, in one aggregation: {"__rows__": n, column: nulls}."""
    row = df.agg(F.count(F.lit(1)).alias("__rows__"),
                 *[F.sum(F.col(f"`{c}`").isNull().cast("long")).alias(f"__nulls_{i}") for i, c in enumerate(df.columns)]).first()
    stats = {"__rows__": int(row["__rows__"])}
    for i, column in enumerate(df.columns):
        stats[column] = int(row[f"__nulls_{i}"] or 0)
    return stats


def validate_output(output: Output, schema: T.StructType, stats: Mapping[str, int],
                    contracts: Sequence[ViewContract]) -> list[str]:
    """The rules `output`'s data breaks (empty: none). `stats` is `output_stats` of the data."""
    problems: list[str] = []
    types = {f.name: f.dataType for f in schema.fields}
    rows = stats["__rows__"]
    if rows < output.min_rows:
        problems.append(f"{output.table} has {rows} rows, fewer than the declared minimum {output.min_rows}")
    if output.max_rows is not None and rows > output.max_rows:
        problems.append(f"{output.table} has {rows} rows, more than the declared maximum {output.max_rows}")
    never_null: set[str] = set()
    for contract in contracts:
        if contract.source_table is not None and contract.source_table != output.table:
            problems.append(f"Feast view {contract.view!r} reads {contract.source_table!r}, not {output.table!r}")
        for column, feast_type in contract.columns.items():
            if column not in types:
                problems.append(f"{output.table} lacks column {column!r} that Feast view {contract.view!r} declares")
                continue
            expected = FEAST_TO_SPARK.get(feast_type)
            actual = types[column]
            if column in contract.time_columns:
                if not isinstance(actual, (T.TimestampType, T.TimestampNTZType)):
                    problems.append(f"{output.table}.{column} is {actual.simpleString()}; view {contract.view!r} "
                                    "needs a timestamp")
            elif expected is not None and actual != expected:
                problems.append(f"{output.table}.{column} is {actual.simpleString()}, but Feast view "
                                f"{contract.view!r} declares {feast_type} ({expected.simpleString()})")
        never_null.update(contract.time_columns)
        never_null.update(contract.key_columns)
    for column in sorted(never_null):
        if stats.get(column):
            problems.append(f"{output.table}.{column} is null in {stats[column]} of {rows} rows; keys and "
                            "timestamps of a feature view must be present")
    limits = dict(output.max_null_rate)
    default = limits.pop("*", None)
    for column in types:
        limit = limits.get(column, default)
        if limit is None or column in never_null:
            continue
        rate = stats.get(column, 0) / rows if rows else 0.0
        if rate > limit:
            problems.append(f"{output.table}.{column} is null in {rate:.1%} of rows; the pipeline allows {limit:.1%}")
    unknown = sorted(set(limits) - set(types))
    if unknown:
        problems.append(f"{output.table}: max_null_rate names columns it does not have: {unknown}")
    return problems
