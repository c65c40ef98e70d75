"""List and delete experiment branches by prefix, age and merged state. A dry run by default:
it prints what it would do. Never touches the default branch, protected branches or tags;
unmerged work is kept unless --force.

Example:
  ./spark-submit.sh jobs/cleanup_branches.py                       # report on exp-* branches
  ./spark-submit.sh jobs/cleanup_branches.py --older-than-days 7 --delete
"""

from __future__ import annotations

import json
import math
import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.errors import InvalidInputError
from mlv_spark.lifecycle.cleanup import apply_cleanup, as_dicts, plan_cleanup


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0], lakefs=False)
    parser.add_argument("--repository", help="lakeFS repository (default: the profile's)")
    parser.add_argument("--prefix", default=None, help="branches starting with this (default: the experiment prefix, exp-)")
    parser.add_argument("--target", default=None, help="the branch merged work reaches (default: the default branch)")
    parser.add_argument("--older-than-days", type=float, default=0.0, help="only branches whose head is older")
    parser.add_argument("--delete", action="store_true", help="delete (without it: a dry run)")
    parser.add_argument("--force", action="store_true", help="also delete branches holding unmerged work")
    args = parser.parse_args(argv)
    job = Job(args, "cleanup_branches")
    lakefs = job.lakefs
    prefix = args.prefix if args.prefix is not None else job.settings.lakefs.experiment_prefix
    if not prefix:
        raise InvalidInputError("--prefix is empty: name the branches to clean up, e.g. --prefix exp-")
    if not (0 <= args.older_than_days < math.inf):  # NaN compares false with everything
        raise InvalidInputError(f"--older-than-days {args.older_than_days} must be a number of days >= 0, e.g. --older-than-days 7")
    target = args.target or lakefs.default_branch
    if not lakefs.branch_exists(target):
        raise InvalidInputError(f"--target {target!r}: no such branch in {lakefs.repository}")
    reports = plan_cleanup(lakefs, prefix=prefix, target=target, older_than_days=args.older_than_days, force=args.force)
    print(f"{'branch':<40} {'head':<12}  {'age':>9}  {'state':<9} {'action':<6} reason")
    for report in reports:
        print(report.row())
    deleted = apply_cleanup(lakefs, reports) if args.delete else []
    if not args.delete and any(r.action == "delete" for r in reports):
        print("dry run: nothing was deleted; pass --delete to delete the branches marked 'delete'")
    print(json.dumps({"repository": lakefs.repository, "prefix": prefix, "dry_run": not args.delete,
                      "deleted": deleted, "branches": as_dicts(reports)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
