"""Train a model on an ephemeral training set and log what made it to MLflow.

The training and validation rows are computed at the pinned commit (`compute_training_set`),
kept in Spark's memory for the job (never written), fingerprinted per split, and handed to the
trainer. Every check and the fingerprint come before the MLflow run is created, so bad input
leaves no run behind; then the run gets the lineage (`mlv_spark.lineage.mlflow`), the trainer's
parameters and metrics, and the model with its signature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.models import infer_signature
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlv_spark.catalogs import Tables
from mlv_spark.errors import InvalidInputError
from mlv_spark.fingerprint import content_fingerprint
from mlv_spark.lakefs import LakeFS
from mlv_spark.lineage.mlflow import log_lineage, run_url
from mlv_spark.lineage.record import DataLineage
from mlv_spark.log import get_logger
from mlv_spark.trainer import Trainer
from mlv_spark.workflows.training_set import TrainingSetRequest, compute_training_set, lineage_of

log = get_logger("mlv_spark.train")
SIGNATURE_ROWS = 50


@dataclass
class TrainOutcome:
    run_id: str
    experiment: str
    run_url: str
    metrics: dict[str, float]
    lineage: DataLineage
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "experiment": self.experiment, "run_url": self.run_url, "metrics": self.metrics,
                "lakefs_ref": self.lineage.lakefs_ref, "lakefs_commit": self.lineage.lakefs_commit,
                "split_version": self.lineage.split_version,
                "splits": {k: {"rows": v.rows, "fingerprint": v.fingerprint} for k, v in self.lineage.splits.items()},
                "seconds": self.seconds}


def train_model(spark: SparkSession, tables: Tables, lakefs: LakeFS, request: TrainingSetRequest, *,
                trainer: Trainer, tracking_uri: str, experiment: str, train_split: str = "train",
                val_split: str = "val", model_name: str | None = None, code_root: Path,
                lakefs_ui: str | None = None) -> TrainOutcome:
    """Fit `trainer` on the `train_split` rows, evaluate on `val_split`; one MLflow run."""
    if len(request.labels) != 1:
        raise InvalidInputError(f"training needs exactly one --label (the target); got {list(request.labels) or 'none'}")
    if train_split == val_split:
        raise InvalidInputError(f"--train-split and --val-split are both {train_split!r}; name two splits")
    from mlv_spark.lineage.mlflow import client as mlflow_client

    started = time.monotonic()
    seconds: dict[str, float] = {}
    tracking = mlflow_client(tracking_uri)  # checked before any Spark work: an outage is an error now
    commit = lakefs.resolve(request.ref)
    kind = lakefs.ref_kind(request.ref)
    mark = time.monotonic()
    computed = compute_training_set(spark, tables, lakefs, request, commit)
    label = request.labels[0]
    data = computed.df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        fingerprint = content_fingerprint(data, count_by="split")  # also materializes the cache
        seconds["training_set"] = round(time.monotonic() - mark, 3)  # planned, built and fingerprinted
        missing = [s for s in (train_split, val_split) if not fingerprint.counts.get(s)]
        if missing:
            raise InvalidInputError(f"split(s) {missing} of {request.split_version!r} hold no rows at {commit[:12]}")
        mark = time.monotonic()
        lineage = lineage_of(computed, fingerprint, tables, lakefs, code_root=code_root, ref_kind=kind).validate()
        seconds["lineage_record"] = round(time.monotonic() - mark, 3)

        mlflow.set_tracking_uri(tracking_uri)
        experiment_id = _experiment_id(tracking, experiment)
        run = tracking.create_run(experiment_id, run_name=f"{request.feature_service or 'train'}@{request.split_version}",
                                  tags={"mlv.model_name": model_name or ""})
        run_id = run.info.run_id
        status = "FAILED"
        try:
            mark = time.monotonic()
            log_lineage(tracking, run_id, lineage, schema=data.schema, experiment=experiment, lakefs_ui=lakefs_ui)
            seconds["lineage_logging"] = round(time.monotonic() - mark, 3)
            features = computed.feature_columns
            mark = time.monotonic()
            result = trainer(data.where(F.col("split") == train_split), data.where(F.col("split") == val_split),
                             features=features, label=label)
            seconds["fit"] = round(time.monotonic() - mark, 3)
            mark = time.monotonic()
            with mlflow.start_run(run_id=run_id):
                mlflow.log_params({f"trainer/{k}": v for k, v in result.params.items()})
                mlflow.log_metrics(dict(result.metrics))
                # features as doubles in the signature: an integer column cannot hold a missing value
                sample = data.where(F.col("split") == val_split).select(
                    *[F.col(f"`{f}`").cast("double") for f in features]).limit(SIGNATURE_ROWS).toPandas()
                predictions = result.model.transform(spark.createDataFrame(sample)).select("prediction").toPandas()
                # explicit requirements: inferring them would load the model in a new Python process
                # and Spark session (half a minute)
                mlflow.spark.log_model(result.model, "model", signature=infer_signature(sample, predictions),
                                       input_example=sample.head(3), pip_requirements=model_requirements())
            seconds["model_logging"] = round(time.monotonic() - mark, 3)
            seconds["total"] = round(time.monotonic() - started, 3)
            tracking.log_batch(run_id, metrics=[
                Metric(key, value, int(time.time() * 1000), 0) for key, value in (
                    ("mlv.lineage_seconds", seconds["lineage_record"] + seconds["lineage_logging"]),
                    ("mlv.training_set_seconds", seconds["training_set"]), ("mlv.job_seconds", seconds["total"]))])
            status = "FINISHED"  # the run is complete before it is marked so
        finally:
            tracking.set_terminated(run_id, status=status)
    finally:
        data.unpersist()
    log.info("train: run %s, %s, in %.1fs (lineage %.2fs)", run_id,
             ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()), seconds["total"],
             seconds["lineage_record"] + seconds["lineage_logging"])
    url = run_url(tracking_uri, experiment_id, run_id)
    log.info("train: MLflow run %s", url)
    return TrainOutcome(run_id, experiment, url, dict(result.metrics), lineage, seconds)


def model_requirements() -> list[str]:
    """What serving a Spark MLlib model needs: PySpark and MLflow at the versions that logged it."""
    import pyspark

    return [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}"]


def _experiment_id(tracking, name: str) -> str:
    found = tracking.get_experiment_by_name(name)
    return found.experiment_id if found is not None else tracking.create_experiment(name)
