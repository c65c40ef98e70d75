"""Small Spark helpers shared by the modules: quoted names, SQL literals and file existence."""

from __future__ import annotations

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F


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
