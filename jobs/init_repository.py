"""Create the lakeFS repository if needed and protect its default branch: from then on lakeFS
itself refuses direct writes and commits on `main`; changes reach it only by merges.

Example:
  ./spark-submit.sh jobs/init_repository.py            # the profile's repository
  ./spark-submit.sh jobs/init_repository.py --repository ml-data --storage-namespace s3://bucket/ml-data

Prints one JSON line: repository, whether it was created, the protected branches.
"""

from __future__ import annotations

import json
import sys

from mlv_spark.cli import Job, job_parser, run


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0], lakefs=False)
    parser.add_argument("--repository", help="lakeFS repository (default: the profile's)")
    parser.add_argument("--storage-namespace", help="where a new repository keeps its objects "
                                                    "(default: the profile's [lakefs] storage_namespace)")
    parser.add_argument("--no-protect", action="store_true", help="leave the default branch unprotected")
    args = parser.parse_args(argv)
    job = Job(args, "init_repository")
    lakefs = job.lakefs
    created = lakefs.ensure_repository(args.storage_namespace)
    if not args.no_protect:
        lakefs.protect_branch(lakefs.default_branch)
    print(json.dumps({"repository": lakefs.repository, "created": created, "default_branch": lakefs.default_branch,
                      "protected": lakefs.protected_branches(), "head": lakefs.resolve(lakefs.default_branch)},
                     sort_keys=True))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
