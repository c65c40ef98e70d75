"""Land raw data on lakeFS through an experiment branch and a merge: a generator (a pipeline with no
inputs, e.g. examples/raw/card_transactions.py) run like a feature pipeline.

Example:
  ./spark-submit.sh jobs/ingest.py --generator card_transactions --param users=5000 --param days=90 \\
      --experiment ingest-2024q1 --merge-into main --tag raw-2024q1 --delete-branch

Prints one JSON line at the end (branch, commits, tag, tables written with row counts).
"""

from __future__ import annotations

import sys

from mlv_spark.cli import Job, add_pipeline_arguments, job_parser, parse_params, run
from mlv_spark.errors import InvalidInputError
from mlv_spark.workflows.feature_pipeline import load_pipeline, plan_pipeline, run_pipeline


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    add_pipeline_arguments(parser, "--generator")
    args = parser.parse_args(argv)
    job = Job(args, "ingest")
    loaded = load_pipeline(args.pipeline, job.settings.code.pipelines, parse_params(args.param),
                           args.feature_repo or job.settings.code.feature_repo)
    if loaded.pipeline.inputs:
        raise InvalidInputError(f"--generator {args.pipeline!r} reads tables {list(loaded.pipeline.inputs)}; "
                                "generators read nothing (run it with jobs/feature_pipeline.py)")
    plan = plan_pipeline(job.lakefs, loaded, catalog=job.catalog_type, experiment=args.experiment or f"ingest-{loaded.pipeline.name}",
                         source_ref=args.source_ref, merge_into=args.merge_into, tag=args.tag,
                         delete_branch=args.delete_branch)
    result = run_pipeline(job.spark, job.tables, job.lakefs, loaded, plan, code_root=job.settings.root)
    print(result.to_json())
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
