"""Train a model on an ephemeral training set read at a pinned lakeFS commit, and log its lineage,
metrics and model to MLflow.

Example:
  ./spark-submit.sh jobs/train.py --feature-service fraud_model --ref feature-eng-v2 \\
      --split-version v1_stratified_80_10_10 --label is_fraud --model-name fraud-detector

The training and validation rows are built in the job and never written; the run records
where they came from (data/* params, feast.* tags, one dataset input per split with our content
fingerprint, lineage/lineage.json and lineage/lineage_card.html). Prints one JSON line with the
run id.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlv_spark.cli import Job, add_training_set_arguments, job_parser, run
from mlv_spark.errors import InvalidInputError
from mlv_spark.lineage.mlflow import client
from mlv_spark.trainer import DEFAULT_TRAINER, load_trainer
from mlv_spark.workflows.provenance import require_committed
from mlv_spark.workflows.train import train_model
from mlv_spark.workflows.training_set import TrainingSetRequest


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    add_training_set_arguments(parser, splits_default=None)
    parser.add_argument("--train-split", default="train", help="split the model is fit on (default train)")
    parser.add_argument("--val-split", default="val", help="split it is evaluated on (default val)")
    parser.add_argument("--model-name", default=None, help="the registered model this run is meant for (promote registers)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: the profile's [mlflow] experiment)")
    parser.add_argument("--trainer", default=DEFAULT_TRAINER, help=f"module:function (default {DEFAULT_TRAINER})")
    args = parser.parse_args(argv)

    job = Job(args, "train")
    trainer = load_trainer(args.trainer, job.settings.code.pipelines)
    if len(args.label) != 1:
        raise InvalidInputError(f"training needs exactly one --label (the target); got {args.label or 'none'}")
    client(job.settings.mlflow.tracking_uri)  # fail fast on an unreachable MLflow, before Spark starts
    job.lakefs.resolve(args.ref)
    feature_repo = Path(args.feature_repo or job.settings.code.feature_repo or "feature_repo")
    require_committed(feature_repo, allow_dirty=args.allow_dirty)
    request = TrainingSetRequest(
        feature_repo=feature_repo,
        features=args.feature_service or tuple(f.strip() for f in args.features.split(",") if f.strip()),
        ref=args.ref, split_version=args.split_version, splits=(args.train_split, args.val_split),
        labels=tuple(args.label), full_feature_names=args.full_feature_names)
    outcome = train_model(
        job.spark, job.tables, job.lakefs, request, trainer=trainer, tracking_uri=job.settings.mlflow.tracking_uri,
        experiment=args.experiment or job.settings.mlflow.experiment, train_split=args.train_split,
        val_split=args.val_split, model_name=args.model_name, code_root=job.settings.root,
        lakefs_ui=job.lakefs_ui(args.ref))
    print(json.dumps(outcome.summary(), sort_keys=True))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
