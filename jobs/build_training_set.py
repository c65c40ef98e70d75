"""Build a training set: split index entity rows joined point-in-time with Feast features,
read at a pinned lakeFS commit, written with a content fingerprint and row counts.

Example:
  ./spark-submit.sh jobs/build_training_set.py --feature-repo examples/feature_repo \\
      --feature-service fraud_model_v1 --ref main --split-version v1_stratified_80_10_10 \\
      --splits train --output lakefs://ml-data/main/training_sets/fraud_v1_train
"""

from __future__ import annotations

import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.workflows.training_set import build_training_set


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--feature-repo", required=True, help="path to the Feast feature repo (Git-versioned)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--feature-service", help="Feast feature service name")
    what.add_argument("--features", help="comma-separated view:feature references")
    parser.add_argument("--ref", required=True, help="lakeFS branch, tag or commit; resolved to a commit and read only there")
    parser.add_argument("--split-version", required=True)
    parser.add_argument("--splits", default="train", help="split name(s), comma-separated (default train)")
    parser.add_argument("--output", required=True, help="lakefs://<repo>/<branch>/<path> or a local/cluster path")
    parser.add_argument("--format", choices=["parquet", "delta"], default="parquet")
    parser.add_argument("--full-feature-names", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)

    job = Job(args, "build_training_set")
    commit = job.lakefs.resolve(args.ref)  # fail fast, before Spark starts
    features = args.feature_service or [f.strip() for f in args.features.split(",") if f.strip()]

    lineage = build_training_set(
        job.spark, job.tables, job.lakefs, feature_repo=args.feature_repo, features=features,
        ref=args.ref, commit=commit, split_version=args.split_version,
        splits=[s.strip() for s in args.splits.split(",") if s.strip()],
        output=args.output, output_format=args.format, full_feature_names=args.full_feature_names,
        overwrite=args.overwrite,
    )
    print(lineage.to_json())
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
