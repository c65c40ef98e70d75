"""The carry-forward of a pass: the JVM scan (``io.mlvspark.pit.CarryForward``, the
mlv-spark-scans jar) or, without it, a window; and the partition count of a pass."""

from __future__ import annotations

from dataclasses import dataclass

from py4j.java_gateway import JavaClass
from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    IntegralType,
    StringType,
    TimestampNTZType,
    TimestampType,
)

from mlv_spark.jvm import scan_class
from mlv_spark.log import get_logger
from mlv_spark.sql import string_collation

log = get_logger("mlv_spark.training.pit")

# A pass shuffles into exactly spark.sql.shuffle.partitions partitions when its inputs hold at
# least this many bytes per partition (Spark's size estimate of the input plans); below that,
# adaptive execution may merge the partitions, as for any shuffle by columns.
PIN_BYTES_PER_PARTITION = 1 << 20
#: Session setting choosing the carry-forward: "auto" (the JVM scan when its class is on the
#: class path, else the window), "jvm" (the scan, or an error) or "window".
CARRY_CONF = "spark.mlv.pit.carry"
_SCAN_CLASS = "io.mlvspark.pit.CarryForward"


@dataclass(frozen=True)
class Scan:
    """The JVM carry-forward (``io.mlvspark.pit.CarryForward``); ``strict``: its failure is an
    error (``jvm``) rather than a fallback to the window (``auto``)."""

    java: JavaClass
    strict: bool
    #: The passes' partition count when the inputs are too small to pin (``scan_partitions``),
    #: also used for the TTL filter's aggregation in the scan's plan; ``None`` when pinned.
    small_partitions: int | None = None

    def carry(self, structured: DataFrame, keys: int, passthrough: list[str], latest: list[str]) -> DataFrame | None:
        """Entity rows of ``structured`` (``keys`` partition columns, then ``passthrough``, then
        one value struct per view), each with the latest value struct of each view of its key
        (named ``latest``); ``None`` when the scan cannot be built (not strict: use the window)."""
        spark = structured.sparkSession
        gateway = spark.sparkContext._gateway
        assert gateway is not None

        def ints(values: range) -> object:
            array = gateway.new_array(gateway.jvm.int, len(values))
            for i, value in enumerate(values):
                array[i] = value
            return array

        first_value = keys + len(passthrough)
        try:
            frame = self.java.apply(
                structured._jdf.queryExecution(), keys, keys, ints(range(keys, first_value)),
                ints(range(first_value, first_value + len(latest))),
            )
        except Py4JError as error:  # e.g. a Spark whose internals differ from the pinned one
            if self.strict:
                raise
            log.warning("point-in-time join: the JVM scan failed (%s); carrying forward with a window",
                        str(error).splitlines()[0])
            return None
        return DataFrame(frame, spark).toDF(*passthrough, *latest)


def carry_scan(spark: SparkSession) -> Scan | None:
    """The JVM carry-forward, or ``None`` for the window (see ``CARRY_CONF``)."""
    found = scan_class(spark, CARRY_CONF, _SCAN_CLASS, "window", "a window to carry features forward")
    return None if found is None else Scan(*found)


def scan_can_compare(key_type: DataType) -> bool:
    """Whether the scan's byte-wise key equality is Spark's equality for this key type: not
    for floating point (-0.0 and 0.0, NaNs) or strings with a non-binary collation; such
    keys are carried forward by the window."""
    if isinstance(key_type, StringType):
        return string_collation(key_type) == "UTF8_BINARY"
    return isinstance(key_type, (IntegralType, DecimalType, DateType, TimestampType, TimestampNTZType,
                                 BooleanType, BinaryType))


def scan_partitions(spark: SparkSession) -> int:
    """Shuffle partitions of a pass whose inputs are too small to pin (or have no size
    estimate): the scan's input is planned without adaptive execution, which would otherwise
    merge them, so take at most the default parallelism."""
    parallelism = spark.sparkContext.defaultParallelism
    configured = configured_partitions(spark)
    return parallelism if configured is None else max(1, min(configured, parallelism))


def configured_partitions(spark: SparkSession) -> int | None:
    """``spark.sql.shuffle.partitions``, or ``None`` when it is not a number ("auto" on
    Databricks: the platform chooses)."""
    try:
        return int(spark.conf.get("spark.sql.shuffle.partitions") or "")
    except ValueError:
        return None


def pinned_partitions(inputs: list[DataFrame]) -> int | None:
    """``spark.sql.shuffle.partitions`` when the inputs are large enough to fill them, else
    ``None``. Adaptive execution merges a shuffle's partitions to about the default
    parallelism, often into a few uneven tasks (8 into 3 on 2 cores) that leave cores idle
    during the sort and window; a pinned count is never merged, so it is kept for inputs
    whose partitions would not be tiny, and small inputs still get few tasks and files."""
    partitions = configured_partitions(inputs[0].sparkSession)
    if partitions is None:
        return None
    try:
        unknown = inputs[0]._jdf.sparkSession().sessionState().conf().defaultSizeInBytes()  # "no estimate"
        sizes = [int(str(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes())) for df in inputs]
    except AttributeError:  # no JVM plan (Spark Connect): leave it to Spark
        return None
    if partitions < 2 or any(size >= unknown for size in sizes):  # e.g. rows from the driver
        return None
    return partitions if sum(sizes) >= partitions * PIN_BYTES_PER_PARTITION else None

