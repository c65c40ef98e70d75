"""Small Spark helpers shared by the modules: quoted names, SQL literals, file existence, and
the few calls whose form differs between Spark 3.5 and 4.0."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType

if TYPE_CHECKING:
    import pyarrow as pa


def quote(part: str) -> str:
    """Backtick-quote one identifier part (column names with dots, refs like `exp-1`)."""
    return "`" + part.replace("`", "``") + "`"


def column(name: str) -> Column:
    """The column called `name`, whatever characters the name holds."""
    return F.col(quote(name))


def string_sql(text: str) -> str:
    """Any text as an SQL string literal, read the same whatever the parser's escape settings."""
    return f"CAST(X'{text.encode('utf-8').hex()}' AS STRING)"


def long_sql(value: int) -> str:
    """A 64-bit integer literal (a bare literal past 32 bits may be read as a decimal)."""
    return f"CAST({int(value)} AS BIGINT)"


def path_exists(spark: SparkSession, uri: str) -> bool:
    """Whether a file or directory exists at `uri`, through the session's Hadoop file systems."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    assert jvm is not None  # a classic session (a Connect session has no SparkContext)
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return bool(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path))  # type: ignore[attr-defined]


def to_arrow(frame: DataFrame) -> pa.Table:
    """A small frame's rows as one Arrow table: `DataFrame.toArrow` (Spark 4); on Spark 3.5, which
    lacks it, the same Arrow batches `toPandas` collects, with the schema Spark 4 gives them."""
    if hasattr(frame, "toArrow"):
        return frame.toArrow()
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    batches = frame._collect_as_arrow()  # type: ignore[attr-defined]
    return pa.Table.from_batches(batches, schema=to_arrow_schema(frame.schema))


def string_collation(data_type: DataType) -> str:
    """The collation of a string type: Spark 4's, or UTF8_BINARY on Spark 3.5 (no collations)."""
    return str(getattr(data_type, "collation", "UTF8_BINARY"))
