"""What an experiment branch costs: merge and tag are metadata operations, so the time from
"written" to "tagged" does not grow with the data; a branch adds only the bytes it rewrote.

Needs the local services (`make services-up`). In a scratch lakeFS repository, for each size
(baseline: --users; then 10x): ingest raw transactions, run the fraud feature pipeline through
the lifecycle, and time its steps; then an experiment that rewrites one table of the larger
repository, and the bytes its branch adds over main (lakeFS diff) against main's total.

    .venv/bin/python bench/bench_lifecycle.py [--users 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLV_PROFILE", "local")

from pyspark.sql import functions as F  # noqa: E402

from mlv_spark.catalogs import Tables, profile_catalog  # noqa: E402
from mlv_spark.config import load_settings  # noqa: E402
from mlv_spark.lakefs import LakeFS  # noqa: E402
from mlv_spark.pipeline import Output, Pipeline  # noqa: E402
from mlv_spark.session import build_session  # noqa: E402
from mlv_spark.workflows.feature_pipeline import LoadedPipeline, load_pipeline, plan_pipeline, run_pipeline  # noqa: E402

AFTER_WRITE = ("validate", "commit", "merge", "tag", "delete")


def one_table(ctx):
    """An experiment that rewrites one feature table only (amounts in cents)."""
    txns = ctx.read("raw.transactions")
    return {"features.txn_details": txns.select("txn_id", "event_timestamp", (F.col("amount") * 100).alias("txn_amount"),
                                                (F.col("channel") == "online").cast("long").alias("is_online"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000, help="baseline size in card holders (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="feature pipeline runs per size (default 3)")
    args = parser.parse_args()
    settings = load_settings()
    spark = build_session(settings, "bench-lifecycle", {"spark.ui.enabled": "false"})
    code = settings.code.pipelines
    rows, repos = [], []
    try:
        for label, users in (("baseline", args.users), ("10x", 10 * args.users)):
            lk = LakeFS(settings.lakefs, f"bench-{uuid.uuid4().hex[:8]}")
            lk.ensure_repository()
            repos.append(lk)
            tables = Tables(spark, profile_catalog(settings, "lakefs", lk.repository).activate(spark), lk)
            raw = load_pipeline("card_transactions", code, {"users": str(users), "days": "90"}, None)
            run_pipeline(spark, tables, lk, raw, plan_pipeline(lk, raw, catalog="lakefs-iceberg", experiment="ingest",
                                                               merge_into="main", delete_branch=True))
            transactions = tables.read("raw.transactions", "main").count()
            after, writes = [], []
            for round_ in range(args.rounds):
                loaded = load_pipeline("fraud_features", code, {"amount_transform": ("raw", "log1p")[round_ % 2]},
                                       settings.code.feature_repo)
                plan = plan_pipeline(lk, loaded, catalog="lakefs-iceberg", experiment=f"fe-{round_}", merge_into="main",
                                     tag=f"feature-eng-v{round_ + 1}", delete_branch=True)
                result = run_pipeline(spark, tables, lk, loaded, plan)
                after.append(sum(result.seconds.get(step, 0.0) for step in AFTER_WRITE))
                writes.append(result.seconds["write"])
            rows.append((label, users, transactions, statistics.median(writes), statistics.median(after)))

        lk = repos[-1]
        tables = Tables(spark, profile_catalog(settings, "lakefs", lk.repository).activate(spark), lk)
        main_bytes = lk.size_bytes("main", "")
        pipeline = Pipeline("one_table", ("raw.transactions",), (Output("features.txn_details", ("txn_details",)),),
                            build=one_table)
        loaded = LoadedPipeline(pipeline, Path(__file__), {}, load_pipeline(
            "fraud_features", code, {}, settings.code.feature_repo).feature_repo)
        plan = plan_pipeline(lk, loaded, catalog="lakefs-iceberg", experiment="one-table")
        run_pipeline(spark, tables, lk, loaded, plan)
        changes = lk.diff("main", plan.branch)
        added = sum(c.size_bytes or 0 for c in changes if c.type in ("added", "changed"))
        rewritten = main_bytes and lk.size_bytes("main", "features/txn_details/")
    finally:
        for lk in repos:
            lk.delete_repository()
        spark.stop()

    base = rows[0]
    print(f"\nlifecycle cost, median of {args.rounds} runs per size; written -> tagged = validate + commit + merge + tag + delete")
    print("| size | card holders | transactions | write s | written -> tagged s | × baseline (written -> tagged) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, users, transactions, write, after in rows:
        print(f"| {label} | {users:,d} | {transactions:,d} | {write:.1f} | {after:.3f} | {after / base[4]:.2f} |")
    print(f"\nbytes an experiment branch adds over main (it rewrote features.txn_details only), {rows[-1][0]} repository:")
    print("| | bytes | share of main |")
    print("|---|---:|---:|")
    print(f"| main, everything | {main_bytes:,d} | 100.0% |")
    print(f"| features.txn_details on main (what the branch rewrote) | {rewritten:,d} | {rewritten / main_bytes:.1%} |")
    print(f"| added or changed on the branch (lakeFS diff, {len(changes)} objects) | {added:,d} | {added / main_bytes:.1%} |")
    print(f"\nmachine load average (1 min) at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
