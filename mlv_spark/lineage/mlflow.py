"""The one lineage writer and reader for MLflow.

A training run gets: params `data/*` (`DataLineage.to_params`), the tags of Feast's MLflow
integration (`feast.*`), one dataset input per split — a source naming the lakeFS commit and a
digest taken from *our* content fingerprint (MLflow's own Spark digest hashes the plan, not the
rows; and its Spark dataset would run the whole join again for a profile), context
`training`/`validation`/`test` — and the artifacts `lineage/lineage.json`, the card
`lineage/lineage_card.html` and `feast_features.json`. Promotion copies the lineage onto the
model version as tags. Batches respect MLflow's limits (100 params or tags per call).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.spark_dataset_source import SparkDatasetSource
from mlflow.entities import DatasetInput, InputTag, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema

from mlv_spark.errors import InvalidInputError, ServiceUnavailableError
from mlv_spark.lineage.card import render_card
from mlv_spark.lineage.record import MAX_MODEL_VERSION_TAG_VALUE, PARAM_PREFIX, SPLIT_CONTEXTS, DataLineage, digest
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.lineage")

LINEAGE_JSON = "lineage/lineage.json"
LINEAGE_CARD = "lineage/lineage_card.html"
FEAST_FEATURES = "feast_features.json"
BATCH = 100  # MLflow: at most 100 params or tags per log_batch call
_SPARK_TO_MLFLOW = {"bigint": DataType.long, "int": DataType.integer, "smallint": DataType.integer,
                    "tinyint": DataType.integer, "double": DataType.double, "float": DataType.float,
                    "string": DataType.string, "boolean": DataType.boolean, "timestamp": DataType.datetime,
                    "timestamp_ntz": DataType.datetime, "date": DataType.datetime, "binary": DataType.binary}


def client(tracking_uri: str) -> MlflowClient:
    """An MLflow client for `tracking_uri`, checked to answer (an outage is an error, not a hang)."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # jobs print their run's URL once
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # a stopped server fails in seconds, not minutes
    mlflow_client = MlflowClient(tracking_uri=tracking_uri)
    try:
        mlflow_client.search_experiments(max_results=1)
    except MlflowException as exc:
        raise ServiceUnavailableError(f"MLflow at {shown_uri(tracking_uri)} does not answer ({_first_line(exc)}); start it "
                                      "(make services-up) or set [mlflow] tracking_uri / MLV_MLFLOW_TRACKING_URI") from exc
    return mlflow_client


def mlflow_schema(schema: Any) -> Schema:
    """An MLflow schema from a Spark StructType (types MLflow lacks are logged as strings)."""
    return Schema([ColSpec(_SPARK_TO_MLFLOW.get(f.dataType.simpleString(), DataType.string), f.name)
                   for f in schema.fields])


def log_lineage(mlflow_client: MlflowClient, run_id: str, lineage: DataLineage, *, schema: Any,
                experiment: str = "", lakefs_ui: str | None = None) -> None:
    """Everything above on run `run_id`; `schema` is the training data's Spark schema."""
    lineage.validate()
    params = [Param(k, v) for k, v in lineage.to_params().items()]
    tags = [RunTag(k, v) for k, v in {**lineage.feast_tags(), "mlv.kind": "training"}.items()]
    for start in range(0, len(params), BATCH):
        mlflow_client.log_batch(run_id, params=params[start:start + BATCH])
    for start in range(0, len(tags), BATCH):
        mlflow_client.log_batch(run_id, tags=tags[start:start + BATCH])
    source = SparkDatasetSource(path=f"lakefs://{lineage.lakefs_repository}/{lineage.lakefs_commit}")
    inputs = []
    for split, facts in lineage.splits.items():
        dataset = MetaDataset(source=source, schema=mlflow_schema(schema), digest=digest(facts.fingerprint),
                              name=f"{lineage.feast_feature_service or 'features'}@{lineage.split_version}:{split}")
        context = SPLIT_CONTEXTS.get(split, split)
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]))
    mlflow_client.log_inputs(run_id, datasets=inputs)
    write_artifacts(mlflow_client, run_id, lineage, experiment=experiment, lakefs_ui=lakefs_ui)


def write_artifacts(mlflow_client: MlflowClient, run_id: str, lineage: DataLineage, *, experiment: str = "",
                    model: str | None = None, model_version: str | None = None, alias: str | None = None,
                    lakefs_ui: str | None = None) -> None:
    """lineage/lineage.json, lineage/lineage_card.html and feast_features.json (replaced when
    written again, e.g. by promotion with the model version filled in)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "lineage")
        folder.mkdir()
        (folder / "lineage.json").write_text(lineage.to_json())
        (folder / "lineage_card.html").write_text(render_card(
            lineage, run_id=run_id, experiment=experiment, model=model, model_version=model_version, alias=alias,
            lakefs_ui=lakefs_ui))
        mlflow_client.log_artifacts(run_id, str(folder), "lineage")
        features = Path(tmp, FEAST_FEATURES)
        features.write_text(json.dumps(list(lineage.feature_refs)))
        mlflow_client.log_artifact(run_id, str(features))


def read_run_lineage(mlflow_client: MlflowClient, run_id: str) -> DataLineage:
    """The lineage a run logged (its lineage.json)."""
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        raise InvalidInputError(f"MLflow run {run_id!r} not found ({_first_line(exc)}); check --run-id") from exc
    if run.data.tags.get("mlv.kind") != "training":
        raise InvalidInputError(f"MLflow run {run_id!r} logged no mlv-spark lineage (it is not a jobs/train.py run)")
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow_client.download_artifacts(run_id, LINEAGE_JSON, tmp)
        return DataLineage.from_dict(json.loads(Path(path).read_text()))


def find_model_version(mlflow_client: MlflowClient, name: str, version: str | None = None,
                       alias: str | None = None) -> ModelVersion:
    """A registered model version, by number or alias; a clear error for what does not exist."""
    if (version is None) == (alias is None):
        raise InvalidInputError("name the model version with exactly one of --version and --alias")
    try:
        if alias is not None:
            return mlflow_client.get_model_version_by_alias(name, alias)
        return mlflow_client.get_model_version(name, str(version))
    except MlflowException as exc:
        what = f"alias {alias!r}" if alias is not None else f"version {version}"
        raise InvalidInputError(f"registered model {name!r} has no {what} ({_first_line(exc)})") from exc


def copy_to_model_version(mlflow_client: MlflowClient, model: ModelVersion, lineage: DataLineage) -> None:
    """The lineage as tags of the model version: the `data/*` params, Feast's service tag, and
    the whole record as `mlv.lineage` (JSON; a record past the registry's limit is read from the
    run's lineage.json instead)."""
    tags: dict[str, str] = {**lineage.to_params(), "feast.feature_service": lineage.feast_feature_service,
                            "mlv.lineage": lineage.to_json()}
    for key, value in tags.items():
        if value and len(value) <= MAX_MODEL_VERSION_TAG_VALUE:
            mlflow_client.set_model_version_tag(model.name, model.version, key, value)


def model_version_lineage(mlflow_client: MlflowClient, model: ModelVersion) -> DataLineage:
    """The lineage of a model version: its `mlv.lineage` tag, else the lineage its run logged."""
    text = (model.tags or {}).get("mlv.lineage")
    if text:
        return DataLineage.from_dict(json.loads(text))
    if not model.run_id:
        raise InvalidInputError(f"model {model.name} version {model.version} has no lineage and no run")
    return read_run_lineage(mlflow_client, model.run_id)


def lineage_records(mlflow_client: MlflowClient, max_runs: int = 1000) -> list[tuple[str, dict[str, str]]]:
    """(where, params with the `data/` prefix dropped) of the latest runs of every experiment that
    logged data lineage of any kind (ours, or a snapshot id of their own): what the doctor checks."""
    records = []
    experiments = [e.experiment_id for e in mlflow_client.search_experiments(max_results=1000)]
    for start in range(0, len(experiments), 100):
        for found in mlflow_client.search_runs(experiments[start:start + 100], max_results=max_runs):
            params = found.data.params
            if any(k.startswith(PARAM_PREFIX) or "snapshot" in k.lower() for k in params):
                record = {k[len(PARAM_PREFIX):] if k.startswith(PARAM_PREFIX) else k: v for k, v in params.items()}
                records.append((f"MLflow run {found.info.run_id}", record))
    return records


def promoted_tags(mlflow_client: MlflowClient) -> list[tuple[str, str, str]]:
    """(model version, lakeFS repository, lakeFS tag) of every registered model version that
    names the tag of its training data (what jobs/promote.py sets)."""
    found = []
    for model in mlflow_client.search_registered_models(max_results=1000):
        for version in mlflow_client.search_model_versions(f"name = '{model.name}'", max_results=1000):
            tags = version.tags or {}
            if tags.get("data/lakefs_tag") and tags.get("data/lakefs_repository"):
                found.append((f"model {model.name} version {version.version}", tags["data/lakefs_repository"],
                              tags["data/lakefs_tag"]))
    return found


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI (for an HTTP tracking server)."""
    return f"{shown_uri(tracking_uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def shown_uri(tracking_uri: str) -> str:
    """`tracking_uri` fit to print: credentials written into it (`https://user:token@host`) are masked."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1***@", tracking_uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
