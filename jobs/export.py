"""Export a tagged commit's tables to a plain location for readers without lakeFS: Parquet per
table under <to>/<namespace>/<table>/, each verified against the tag by content fingerprint,
and <to>/_mlv_export.json (repository, tag, commit, row counts, fingerprints) written last.

Example:
  ./spark-submit.sh jobs/export.py --ref feature-eng-v2 --to /data/exports/feature-eng-v2
  ./spark-submit.sh jobs/export.py --ref feature-eng-v2 --table features.user_txn_stats --to s3://analytics/fe-v2
"""

from __future__ import annotations

import json
import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.workflows.export import plan_export, run_export


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="a tag (or a commit id) to export; branches move and are refused")
    parser.add_argument("--to", required=True, help="an empty folder outside lakeFS (local, hdfs://, s3:// of another bucket, …)")
    parser.add_argument("--table", action="append", default=[], help="namespace.table (repeatable; default: every table)")
    parser.add_argument("--overwrite", action="store_true", help="replace what the folder holds")
    args = parser.parse_args(argv)
    job = Job(args, "export")
    fmt = "delta" if "delta" in job.catalog_type else "iceberg"
    plan = plan_export(job.lakefs, args.ref, args.to, args.table, table_format=fmt, overwrite=args.overwrite)  # before Spark starts
    result = run_export(job.spark, job.tables, job.lakefs, plan)
    print(f"exported {len(result.tables)} table(s) of {plan.ref} ({plan.commit[:12]}) to {plan.to}"
          + (" (already there: no-op)" if result.noop else ", each verified by fingerprint"))
    print(json.dumps(result.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
