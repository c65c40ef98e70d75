"""Reading Feast data sources into Spark DataFrames: the I/O edge of training-set builds.

FileSource paths and SparkSource paths go through ``path_resolver``, SparkSource tables
through ``table_resolver`` (both identity when None; relative FileSource paths are relative
to the feature repo, as in Feast). A SparkSource query runs as written.

Parquet written by pandas stores timestamps as ``INT64 TIMESTAMP(NANOS)``, which Spark 4
refuses to read. Such columns are looked up in the file footer (through Spark's own Hadoop
file system, so any URI Spark can read works): for a FileSource, usually written by pandas,
before reading; for a SparkSource path, only when Spark's read fails. Then the file is
read with an explicit schema in which they are ``bigint`` epoch nanoseconds. The session
configuration is only changed for the instant of schema inference, under a lock. Callers
convert these columns: time fields stay nanoseconds so the join compares them exactly,
feature values become microsecond timestamps (``nanos_to_timestamp``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, LongType, TimestampNTZType, TimestampType

from mlv_spark.errors import FeatureDefinitionError
from mlv_spark.log import get_logger

log = get_logger(__name__)

_NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"
_CONF_LOCK = threading.Lock()

Resolver = Callable[[str], str]


@dataclass(frozen=True)
class SourceColumns:
    """Raw columns of a data source, in order; ``time_columns`` holds the timestamp-typed ones."""

    columns: tuple[tuple[str, DataType], ...]
    time_columns: frozenset[str]


@dataclass(frozen=True)
class LoadedSource:
    """Raw rows of a source; ``nanos_columns`` maps epoch-nanosecond columns to "is UTC"."""

    df: DataFrame
    nanos_columns: dict[str, bool]
    location: str

    def columns(self) -> SourceColumns:
        times = {
            f.name
            for f in self.df.schema.fields
            if isinstance(f.dataType, (TimestampType, TimestampNTZType)) or f.name in self.nanos_columns
        }
        return SourceColumns(
            columns=tuple((f.name, f.dataType) for f in self.df.schema.fields),
            time_columns=frozenset(times),
        )


class SourceReader:
    """Reads each Feast data source once per instance, through the resolvers."""

    def __init__(
        self,
        spark: SparkSession,
        repo_root: Path,
        table_resolver: Resolver | None = None,
        path_resolver: Resolver | None = None,
    ) -> None:
        self._spark = spark
        self._root = repo_root
        self._table = table_resolver or (lambda name: name)
        self._path = path_resolver
        self._cache: dict[int, tuple[object, LoadedSource]] = {}

    def read(self, source) -> LoadedSource:
        """The source's rows (lazy DataFrame; only schemas are read here)."""
        key = id(source)
        if key not in self._cache:
            self._cache[key] = (source, self._load(source))
        return self._cache[key][1]

    def columns(self, source) -> SourceColumns:
        return self.read(source).columns()

    def _uri(self, path: str) -> str:
        if self._path is not None:
            return self._path(path)
        parsed = urlparse(path)
        if (parsed.scheme and parsed.netloc) or Path(path).is_absolute():
            return path
        return str(self._root / path)

    def _load(self, source) -> LoadedSource:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
        from feast.infra.offline_stores.file_source import FileSource
        from feast.data_format import ParquetFormat

        if isinstance(source, FileSource):
            if source.file_format is not None and not isinstance(source.file_format, ParquetFormat):
                raise FeatureDefinitionError(
                    f"FileSource {source.name!r} has format {type(source.file_format).__name__}; "
                    "only parquet is supported (use a SparkSource for other formats)"
                )
            uri = self._uri(source.path)
            df, nanos = read_parquet(self._spark, uri, footer_first=True)
            return LoadedSource(df, nanos, uri)
        if isinstance(source, SparkSource):
            if source.table:
                table = self._table(source.table)
                return LoadedSource(self._spark.table(table), {}, f"table {table}")
            if source.query:
                return LoadedSource(self._spark.sql(source.query), {}, f"query {source.query!r}")
            uri = self._uri(source.path)
            if source.table_format is not None:
                reader = self._spark.read.format(source.table_format.format_type.value)
                for key, value in source.table_format.properties.items():
                    reader = reader.option(key, value)
                return LoadedSource(reader.load(uri), {}, uri)
            if (source.file_format or "parquet") == "parquet":
                df, nanos = read_parquet(self._spark, uri)
                return LoadedSource(df, nanos, uri)
            return LoadedSource(self._spark.read.format(source.file_format).load(uri), {}, uri)
        raise FeatureDefinitionError(
            f"data source {getattr(source, 'name', source)!r} is a {type(source).__name__}; "
            "only FileSource and SparkSource are supported"
        )


def read_parquet(spark: SparkSession, uri: str, *, footer_first: bool = False) -> tuple[DataFrame, dict[str, bool]]:
    """Parquet at ``uri``; nanosecond timestamp columns come back as bigint epoch nanoseconds.

    Spark refuses TIMESTAMP(NANOS) columns, so a read that works has none, and by default the
    footer is only looked at when Spark's read fails. That failure happens in a Spark job,
    which logs the executor's error; ``footer_first`` looks at the footer before reading
    (one small file read), for sources usually written by pandas (FileSources), which writes
    nanosecond timestamps. The footer is always looked at when the session has
    ``spark.sql.legacy.parquet.nanosAsLong`` on, which would hide such columns as bigint.
    """
    if footer_first or str(spark.conf.get(_NANOS_AS_LONG, "false")).lower() == "true":
        nanos = _footer_nanos(spark, uri)
        if not nanos:
            try:
                return spark.read.parquet(uri), {}
            except Exception as error:
                raise _cannot_read(uri, error) from error
    else:
        try:
            return spark.read.parquet(uri), {}
        except Exception as error:
            nanos = _footer_nanos(spark, uri)
            if not nanos:  # not the nanosecond case: say why, from Spark's own error
                raise _cannot_read(uri, error) from error
    with _CONF_LOCK:
        previous = spark.conf.get(_NANOS_AS_LONG, None)
        spark.conf.set(_NANOS_AS_LONG, "true")
        try:
            schema = spark.read.parquet(uri).schema
        finally:
            if previous is None:
                spark.conf.unset(_NANOS_AS_LONG)
            else:
                spark.conf.set(_NANOS_AS_LONG, previous)
    log.info("%s: nanosecond timestamp columns %s read as epoch nanoseconds", uri, sorted(nanos))
    return spark.read.schema(schema).parquet(uri), nanos


def _footer_nanos(spark: SparkSession, uri: str) -> dict[str, bool]:
    """``parquet_nanos_columns``, or none when the footer cannot be read (Spark's read then
    says why); a path without data still raises, which is clearer than Spark's message."""
    try:
        return parquet_nanos_columns(spark, uri)
    except FeatureDefinitionError:
        raise
    except Exception:
        return {}


def _cannot_read(uri: str, error: Exception) -> FeatureDefinitionError:
    return FeatureDefinitionError(f"cannot read parquet at {uri}: {_root_cause(error)}")


def _root_cause(error: Exception) -> str:
    """The innermost message of a Spark error (the JVM cause chain), else its first line."""
    java = getattr(error, "java_exception", None)
    if java is None:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    while java.getCause() is not None:
        java = java.getCause()
    return str(java.getMessage() or java.toString())


def parquet_nanos_columns(spark: SparkSession, uri: str) -> dict[str, bool]:
    """Top-level INT64 TIMESTAMP(NANOS) columns of the first data file -> is adjusted to UTC."""
    jvm = spark.sparkContext._jvm
    if jvm is None:
        raise FeatureDefinitionError("reading parquet sources needs a classic (not Connect) SparkSession")
    conf = spark._jsparkSession.sessionState().newHadoopConf()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(conf)
    matches = fs.globStatus(path)  # Spark accepts glob patterns in paths
    if matches is None or len(matches) == 0:
        raise FeatureDefinitionError(f"no data at {uri}")
    status = matches[0]
    path = status.getPath()
    if status.isDirectory():
        prefix = fs.makeQualified(path).toString()
        files = fs.listFiles(path, True)
        status = None
        while files.hasNext():
            candidate = files.next()
            relative = candidate.getPath().toString()[len(prefix) :]
            if not any(part.startswith(("_", ".")) for part in relative.split("/") if part):
                status = candidate
                break
        if status is None:
            return {}
    input_file = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromStatus(status, conf)
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(input_file)
    try:
        schema = reader.getFooter().getFileMetaData().getSchema()
    finally:
        reader.close()
    found: dict[str, bool] = {}
    for i in range(schema.getFieldCount()):
        column = schema.getType(i)
        annotation = column.getLogicalTypeAnnotation() if column.isPrimitive() else None
        text = annotation.toString() if annotation is not None else ""
        if text.startswith("TIMESTAMP(NANOS"):
            found[column.getName()] = text.replace(" ", "").endswith(",true)")
        elif not column.isPrimitive() and "TIMESTAMP(NANOS" in column.toString():
            raise FeatureDefinitionError(
                f"{uri}: column {column.getName()!r} nests nanosecond timestamps, which Spark "
                "cannot read; rewrite it with microsecond timestamps"
            )
    return found


def nanos_to_timestamp(column: Column, utc: bool) -> Column:
    """Epoch nanoseconds as a microsecond timestamp (truncated towards the past)."""
    micros = F.floor(column.cast("decimal(20,0)") / F.lit(1000)).cast(LongType())
    if utc:
        return F.timestamp_micros(micros)
    # Wall-clock result: build it without the session time zone.
    seconds = (micros.cast("decimal(20,0)") / F.lit(1_000_000)).cast("decimal(18,6)")
    epoch = F.lit("1970-01-01 00:00:00").cast(TimestampNTZType())
    return epoch + F.make_dt_interval(F.lit(0), F.lit(0), F.lit(0), seconds)
