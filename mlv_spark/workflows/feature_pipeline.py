"""Run a feature pipeline on an experiment branch: read its inputs at the branch, write its
outputs (replacing them, so a rerun converges), validate them against the Feast views they
feed, then commit → merge → tag → delete through `mlv_spark.lifecycle`.

Everything that can be checked before a write is: the pipeline and its parameters, the Feast
views it names, its inputs at the source commit, and the lifecycle's plan (names, branch, tag).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession

from mlv_spark import lifecycle
from mlv_spark.catalogs import Tables
from mlv_spark.errors import CatalogError, FeatureDefinitionError, InvalidInputError
from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger
from mlv_spark.modules import load_module
from mlv_spark.pipeline import (
    Pipeline,
    PipelineContext,
    check_outputs,
    check_pipeline,
    contract_of,
    output_stats,
    validate_output,
)
from mlv_spark.training import load_feature_repo
from mlv_spark.training.feast_repo import FeatureRepo
from mlv_spark.workflows.provenance import git_state

log = get_logger("mlv_spark.pipeline")


@dataclass(frozen=True)
class LoadedPipeline:
    pipeline: Pipeline
    source: Path
    params: dict[str, Any]
    feature_repo: FeatureRepo | None


def load_pipeline(name: str, search: Sequence[str | Path], given_params: Mapping[str, str],
                  feature_repo: str | Path | None) -> LoadedPipeline:
    """The pipeline `name` (see `mlv_spark.modules.load_module`), its parameters, and the Feast
    repo its outputs are checked against — every view it names must be defined there."""
    module = load_module(name, search, what="pipeline")
    source = Path(getattr(module, "__file__", name))
    pipeline = check_pipeline(module, str(source))
    params = pipeline.resolve_params(given_params)
    views = sorted({v for o in pipeline.outputs for v in o.feature_views})
    repo = None
    if views:
        if feature_repo is None:
            raise InvalidInputError(
                f"pipeline {pipeline.name!r} feeds Feast views {views}: name the feature repo with --feature-repo "
                "or [code] feature_repo in the profile")
        repo = load_feature_repo(feature_repo)
        missing = [v for v in views if v not in repo.feature_views]
        if missing:
            raise FeatureDefinitionError(
                f"pipeline {pipeline.name!r} feeds views {missing} that the feature repo {repo.root} does not define; "
                f"it defines {sorted(repo.feature_views)}")
    return LoadedPipeline(pipeline, source, params, repo)


def plan_pipeline(lakefs: LakeFS, loaded: LoadedPipeline, *, catalog: str, experiment: str,
                  source_ref: str | None = None, merge_into: str | None = None, tag: str | None = None,
                  delete_branch: bool = False) -> lifecycle.ExperimentPlan:
    """The lifecycle's plan for this pipeline run: every name, ref and tag checked (no Spark needed)."""
    # the code is part of the work: fixing a pipeline and rerunning it with the same parameters runs it again
    code = hashlib.sha256(loaded.source.read_bytes()).hexdigest()[:16] if loaded.source.is_file() else ""
    return lifecycle.plan(lakefs, experiment=experiment, owner=f"pipeline:{loaded.pipeline.name}",
                          params={"params": loaded.params, "catalog": catalog, "code": code}, source_ref=source_ref,
                          merge_into=merge_into, tag=tag, delete_branch=delete_branch)


def run_pipeline(
    spark: SparkSession,
    tables: Tables,
    lakefs: LakeFS,
    loaded: LoadedPipeline,
    plan: lifecycle.ExperimentPlan,
    *,
    code_root: Path | None = None,
) -> lifecycle.ExperimentResult:
    """Run the pipeline through the lifecycle as `plan` says; returns its summary."""
    pipeline = loaded.pipeline
    missing = [name for name in pipeline.inputs if not tables.exists(name, plan.source_commit)]
    if missing and plan.needs_write:
        raise CatalogError(
            f"pipeline {pipeline.name!r} reads {missing}, which do not exist at {plan.source_ref} "
            f"({plan.source_commit[:12]}); ingest them first (jobs/ingest.py)")
    stats: dict[str, tuple[Any, dict[str, int]]] = {}

    def read(branch: str):
        def reader(name: str) -> DataFrame:
            if name not in pipeline.inputs:
                raise InvalidInputError(f"pipeline {pipeline.name!r} reads {name!r}, which it does not declare "
                                        f"as an input; add it to inputs={list(pipeline.inputs)}")
            return tables.read(name, branch)
        return reader

    def write(branch: str) -> Mapping[str, Any]:
        frames = pipeline.build(PipelineContext(loaded.params, read(branch), spark))
        check_outputs(pipeline, frames)
        rows = {}
        for output in pipeline.outputs:
            tables.write(frames[output.table], output.table, branch, mode="overwrite", partition_by=output.partition_by)
            written = tables.read(output.table, branch)
            stats[output.table] = (written.schema, output_stats(written))
            rows[output.table] = stats[output.table][1]["__rows__"]
            log.info("pipeline %s: wrote %s (%d rows)", pipeline.name, output.table, rows[output.table])
        return {"tables": rows}

    def validate(branch: str, written: Mapping[str, Any]) -> list[str]:
        repo = None
        if loaded.feature_repo is not None:  # inference (if a view needs any) reads the written tables
            repo = loaded.feature_repo.with_schema_reader(
                lambda source: _written_columns(tables, branch, source))
        problems = []
        for output in pipeline.outputs:
            contracts = [contract_of(repo.view(v)) for v in output.feature_views] if repo is not None else []
            schema, counts = stats[output.table]
            problems += validate_output(output, schema, counts, contracts)
        return problems

    code = git_state(code_root or loaded.source.parent)
    metadata = {
        "mlv.kind": "feature_pipeline", "pipeline": pipeline.name, "pipeline_source": str(loaded.source.name),
        "code_commit": code.commit, "code_dirty": str(code.dirty).lower(),
        "params": json.dumps(loaded.params, sort_keys=True), "source_ref": plan.source_ref,
        "source_commit": plan.source_commit, "catalog": tables.catalog.type_name,
    }
    return lifecycle.run(lakefs, plan, write, validate=validate, message=f"pipeline {pipeline.name}", metadata=metadata)


def _written_columns(tables: Tables, branch: str, source: Any):
    from mlv_spark.training.sources import SourceColumns

    table = getattr(source, "table", None)
    if not table:
        raise FeatureDefinitionError(f"source {getattr(source, 'name', source)!r} is not a catalog table")
    df = tables.read(table, branch)
    times = frozenset(f.name for f in df.schema.fields if f.dataType.typeName() in ("timestamp", "timestamp_ntz"))
    return SourceColumns(tuple((f.name, f.dataType) for f in df.schema.fields), times)
