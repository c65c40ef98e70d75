"""Run a feature pipeline on a lakeFS experiment branch: run → validate → commit → merge → tag → delete.

Example:
  ./spark-submit.sh jobs/feature_pipeline.py --pipeline fraud_features --experiment new-normalization \\
      --param amount_transform=log1p --merge-into main --tag feature-eng-v2 --delete-branch

Prints one JSON line at the end: branch, source commit, commit, merge commit, tag, tables
written with their row counts. A failed validation commits nothing, keeps the branch for
inspection and exits 2.
"""

from __future__ import annotations

import sys

from mlv_spark.cli import Job, add_pipeline_arguments, job_parser, parse_params, run
from mlv_spark.workflows.feature_pipeline import load_pipeline, plan_pipeline, run_pipeline


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    add_pipeline_arguments(parser, "--pipeline")
    args = parser.parse_args(argv)
    job = Job(args, "feature_pipeline")
    loaded = load_pipeline(args.pipeline, job.settings.code.pipelines, parse_params(args.param),
                           args.feature_repo or job.settings.code.feature_repo)
    plan = plan_pipeline(job.lakefs, loaded, catalog=job.catalog_type, experiment=args.experiment or f"pipeline-{loaded.pipeline.name}",
                         source_ref=args.source_ref, merge_into=args.merge_into, tag=args.tag,
                         delete_branch=args.delete_branch)
    result = run_pipeline(job.spark, job.tables, job.lakefs, loaded, plan, code_root=job.settings.root)
    print(result.to_json())
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
