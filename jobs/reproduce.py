"""Rebuild a registered model version's training data from its lineage alone and prove it identical.

Example:
  ./spark-submit.sh jobs/reproduce.py --model-name fraud-detector --alias champion

Reads the lineage from the model version (else its run); checks that the tag still resolves to
the logged commit; exports the Feast repo as of its logged Git commit to a temporary directory;
rebuilds every logged split at that commit; compares fingerprints and the schema hash. Exit 0
only on equality; 3 when the data is not reproducible, with a report naming what differs; 2 for
bad input.
"""

from __future__ import annotations

import json
import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.lineage.mlflow import client, find_model_version, model_version_lineage
from mlv_spark.workflows.reproduce import reproduce

NOT_REPRODUCIBLE_EXIT_CODE = 3


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0], lakefs=False)
    parser.add_argument("--model-name", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="model version number")
    which.add_argument("--alias", help="model alias, e.g. champion")
    parser.add_argument("--catalog", default="lakefs", help="catalog of the tables (default lakefs)")
    args = parser.parse_args(argv)
    job = Job(args, "reproduce")
    tracking = client(job.settings.mlflow.tracking_uri)
    model = find_model_version(tracking, args.model_name, args.version, args.alias)
    lineage = model_version_lineage(tracking, model)
    args.repository = lineage.lakefs_repository  # the job's lakeFS client and catalog follow the lineage
    tag = (model.tags or {}).get("data/lakefs_tag") or lineage.lakefs_tag
    report = reproduce(lineage, model=args.model_name, version=str(model.version), tag=tag, lakefs=job.lakefs,
                       session=lambda: (job.spark, job.tables), code_root=job.settings.root)
    print(report.render())
    print(json.dumps(report.summary(), sort_keys=True))
    return 0 if report.reproducible else NOT_REPRODUCIBLE_EXIT_CODE


if __name__ == "__main__":
    run(main, sys.argv[1:])
