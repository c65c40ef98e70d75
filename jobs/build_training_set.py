"""Build a training set: split index entity rows (with their labels) joined point-in-time with
Feast features, read at a pinned lakeFS commit, written with a content fingerprint and its lineage.

Example:
  ./spark-submit.sh jobs/build_training_set.py --feature-repo examples/feature_repo \\
      --feature-service fraud_model --ref feature-eng-v2 --split-version v1_stratified_80_10_10 \\
      --splits train --label is_fraud --output lakefs://ml-data/main/training_sets/fraud_train

A lakeFS output is written through an experiment branch and merged (never directly); prints the
manifest (output, fingerprint, row count, lineage) as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlv_spark.cli import Job, add_training_set_arguments, job_parser, run
from mlv_spark.workflows.provenance import require_committed
from mlv_spark.workflows.training_set import TrainingSetRequest, build_training_set


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    add_training_set_arguments(parser)
    parser.add_argument("--output", required=True, help="lakefs://<repo>/<branch>/<path> or a local/cluster path")
    parser.add_argument("--format", choices=["parquet", "delta"], default="parquet")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (only a training set)")
    parser.add_argument("--experiment", default=None, help="the experiment branch of a lakeFS output (default: from its path)")
    args = parser.parse_args(argv)

    job = Job(args, "build_training_set")
    commit = job.lakefs.resolve(args.ref)  # fail fast, before Spark starts
    feature_repo = Path(args.feature_repo or job.settings.code.feature_repo or "feature_repo")
    require_committed(feature_repo, allow_dirty=args.allow_dirty)
    request = TrainingSetRequest(
        feature_repo=feature_repo,
        features=args.feature_service or tuple(f.strip() for f in args.features.split(",") if f.strip()),
        ref=args.ref, split_version=args.split_version,
        splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()), labels=tuple(args.label),
        full_feature_names=args.full_feature_names)
    manifest = build_training_set(job.spark, job.tables, job.lakefs, request, args.output, output_format=args.format,
                                  overwrite=args.overwrite, commit=commit, experiment=args.experiment,
                                  code_root=job.settings.root)
    print(manifest.to_json())
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
