"""Print the lineage of a registered model version or of a training run, as a readable tree (or JSON).

Example:
  ./spark-submit.sh jobs/lineage.py --model-name fraud-detector --alias champion
  ./spark-submit.sh jobs/lineage.py --run-id <run id> --json
"""

from __future__ import annotations

import sys

from mlv_spark.cli import Job, job_parser, run
from mlv_spark.errors import InvalidInputError
from mlv_spark.lineage.mlflow import client, find_model_version, model_version_lineage, read_run_lineage
from mlv_spark.lineage.tree import render_tree


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0], lakefs=False)
    parser.add_argument("--model-name")
    parser.add_argument("--version")
    parser.add_argument("--alias")
    parser.add_argument("--run-id")
    parser.add_argument("--json", action="store_true", help="the lineage record as JSON")
    args = parser.parse_args(argv)
    if bool(args.run_id) == bool(args.model_name):
        raise InvalidInputError("name either --model-name (with --version or --alias) or --run-id")
    job = Job(args, "lineage")
    tracking = client(job.settings.mlflow.tracking_uri)
    if args.run_id:
        lineage, title = read_run_lineage(tracking, args.run_id), f"run {args.run_id}"
    else:
        model = find_model_version(tracking, args.model_name, args.version, args.alias)
        lineage = model_version_lineage(tracking, model)
        title = f"model {model.name} version {model.version} (run {model.run_id})"
    print(lineage.to_json() if args.json else render_tree(lineage, title))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
