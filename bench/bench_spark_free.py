"""What a Spark-free read saves: rerunning `compute_splits` for a split version that is already
published (an orchestrator retrying a step, a pipeline rerun) is answered from the registry with
pyiceberg, against the same rerun answered in Spark (baseline: a JVM start, the session and the
catalog, the registry read through Spark). Both through `spark-submit.sh`, as a user runs them.

Needs the local services (`make services-up`). In a scratch lakeFS repository: raw data, the
fraud feature pipeline and one published split version; then `--rounds` reruns of each kind.

    .venv/bin/python bench/bench_spark_free.py [--users 3000] [--days 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLV_PROFILE", "local")

from mlv_spark.catalogs import Tables, profile_catalog  # noqa: E402
from mlv_spark.config import load_settings  # noqa: E402
from mlv_spark.lakefs import LakeFS  # noqa: E402
from mlv_spark.session import build_session  # noqa: E402
from mlv_spark.workflows.feature_pipeline import load_pipeline, plan_pipeline, run_pipeline  # noqa: E402


def spark_profile(folder: Path) -> dict[str, str]:
    """The environment of a local profile whose lakeFS catalog reads through Spark only (the
    baseline): conf/local.toml with `spark-free-reads = "false"` and its paths made absolute."""
    text = (ROOT / "conf" / "local.toml").read_text()
    text = text.replace('[catalogs.lakefs]\ntype = "lakefs-iceberg"',
                        '[catalogs.lakefs]\ntype = "lakefs-iceberg"\nspark-free-reads = "false"')
    assert 'spark-free-reads = "false"' in text, "conf/local.toml's [catalogs.lakefs] changed: update this bench"
    text = re.sub(r'"(\.run[^"]*|examples/[^"]*)"',
                  lambda m: '"' + ",".join(str(ROOT / p) for p in m.group(1).split(",")) + '"', text)
    (folder / "conf").mkdir()
    (folder / "conf" / "local.toml").write_text(text)
    return {"MLV_CONF_DIR": str(folder / "conf"), "MLV_JAR_DIR": str(ROOT / ".cache" / "jars")}


def rerun(args: list[str], env: dict[str, str]) -> tuple[float, dict, bool]:
    started = time.monotonic()
    done = subprocess.run([str(ROOT / "spark-submit.sh"), "jobs/compute_splits.py", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **env})
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"compute_splits failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1]), "spark: session" in done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    settings = load_settings()
    spark = build_session(settings, "bench-spark-free", {"spark.ui.enabled": "false"})
    lk = LakeFS(settings.lakefs, f"bench-{uuid.uuid4().hex[:8]}")
    lk.ensure_repository()
    free, jvm = [], []
    try:
        tables = Tables(spark, profile_catalog(settings, "lakefs", lk.repository).activate(spark), lk)
        for name, params in (("card_transactions", {"users": str(options.users), "days": str(options.days)}),
                             ("fraud_features", {})):
            loaded = load_pipeline(name, settings.code.pipelines, params, settings.code.feature_repo)
            run_pipeline(spark, tables, lk, loaded, plan_pipeline(lk, loaded, catalog="lakefs-iceberg", experiment=name,
                                                                  merge_into="main", delete_branch=True))
        args = ["--repository", lk.repository, "--entity-table", "features.transaction_labels", "--entity-key", "txn_id",
                "--group-by", "user_id", "--stratify-by", "is_fraud", "--ratios", "train=0.8,val=0.1,test=0.1",
                "--seed", "42", "--split-version", "v1", "--merge-into", "main", "--delete-branch"]
        _, published, _ = rerun(args, {})  # the first run publishes the version
        rows = sum(published["totals"].values())
        with tempfile.TemporaryDirectory() as folder:
            baseline = spark_profile(Path(folder))
            for _ in range(options.rounds):
                seconds, report, started_spark = rerun(args, {})
                assert report["noop"] and not started_spark, "the rerun was answered without Spark"
                free.append((seconds, report))
                seconds, report, started_spark = rerun(args, baseline)
                assert report["noop"] and started_spark, "the baseline answers in Spark"
                jvm.append((seconds, report))
        assert {json.dumps(r, sort_keys=True) for _, r in free + jvm} == {json.dumps(free[0][1], sort_keys=True)}, \
            "both answer the same"
    finally:
        lk.delete_repository()
        spark.stop()
    base, fast = statistics.median(s for s, _ in jvm), statistics.median(s for s, _ in free)
    print(f"\nrerun of a published split version ({rows:,d} rows in its index; {options.users:,d} card holders, "
          f"{options.days} days); median of {options.rounds} runs each, wall time of spark-submit.sh")
    print("| rerun answered | seconds | × baseline |")
    print("|---|---:|---:|")
    print(f"| in Spark (baseline: JVM, session, registry read through Spark) | {base:.2f} | 1.00 |")
    print(f"| without Spark (registry and index counts read with pyiceberg) | {fast:.2f} | {fast / base:.2f} |")
    print(f"\nmachine load average (1 min) at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
