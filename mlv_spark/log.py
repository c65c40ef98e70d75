"""One logging setup: one line per step, Spark's and the SDKs' noise turned down."""

from __future__ import annotations

import logging
import sys

_CONFIGURED = False


def get_logger(name: str) -> logging.Logger:
    global _CONFIGURED
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root = logging.getLogger("mlv_spark")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
        for noisy in ("py4j", "urllib3", "lakefs", "lakefs_sdk", "alembic", "mlflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        _CONFIGURED = True
    return logging.getLogger(name if name.startswith("mlv_spark") else f"mlv_spark.{name}")
