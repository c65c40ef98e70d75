"""Promise 3 across deployments: the same splits on local[1] and on a real multi-executor
`local-cluster[2,1,1024]` (two worker JVMs, shuffles over the network) as in this session.

Each master runs in its own Python process (a JVM has one master for life); the assignment comes
back as JSON and is compared with chispa. No skip: if local-cluster cannot start here, the test
fails with Spark's own error output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from mlv_spark.config import Settings
from mlv_spark.jvm import SCANS_JAR
from mlv_spark.splits import assign_splits
from tests.unit.test_splits import RATIOS, build_events

REPO = Path(__file__).resolve().parents[2]
SCALE = 0.25  # ~3,400 entities: enough for every stratum shape, quick on a 2-core machine

SCRIPT = """
import json, sys
from pyspark.sql import SparkSession
from mlv_spark.splits import assign_splits
from tests.unit.test_splits import RATIOS, build_events

master, out, jar = sys.argv[1], sys.argv[2], sys.argv[3]
spark = (SparkSession.builder.master(master).appName("split-determinism").config("spark.jars", jar)
         .config("spark.mlv.splits.histogram", "jvm")
         .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "3")
         .config("spark.ui.enabled", "false").config("spark.executor.memory", "512m").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
events = build_events(spark, scale={scale}).repartition(5)
result = assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=7, stratify_by="label",
                       group_by=None, buckets=256)
rows = sorted([r.user_id, r.label, r.split] for r in result.collect())
json.dump({{"master": spark.sparkContext.master, "executors": spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size(),
            "rows": rows}}, open(out, "w"))
spark.stop()
"""


def _run(master: str, tmp_path: Path, scans_jar: Path) -> dict:
    """The assignment on `master`, with the histogram sketch of the scans jar on its executors."""
    out = tmp_path / f"{master.replace('[', '_').replace(']', '').replace(',', '_')}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable}
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(scale=SCALE), master, str(out), str(scans_jar)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, (
        f"Spark could not run the assignment on master {master!r} (exit {completed.returncode}); "
        f"its output ends with:\n{completed.stderr[-3000:]}"
    )
    return json.loads(out.read_text())


def _frame(spark: SparkSession, rows: list) -> DataFrame:
    return spark.createDataFrame([tuple(r) for r in rows], "user_id string, label string, split string")


@pytest.fixture(scope="module")
def here(spark: SparkSession) -> DataFrame:
    events = build_events(spark, scale=SCALE)
    result = assign_splits(events, entity_key="user_id", ratios=RATIOS, seed=7, stratify_by="label", buckets=256)
    return result.select("user_id", "label", "split")


@pytest.mark.parametrize("master", ["local[1]", "local-cluster[2,1,1024]"])
def test_same_splits_on_another_master(
    spark: SparkSession, settings: Settings, here: DataFrame, master: str, tmp_path: Path
) -> None:
    remote = _run(master, tmp_path, settings.jar_dir / SCANS_JAR)
    assert remote["master"] == master
    if master.startswith("local-cluster"):
        assert remote["executors"] == 3  # the driver's block manager plus two executors
    assert_df_equality(_frame(spark, remote["rows"]), here, ignore_row_order=True, ignore_nullable=True)
