"""Promote a training run: tag the exact lakeFS commit it logged, register the model version, copy
the lineage onto it as tags, and set an alias (MLflow aliases, not the deprecated stages).

Example:
  ./spark-submit.sh jobs/promote.py --run-id <run id> --tag model-fraud-detector-1-data \\
      --model-name fraud-detector --alias champion

A tag that exists at another commit is refused (tags never move); promoting the same run again
is a no-op. Prints one JSON line: model, version, alias, tag, commit.
"""

from __future__ import annotations

import json
import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.lakefs import LakeFS
from mlv_spark.lineage.mlflow import client
from mlv_spark.workflows.promote import check_names, promote


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0], lakefs=False)
    parser.add_argument("--run-id", required=True, help="the MLflow run of jobs/train.py")
    parser.add_argument("--tag", required=True, help="lakeFS tag for the run's data commit, e.g. model-fraud-v2.3.0-data")
    parser.add_argument("--model-name", required=True, help="the registered model, e.g. fraud-detector")
    parser.add_argument("--alias", default=None, help="an alias for the new version, e.g. champion")
    args = parser.parse_args(argv)
    check_names(args.model_name, args.alias, args.tag)
    job = Job(args, "promote")
    settings = job.settings

    def lakefs_for(repository: str) -> LakeFS:
        return LakeFS(settings.lakefs, repository)

    promotion = promote(client(settings.mlflow.tracking_uri), lakefs_for, run_id=args.run_id, tag=args.tag,
                        model_name=args.model_name, alias=args.alias,
                        lakefs_ui=f"{settings.lakefs.endpoint}/repositories/{{repo}}/objects?ref={args.tag}")
    print(json.dumps(promotion.summary(), sort_keys=True))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
