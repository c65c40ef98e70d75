"""Training sets: split index rows (entity rows, with their labels) + Feast features, computed at
a pinned lakeFS commit, and — when asked — published.

`compute_training_set` is the computation, lazy and without writes (training keeps its data
ephemeral): resolve the ref to a commit → load the Feast repo and expand the requested
features → read the split registry at the commit, check the version, splits and labels → join
point-in-time (`mlv_spark.training`). `lineage_of` turns it and its fingerprint into the
`DataLineage` record. `build_training_set` publishes: check the output location (before
anything is written), write, fingerprint what was written, manifest — to a path, or to lakeFS
through an experiment branch from the output's branch (commit with the lineage as metadata →
merge → delete the branch); never a direct write to the output's branch.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from pyspark.sql import DataFrame, SparkSession

from mlv_spark import lifecycle
from mlv_spark.catalogs import Tables
from mlv_spark.errors import InvalidInputError
from mlv_spark.fingerprint import Fingerprint, content_fingerprint, schema_signature
from mlv_spark.jvm import pins
from mlv_spark.lakefs import LakeFS, LakeFSLocation, pin_path
from mlv_spark.lineage.record import DataLineage, SourceTable, SplitLineage
from mlv_spark.log import get_logger
from mlv_spark.splits.index import SPLITS_TABLE, VERSIONS_TABLE, SplitVersion
from mlv_spark.sql import path_exists, quote
from mlv_spark.training import get_historical_features, load_feature_repo, resolve_features
from mlv_spark.training.feast_repo import FeatureRepo, RequestedView
from mlv_spark.workflows.provenance import git_state
from mlv_spark.workflows.publish import put_manifest
from mlv_spark.workflows.registry import SplitRegistry

log = get_logger(__name__)
MANIFEST = "_mlv_training_set.json"
#: Paths inside a ref that a training set may never be written over.
RESERVED_PREFIXES = ("ml_datasets",)


@dataclass(frozen=True)
class TrainingSetRequest:
    """What a training set is: features of a Feast repo on the rows of some splits of a split
    version, with their labels, at a lakeFS ref."""

    feature_repo: Path
    features: str | tuple[str, ...]  # a feature service name, or view:feature references
    ref: str
    split_version: str
    splits: tuple[str, ...]
    labels: tuple[str, ...] = ()
    full_feature_names: bool = False

    @property
    def feature_service(self) -> str:
        return self.features if isinstance(self.features, str) else ""


@dataclass
class ComputedTrainingSet:
    """A training set as a lazy DataFrame, with what its lineage needs."""

    request: TrainingSetRequest
    commit: str
    df: DataFrame
    repo: FeatureRepo
    requested: list[RequestedView]
    version: SplitVersion
    entity_columns: list[str]
    feature_columns: list[str]
    source_tables: list[str]

    @property
    def feature_refs(self) -> list[str]:
        return [f"{r.name}:{f}" for r in self.requested for f in r.features]


def compute_training_set(spark: SparkSession, tables: Tables, lakefs: LakeFS, request: TrainingSetRequest,
                         commit: str | None = None, *, verify_split_version: bool = True) -> ComputedTrainingSet:
    """The training set of `request` read at `commit` (default: its ref resolved now); lazy but
    for the check that the split version's rows are those published (`verify_split_version`)."""
    commit = commit or lakefs.resolve(request.ref)

    def table_at_commit(name: str) -> str:
        table = tables.catalog.table(name, commit)
        return table.identifier or f"{table.format}.{quote(table.path or '')}"

    def path_at_commit(path: str) -> str:
        return pin_path(path, lakefs.repository, commit)

    repo = load_feature_repo(request.feature_repo, spark=spark, table_resolver=table_at_commit,
                             path_resolver=path_at_commit)
    requested = resolve_features(repo, request.features)
    join_columns = [c for r in requested for c in r.entity_keys]
    overlap = sorted(set(request.labels) & {f for r in requested for f in r.features})
    if overlap:
        raise InvalidInputError(f"label column(s) {overlap} are also requested features; a label must not be a feature")
    entities, version, _ = SplitRegistry(tables, commit).entity_rows(
        request.split_version, request.splits, [*join_columns, *request.labels], verify=verify_split_version)
    if not request.labels:
        log.info("training set without a label column: for inference-style use only (pass --label for training)")
    df = get_historical_features(
        spark, entities, feature_repo=repo, features=request.features,
        full_feature_names=request.full_feature_names, table_resolver=table_at_commit, path_resolver=path_at_commit,
    )
    sources = [t for r in requested if (t := getattr(r.view.source, "table", None))]
    return ComputedTrainingSet(
        request=request, commit=commit, df=df, repo=repo, requested=requested, version=version,
        entity_columns=list(entities.columns), feature_columns=[c for c in df.columns if c not in entities.columns],
        source_tables=list(dict.fromkeys([*sources, version.source_table, SPLITS_TABLE, VERSIONS_TABLE])),
    )


def feature_schema_hash(df: DataFrame, feature_columns: Sequence[str]) -> str:
    return hashlib.sha256(schema_signature(df.select(*feature_columns)).encode()).hexdigest()[:16]


def lineage_of(computed: ComputedTrainingSet, fingerprint: Fingerprint, tables: Tables, lakefs: LakeFS, *,
               code_root: Path, ref_kind: str | None = None) -> DataLineage:
    """The lineage record of a computed training set whose rows `fingerprint` (by split) covers."""
    request = computed.request
    feast = git_state(computed.repo.root)
    code = git_state(code_root)
    try:
        repo_path = str(computed.repo.root.resolve().relative_to(Path(code_root).resolve()))
    except ValueError:
        repo_path = str(computed.repo.root)
    kind = ref_kind or lakefs.ref_kind(request.ref)
    return DataLineage(
        lakefs_repository=lakefs.repository, lakefs_ref=request.ref, lakefs_commit=computed.commit,
        lakefs_tag=request.ref if kind == "tag" else None,
        split_version=request.split_version, split_seed=computed.version.params.seed,
        split_params_hash=computed.version.params_hash,
        feast_project=computed.repo.project, feast_repo_path=repo_path, feast_repo_commit=feast.commit,
        feast_repo_dirty=feast.dirty, feast_feature_service=request.feature_service,
        feature_refs=tuple(computed.feature_refs), feature_views=tuple(dict.fromkeys(r.view.name for r in computed.requested)),
        entity_columns=tuple(c for c in computed.entity_columns if c not in request.labels and c != "split"),
        label_columns=tuple(request.labels),
        splits={str(s): SplitLineage(fingerprint.digests[s], fingerprint.counts[s]) for s in sorted(fingerprint.counts)},
        feature_schema_hash=feature_schema_hash(computed.df, computed.feature_columns),
        full_feature_names=request.full_feature_names,
        source_tables=tuple(_source_table(tables, name, computed.commit) for name in computed.source_tables),
        code_commit=code.commit, code_dirty=code.dirty, versions=stack_versions(tables.spark),
    )


def stack_versions(spark: SparkSession) -> dict[str, str]:
    """The versions of the stack a training set was built with."""
    pinned = pins()
    versions = {"spark": spark.version, "python": sys.version.split()[0], "iceberg": pinned.get("iceberg-version", "")}
    for name, package in (("feast", "feast"), ("delta", "delta-spark"), ("mlflow", "mlflow"), ("mlv_spark", "mlv-spark")):
        try:
            versions[name] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _source_table(tables: Tables, name: str, commit: str) -> SourceTable:
    table = tables.catalog.table(name, commit)
    try:
        return SourceTable(name, table.format, **tables.catalog.version_of(tables.spark, table))
    except Exception as exc:  # noqa: BLE001 - secondary lineage: the lakeFS commit is what counts
        log.info("lineage: no table version for %s (%s)", name, str(exc).splitlines()[0][:200])
        return SourceTable(name, table.format)


@dataclass
class TrainingSetManifest:
    """A published training set: where, its fingerprint, and its lineage."""

    output: str
    output_format: str
    fingerprint: str
    row_count: int
    lineage: DataLineage
    output_commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "output_format": self.output_format, "fingerprint": self.fingerprint,
                "row_count": self.row_count, "output_commit": self.output_commit, "lineage": self.lineage.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TrainingSetManifest:
        return TrainingSetManifest(data["output"], data["output_format"], data["fingerprint"], data["row_count"],
                                   DataLineage.from_dict(data["lineage"]), data.get("output_commit"))


@dataclass(frozen=True)
class Output:
    """Where a training set goes: a lakeFS location (any scheme) or a plain path."""

    given: str
    location: LakeFSLocation | None

    @property
    def target(self) -> str:
        return self.location.s3a if self.location is not None else self.given


def check_location(location: LakeFSLocation, lakefs: LakeFS) -> None:
    """A lakeFS output names a path (not a ref's root) on a branch of this repository."""
    if location.repository != lakefs.repository:
        raise InvalidInputError(
            f"output {location.uri!r} is in repository {location.repository!r}, not {lakefs.repository!r}; "
            f"write to lakefs://{lakefs.repository}/<branch>/<path>")
    if not location.path:
        raise InvalidInputError(f"output {location.uri!r} is the root of {location.ref}; name a path, e.g. "
                                f"{location.child('training_sets/my_set').uri}")
    lakefs.require_branch(location.ref)  # a tag or a commit is read-only: said before any plan


def check_output(spark: SparkSession, lakefs: LakeFS, output: str, *, overwrite: bool,
                 source_paths: Sequence[str] = (), identity: dict[str, Any] | None = None) -> Output:
    """The output, checked before anything is written: a lakeFS location must be a path (not a
    ref's root) on a branch of this repository, outside the split index and every source of the
    request, and not inside or around another training set; an existing output is replaced only
    with `overwrite`, and only when it is a training set itself — on lakeFS only by the same one
    (`identity`: commit, split version, splits, labels, features): published ones are immutable."""
    location = LakeFSLocation.parse(output)
    if location is None:
        if path_exists(spark, output):
            if not overwrite:
                raise InvalidInputError(f"output {output!r} already exists; choose another location or pass --overwrite")
            if "://" not in output and not Path(output, MANIFEST).is_file():
                raise InvalidInputError(
                    f"output {output!r} exists and is not a training set (no {MANIFEST}); refusing to replace it")
        return Output(output, None)
    check_location(location, lakefs)
    lakefs.require_branch(location.ref)
    for reserved in (*RESERVED_PREFIXES, *source_paths):
        if location.overlaps(reserved):
            raise InvalidInputError(
                f"output {output!r} overlaps {reserved!r} (the split index or a source of this training set); "
                f"write training sets elsewhere, e.g. lakefs://{location.repository}/{location.ref}/training_sets/<name>")
    parts = location.path.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if lakefs.object_exists(location.ref, f"{parent}/{MANIFEST}"):
            raise InvalidInputError(f"output {output!r} lies inside the training set at {parent!r}; choose another path")
    existing = [path for path, _ in lakefs.objects(location.ref, location.path + "/")]
    if existing:
        own = f"{location.path}/{MANIFEST}"
        if own not in existing:
            raise InvalidInputError(
                f"output {output!r} already holds {len(existing)} object(s) that are not a training set; choose another path")
        nested = [p for p in existing if p.endswith("/" + MANIFEST) and p != own]
        if nested:
            raise InvalidInputError(f"output {output!r} contains another training set at {nested[0]!r}; choose another path")
        if not overwrite:
            raise InvalidInputError(f"output {output!r} already exists; choose another location or pass --overwrite")
        if identity is not None:  # a published training set is immutable: only the same one may replace it
            published = json.loads(lakefs.read_object(location.ref, own)).get("lineage", {})
            theirs = {"lakefs_commit": published.get("lakefs_commit"), "split_version": published.get("split_version"),
                      "splits": sorted(published.get("splits", {})), "labels": list(published.get("label_columns", [])),
                      "features": list(published.get("feature_refs", []))}
            differing = sorted(k for k in identity if identity[k] != theirs[k])
            if differing:
                raise InvalidInputError(
                    f"output {output!r} holds a published training set of other data ({', '.join(differing)} differ); "
                    "published training sets are immutable: write this one to a new path")
    return Output(output, location)


def build_training_set(
    spark: SparkSession,
    tables: Tables,
    lakefs: LakeFS,
    request: TrainingSetRequest,
    output: str,
    *,
    output_format: str = "parquet",
    overwrite: bool = False,
    commit: str | None = None,
    experiment: str | None = None,
    code_root: Path | None = None,
) -> TrainingSetManifest:
    """Compute, write and fingerprint one training set; returns its manifest (see the module doc)."""
    if output_format not in ("parquet", "delta"):
        raise InvalidInputError(f"output format {output_format!r} is not supported; use parquet or delta")
    location = LakeFSLocation.parse(output)
    if location is not None:
        check_location(location, lakefs)
    commit = commit or lakefs.resolve(request.ref)
    kind = lakefs.ref_kind(request.ref)
    started = time.monotonic()
    computed = compute_training_set(spark, tables, lakefs, request, commit)  # lazy: nothing runs or is written
    identity = {"lakefs_commit": commit, "split_version": request.split_version, "splits": sorted(request.splits),
                "labels": list(request.labels), "features": computed.feature_refs}
    plan = None
    if location is not None:
        plan = lifecycle.plan(
            lakefs, experiment=experiment or _experiment_name(location.path), owner="training_set",
            params={**identity, "path": location.path, "format": output_format},
            source_ref=location.ref, merge_into=location.ref, delete_branch=True)
    if plan is None or plan.needs_write:  # a rerun that finds its work committed or merged checks nothing again
        check_output(spark, lakefs, output, overwrite=overwrite, identity=identity,
                     source_paths=_source_paths(tables, computed.requested, lakefs.repository))
    code_root = code_root or Path(__file__).resolve().parents[2]

    def manifest_of(written: DataFrame) -> TrainingSetManifest:
        fp = content_fingerprint(written, count_by="split")
        lineage = lineage_of(computed, fp, tables, lakefs, code_root=code_root, ref_kind=kind).validate()
        return TrainingSetManifest(output, output_format, fp.digest, fp.row_count, lineage)

    if plan is None:
        computed.df.write.format(output_format).mode("overwrite").save(output)
        manifest = manifest_of(spark.read.format(output_format).load(output))
        if "://" not in output:
            Path(output, MANIFEST).write_text(manifest.to_json())
    else:
        assert location is not None  # a plan exists only for a lakeFS location
        built: list[TrainingSetManifest] = []

        def write(branch: str) -> dict:
            target = location.at(branch).s3a
            computed.df.write.format(output_format).mode("overwrite").save(target)
            built.append(manifest_of(spark.read.format(output_format).load(target)))
            put_manifest(lakefs, branch, f"{location.path}/{MANIFEST}", built[0].to_dict())
            return {"path": location.path, "rows": built[0].row_count, "fingerprint": built[0].fingerprint}

        result = lifecycle.run(lakefs, plan, write, message=f"training set {location.path}", metadata={
            "mlv.kind": "training_set", "lakefs_commit": commit, "split_version": request.split_version,
            "splits": ",".join(request.splits), "feast_feature_service": request.feature_service})
        manifest = built[0] if built else TrainingSetManifest.from_dict(json.loads(lakefs.read_object(
            result.merge_commit or result.commit, f"{location.path}/{MANIFEST}")))
        manifest.output_commit = result.merge_commit
    log.info("training set: %d rows, %d features, fingerprint %s, in %.1fs", manifest.row_count,
             len(computed.feature_columns), manifest.fingerprint[:16], time.monotonic() - started)
    return manifest


def _experiment_name(path: str) -> str:
    """The experiment branch of a training set written to `path` (letters, digits, '-', '_')."""
    slug = re.sub(r"[^-\w]+", "-", path).strip("-")[:80]
    return f"training-set-{slug}"


def _source_paths(tables: Tables, requested, repository: str) -> list[str]:
    """Paths inside a ref of the sources a request reads (catalog tables and lakeFS paths)."""
    paths = []
    for view in requested:
        source = view.view.source
        table = getattr(source, "table", None)
        if table:
            try:
                paths.append(tables.catalog.table_path(table))
            except Exception:  # noqa: BLE001 - a name the catalog cannot place overlaps nothing of ours
                pass
        location = LakeFSLocation.parse(getattr(source, "path", None) or "")
        if location is not None and location.repository == repository and location.path:
            paths.append(location.path)
    return paths
