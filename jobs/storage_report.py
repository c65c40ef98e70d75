"""Measure what versioning costs in storage: for each ref (default: main, every tag, every
experiment branch) the bytes a reader sees, the bytes stored once for all of them, and the bytes
unique to each ref — only changed files are stored twice. Lists each commit with lakeFS's Spark
metadata client when it is on the class path and the repository is on S3/GCS/Azure storage,
otherwise through the lakeFS API, and says which. Changes nothing.

Example:
  ./spark-submit.sh jobs/storage_report.py --ref main --ref feature-eng-v1 --ref exp-new-normalization
"""

from __future__ import annotations

import json
import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.workflows.storage_report import block_store_conf, default_refs, storage_report


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0], lakefs=False)
    parser.add_argument("--repository", help="lakeFS repository (default: the profile's)")
    parser.add_argument("--ref", action="append", default=[],
                        help="a branch, tag or commit to measure (repeatable; default: main, all tags, all experiment branches)")
    parser.add_argument("--lister", choices=["auto", "api"], default="auto",
                        help="auto: the Spark metadata client where it can read the storage, else the API; api: always the API")
    args = parser.parse_args(argv)
    job = Job(args, "storage_report")
    lakefs = job.lakefs
    refs = args.ref or default_refs(lakefs, job.settings.lakefs.experiment_prefix)
    report = storage_report(lakefs, refs, spark=(lambda: job.spark) if args.lister == "auto" else None,
                            storage_namespace=lakefs.storage_namespace(),
                            storage_conf=block_store_conf(job.settings.services))
    print(report.render())
    print(json.dumps(report.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
