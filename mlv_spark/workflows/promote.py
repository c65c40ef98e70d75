"""Promote a training run: tag the exact lakeFS commit its data was read at, register the model
version, copy the lineage onto it, set an alias.

The seed tags `main`, which is wrong once `main` has moved: this tags the commit the run logged.
Everything is checked before anything is written: the run and its lineage, the commit, the tag
(free, or already at that commit: tags never move), the model and alias names. Promoting the
same run twice is a no-op (the same tag, the same model version).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlv_spark.errors import InvalidInputError
from mlv_spark.lakefs import LakeFS, validate_tag_name
from mlv_spark.lineage.mlflow import copy_to_model_version, read_run_lineage, write_artifacts
from mlv_spark.lineage.record import DataLineage
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.promote")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")


@dataclass
class Promotion:
    model_name: str
    version: str
    alias: str | None
    tag: str
    lakefs_repository: str
    lakefs_commit: str
    run_id: str
    registered: bool  # False: this run was registered before (a no-op)
    tagged: bool  # False: the tag was there, at this commit
    alias_moved_from: str | None = None  # the version the alias pointed at before, when it moved

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def check_names(model_name: str, alias: str | None, tag: str) -> None:
    if not _MODEL_NAME.match(model_name or ""):
        raise InvalidInputError(f"--model-name {model_name!r}: letters, digits, '_', '-' and '.', e.g. fraud-detector")
    if alias is not None and (not _ALIAS.match(alias) or re.fullmatch(r"v\d+|latest", alias, re.I)):
        raise InvalidInputError(f"--alias {alias!r}: letters, digits, '_' and '-', not 'latest' or v<number>, "
                                "e.g. champion")
    validate_tag_name(tag)


def promote(mlflow_client: MlflowClient, lakefs_for: Any, *, run_id: str, tag: str, model_name: str,
            alias: str | None = None, lakefs_ui: str | None = None) -> Promotion:
    """See the module doc. `lakefs_for(repository)` gives the lakeFS client of the run's repository."""
    check_names(model_name, alias, tag)
    lineage = read_run_lineage(mlflow_client, run_id)
    _check_trained(mlflow_client, run_id)
    lakefs: LakeFS = lakefs_for(lineage.lakefs_repository)
    commit = lakefs.resolve(lineage.lakefs_commit)  # the commit still exists
    existing_tag = lakefs.check_tag(tag, commit)  # a tag at another commit is refused here
    model = _registered(mlflow_client, model_name, run_id)
    moved_from = _alias_target(mlflow_client, model_name, alias)

    tagged = existing_tag is None
    lakefs.tag(tag, commit)
    registered = model is None
    if model is None:
        model = _register(mlflow_client, model_name, run_id)
    promoted = DataLineage.from_dict({**lineage.to_dict(), "lakefs_tag": tag})
    copy_to_model_version(mlflow_client, model, promoted)
    if alias and moved_from != str(model.version):
        if moved_from is not None:
            log.info("promote: alias %s of %s moves from version %s to %s", alias, model_name, moved_from,
                     model.version)
        mlflow_client.set_registered_model_alias(model_name, alias, model.version)
    mlflow_client.set_tag(run_id, "mlv.promoted", f"{model_name}/{model.version} tag {tag}")
    experiment = mlflow_client.get_experiment(mlflow_client.get_run(run_id).info.experiment_id).name
    write_artifacts(mlflow_client, run_id, promoted, experiment=experiment, model=model_name,
                    model_version=str(model.version), alias=alias,
                    lakefs_ui=lakefs_ui.replace("{repo}", lineage.lakefs_repository) if lakefs_ui else None)
    log.info("promote: %s version %s%s, lakeFS tag %s -> %s", model_name, model.version,
             f" (@{alias})" if alias else "", tag, commit[:12])
    return Promotion(model_name, str(model.version), alias, tag, lineage.lakefs_repository, commit, run_id,
                     registered, tagged, moved_from if alias and moved_from != str(model.version) else None)


def _check_trained(mlflow_client: MlflowClient, run_id: str) -> None:
    """The run finished and logged a model: otherwise nothing is tagged or registered."""
    run = mlflow_client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise InvalidInputError(f"MLflow run {run_id!r} is {run.info.status}, not FINISHED: promote a run whose "
                                "training finished (rerun jobs/train.py)")
    if run.outputs and run.outputs.model_outputs:  # a model logged as an MLflow 3 LoggedModel
        return
    if not any(a.path == "model/MLmodel" for a in mlflow_client.list_artifacts(run_id, "model")):
        raise InvalidInputError(f"MLflow run {run_id!r} logged no model: promote a run of jobs/train.py")


def _registered(mlflow_client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version of model `name` registered from this run, if any (an outage is not 'none')."""
    try:
        # by run alone: Unity Catalog's registry (Databricks) takes one condition per search
        found = [v for v in mlflow_client.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return sorted(found, key=lambda v: int(v.version))[0] if found else None


def _alias_target(mlflow_client: MlflowClient, name: str, alias: str | None) -> str | None:
    """The version `alias` points at today, if it exists."""
    if not alias:
        return None
    try:
        return str(mlflow_client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _register(mlflow_client: MlflowClient, name: str, run_id: str) -> ModelVersion:
    """A new version of model `name` from the model the run logged (waits until it is ready)."""
    mlflow.set_tracking_uri(mlflow_client.tracking_uri)
    registered = mlflow.register_model(f"runs:/{run_id}/model", name, await_registration_for=120)
    return mlflow_client.get_model_version(name, registered.version)
