"""Small Spark helpers shared by the modules: quoted names and file existence."""

from __future__ import annotations

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F


def quote(part: str) -> str:
    """Backtick-quote one identifier part (column names with dots, refs like `exp-1`)."""
    return "`" + part.replace("`", "``") + "`"


def column(name: str) -> Column:
    """The column called `name`, whatever characters the name holds."""
    return F.col(quote(name))


def path_exists(spark: SparkSession, uri: str) -> bool:
    """Whether a file or directory exists at `uri`, through the session's Hadoop file systems."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    assert jvm is not None  # a classic session (a Connect session has no SparkContext)
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return bool(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path))  # type: ignore[attr-defined]
