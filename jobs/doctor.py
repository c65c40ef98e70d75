"""Check a lakeFS repository for the strategy's anti-patterns: separate train/val/test tables,
branches used as permanent version markers, transform code stored in lakeFS, lineage that
names an Iceberg snapshot without a lakeFS commit — and, as a retention guard, tags of registered
models whose data a garbage-collection rule would remove. Explains each finding and its fix;
exits 3 when there is any, 0 when the repository is clean.

Example:
  ./spark-submit.sh jobs/doctor.py --ref main
"""

from __future__ import annotations

import json
import math
import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.errors import InvalidInputError
from mlv_spark.lifecycle.doctor import as_dicts, examine

FINDINGS_EXIT_CODE = 3


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0], lakefs=False)
    parser.add_argument("--repository", help="lakeFS repository (default: the profile's)")
    parser.add_argument("--ref", default=None, help="the ref to examine (default: the default branch)")
    parser.add_argument("--stale-days", type=float, default=30.0,
                        help="an unmerged branch older than this is a version marker (default 30)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not read the lineage logged in MLflow runs")
    args = parser.parse_args(argv)
    if not (0 <= args.stale_days < math.inf):  # NaN compares false with everything
        raise InvalidInputError(f"--stale-days {args.stale_days} must be a number of days >= 0, e.g. --stale-days 7")
    job = Job(args, "doctor")
    ref = args.ref or job.lakefs.default_branch
    job.lakefs.resolve(ref)
    lineage, promoted = [], []
    if not args.no_mlflow:
        from mlv_spark.lineage.mlflow import client, lineage_records, promoted_tags

        tracking = client(job.settings.mlflow.tracking_uri)
        lineage = [(where, record) for where, record in lineage_records(tracking)
                   if record.get("lakefs_repository") in (None, job.lakefs.repository)]
        promoted = [(where, tag) for where, repository, tag in promoted_tags(tracking) if repository == job.lakefs.repository]
    findings, walked = examine(job.lakefs, ref, stale_days=args.stale_days, lineage=lineage, promoted=promoted)
    for finding in findings:
        print(finding.render())
    tables = ", ".join(f"{p} ({f})" for p, f in sorted(walked.tables.items())) or "none"
    print(f"examined lakefs://{job.lakefs.repository}/{ref}: tables {tables}; {len(walked.manifests)} lineage "
          f"manifest(s), {len(lineage)} MLflow run(s) with lineage; {len(findings)} finding(s)" + ("; the walk stopped early (a large tree)" if walked.truncated else ""))
    print(json.dumps({"repository": job.lakefs.repository, "ref": ref, "findings": as_dicts(findings),
                      "tables": walked.tables, "truncated": walked.truncated}, sort_keys=True))
    return FINDINGS_EXIT_CODE if findings else 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
