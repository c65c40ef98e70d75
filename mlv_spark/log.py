"""One logging setup: one line per step, Spark's, the SDKs' and Feast's noise turned down."""

from __future__ import annotations

import logging
import sys

_CONFIGURED = False
#: Loggers of libraries whose INFO lines say nothing a job's user needs.
_NOISY = ("py4j", "urllib3", "lakefs", "lakefs_sdk", "alembic", "mlflow", "feast", "botocore", "git")


def get_logger(name: str) -> logging.Logger:
    """The logger `mlv_spark.<name>`; the first call sets up the one handler (stderr, one line each)."""
    global _CONFIGURED
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root = logging.getLogger("mlv_spark")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
        for noisy in _NOISY:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        _CONFIGURED = True
    return logging.getLogger(name if name.startswith("mlv_spark") else f"mlv_spark.{name}")
