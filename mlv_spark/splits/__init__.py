"""Train/val/test split assignment: exact per stratum, seeded, deterministic, sticky across data
growth, group-safe, optionally out-of-time (see docs/splits.md), and the split index schema.

Pure DataFrame -> DataFrame: no storage, no tracking; `mlv_spark.workflows.split_version`
reads, calls `assign` and publishes.
"""

from mlv_spark.splits.assign import assign, assign_splits, attach_splits
from mlv_spark.splits.exact import StratumIdCollisionError
from mlv_spark.splits.params import SplitParams
from mlv_spark.splits.spec import SPLIT_COLUMN

__all__ = ["assign", "assign_splits", "attach_splits", "SplitParams", "SPLIT_COLUMN", "StratumIdCollisionError"]
