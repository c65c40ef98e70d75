"""mlv-spark: versioned, reproducible ML training data on Spark.

Split index tables, lakeFS-branch feature pipelines over Iceberg/Delta, point-in-time
training sets that mirror Feast definitions, and MLflow lineage.
"""

__version__ = "0.1.0"
