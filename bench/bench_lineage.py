"""What lineage costs: logging it against the training job's own time (goal ≤ 5 %), and rebuilding a
model version's training data from its lineage against the original build (goal ≤ 1.2×).

Needs the local services (`make services-up`). In a scratch lakeFS repository: raw data, the
fraud feature pipeline and a split version, then `--rounds` training runs (each: the training set
planned, built and fingerprinted — the baseline of the rebuild —, the lineage record and its
MLflow logging, the fit, the model) and, for each, a promotion and a reproduction.

    .venv/bin/python bench/bench_lineage.py [--users 3000] [--days 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLV_PROFILE", "local")

from mlv_spark.catalogs import Tables, profile_catalog  # noqa: E402
from mlv_spark.config import load_settings  # noqa: E402
from mlv_spark.lakefs import LakeFS  # noqa: E402
from mlv_spark.lineage.mlflow import client, find_model_version, model_version_lineage  # noqa: E402
from mlv_spark.session import build_session  # noqa: E402
from mlv_spark.splits import SplitParams  # noqa: E402
from mlv_spark.splits.index import SplitVersion  # noqa: E402
from mlv_spark.trainer import logistic_regression  # noqa: E402
from mlv_spark.workflows.feature_pipeline import load_pipeline, plan_pipeline, run_pipeline  # noqa: E402
from mlv_spark.workflows.promote import promote  # noqa: E402
from mlv_spark.workflows.reproduce import reproduce  # noqa: E402
from mlv_spark.workflows.split_version import compute_split_version  # noqa: E402
from mlv_spark.workflows.train import train_model  # noqa: E402
from mlv_spark.workflows.training_set import TrainingSetRequest  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    spark = build_session(settings, "bench-lineage", {"spark.ui.enabled": "false"})
    lk = LakeFS(settings.lakefs, f"bench-{uuid.uuid4().hex[:8]}")
    lk.ensure_repository()
    model = f"bench-{lk.repository}"
    tracking = client(settings.mlflow.tracking_uri)
    rows = []
    try:
        tables = Tables(spark, profile_catalog(settings, "lakefs", lk.repository).activate(spark), lk)
        code = settings.code.pipelines
        for name, params in (("card_transactions", {"users": str(args.users), "days": str(args.days)}),
                             ("fraud_features", {})):
            loaded = load_pipeline(name, code, params, settings.code.feature_repo)
            run_pipeline(spark, tables, lk, loaded, plan_pipeline(lk, loaded, catalog="lakefs-iceberg", experiment=name,
                                                                  merge_into="main", delete_branch=True))
        split = SplitParams.of(entity_key="txn_id", group_by="user_id", stratify_by="is_fraud", seed=42,
                               ratios={"train": 0.8, "val": 0.1, "test": 0.1}, time_column="event_timestamp")
        compute_split_version(spark, tables, lk, SplitVersion("v1", "features.transaction_labels", "main", split),
                              merge_into="main", delete_branch=True)
        request = TrainingSetRequest(settings.code.feature_repo, "fraud_model", "main", "v1", ("train", "val"), ("is_fraud",))
        for round_ in range(args.rounds):
            trained = train_model(spark, tables, lk, request, trainer=logistic_regression,
                                  tracking_uri=settings.mlflow.tracking_uri, experiment=f"bench-{lk.repository}",
                                  code_root=ROOT)
            promoted = promote(tracking, lambda _: lk, run_id=trained.run_id, tag=f"bench-{round_}", model_name=model)
            version = find_model_version(tracking, model, version=promoted.version)
            report = reproduce(model_version_lineage(tracking, version), model=model, version=promoted.version,
                               tag=promoted.tag, lakefs=lk, session=lambda: (spark, tables), code_root=ROOT)
            assert report.reproducible, report.render()
            s = trained.seconds
            rows.append((s["total"], s["lineage_record"] + s["lineage_logging"], s["training_set"], report.seconds["rebuild"]))
    finally:
        lk.delete_repository()
        spark.stop()
    job, lineage, build, rebuild = (statistics.median(column) for column in zip(*rows))
    print(f"\n{args.users:,d} card holders, {args.days} days; median of {args.rounds} rounds (one Spark session)")
    print("| | seconds | × baseline |")
    print("|---|---:|---:|")
    print(f"| training job, everything (baseline for the lineage) | {job:.2f} | 1.00 |")
    print(f"| lineage: record (table versions, Git) + MLflow logging | {lineage:.2f} | {lineage / job:.3f} |")
    print(f"| original training set: planned, built, fingerprinted (baseline for the rebuild) | {build:.2f} | 1.00 |")
    print(f"| reproduce: rebuilt from the lineage and fingerprinted | {rebuild:.2f} | {rebuild / build:.2f} |")
    print(f"\nmachine load average (1 min) at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
