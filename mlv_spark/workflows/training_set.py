"""Build a training set: split index rows (entity rows) + Feast features, at a pinned commit.

Order of work, so that bad input writes nothing: resolve the lakeFS ref to a commit → load the
Feast repo and expand the requested features → check the output location → read the split
registry at the commit and check the split version and split names → join point-in-time
(`mlv_spark.training`, lazy) → publish: write, fingerprint what was written, manifest, and (on
lakeFS) one commit with the lineage as metadata. Everything is read at the commit, never at a
moving branch.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from pyspark.sql import DataFrame, SparkSession

from mlv_spark import lifecycle
from mlv_spark.catalogs import Tables
from mlv_spark.errors import InvalidInputError
from mlv_spark.fingerprint import content_fingerprint, schema_signature
from mlv_spark.lakefs import LakeFS, LakeFSLocation, pin_path
from mlv_spark.log import get_logger
from mlv_spark.sql import path_exists, quote
from mlv_spark.training import get_historical_features, load_feature_repo, resolve_features
from mlv_spark.training.feast_repo import FeatureRepo
from mlv_spark.workflows.provenance import feature_repo_commit
from mlv_spark.workflows.publish import put_manifest
from mlv_spark.workflows.registry import SplitRegistry

log = get_logger(__name__)
MANIFEST = "_mlv_training_set.json"
#: Paths inside a ref that a training set may never be written over.
RESERVED_PREFIXES = ("ml_datasets",)


@dataclass
class TrainingSetLineage:
    """What a training set was built from, and its content fingerprint."""

    lakefs_repository: str
    lakefs_ref: str
    lakefs_commit: str
    split_version: str
    split_seed: int
    splits: list[str]
    feast_repo_commit: str
    feast_feature_service: str
    features: list[str]
    feature_schema_hash: str
    fingerprint: str
    row_count: int
    split_counts: dict[str, int] = field(default_factory=dict)
    output: str = ""
    output_format: str = "parquet"
    output_commit: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def feature_schema_hash(df: DataFrame, feature_columns: Sequence[str]) -> str:
    return hashlib.sha256(schema_signature(df.select(*feature_columns)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Output:
    """Where a training set goes: a lakeFS location (any scheme) or a plain path."""

    given: str
    location: LakeFSLocation | None

    @property
    def target(self) -> str:
        return self.location.s3a if self.location is not None else self.given


def check_output(spark: SparkSession, lakefs: LakeFS, output: str, *, overwrite: bool,
                 source_paths: Sequence[str] = ()) -> Output:
    """The output, checked before anything is written: a lakeFS location must be a path (not a
    ref's root) on a branch of this repository, outside the split index and every source of the
    request, and not inside or around another training set; an existing output is replaced only
    with `overwrite`, and only when it is a training set itself."""
    location = LakeFSLocation.parse(output)
    if location is None:
        if path_exists(spark, output):
            if not overwrite:
                raise InvalidInputError(f"output {output!r} already exists; choose another location or pass --overwrite")
            if "://" not in output and not Path(output, MANIFEST).is_file():
                raise InvalidInputError(
                    f"output {output!r} exists and is not a training set (no {MANIFEST}); refusing to replace it")
        return Output(output, None)
    if location.repository != lakefs.repository:
        raise InvalidInputError(
            f"output {output!r} is in repository {location.repository!r}, not {lakefs.repository!r}; "
            f"write to lakefs://{lakefs.repository}/<branch>/<path>")
    if not location.path:
        raise InvalidInputError(f"output {output!r} is the root of {location.ref}; name a path, e.g. {location.child('training_sets/my_set').uri}")
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
    return Output(output, location)


def build_training_set(
    spark: SparkSession,
    tables: Tables,
    lakefs: LakeFS,
    *,
    feature_repo: str | Path,
    features: str | Sequence[str],
    ref: str,
    split_version: str,
    splits: Sequence[str],
    output: str,
    output_format: str = "parquet",
    full_feature_names: bool = False,
    overwrite: bool = False,
    commit: str | None = None,
    experiment: str | None = None,
) -> TrainingSetLineage:
    """Join and write one training set; returns its lineage (fingerprint, counts, commits).

    `ref` is recorded as given; the data is read at `commit` (default: `ref` resolved now)."""
    if output_format not in ("parquet", "delta"):
        raise InvalidInputError(f"output format {output_format!r} is not supported; use parquet or delta")
    commit = commit or lakefs.resolve(ref)

    def table_at_commit(name: str) -> str:
        table = tables.catalog.table(name, commit)
        return table.identifier or f"{table.format}.{quote(table.path or '')}"

    def path_at_commit(path: str) -> str:
        return pin_path(path, lakefs.repository, commit)

    repo: FeatureRepo = load_feature_repo(feature_repo, spark=spark, table_resolver=table_at_commit,
                                          path_resolver=path_at_commit)
    requested = resolve_features(repo, features)
    feature_refs = [f"{r.name}:{f}" for r in requested for f in r.features]
    service = features if isinstance(features, str) else ""
    destination = check_output(spark, lakefs, output, overwrite=overwrite,
                               source_paths=_source_paths(tables, requested, lakefs.repository))

    join_columns = [c for r in requested for c in r.entity_keys]
    entities, version, _ = SplitRegistry(tables, commit).entity_rows(split_version, splits, join_columns)
    started = time.monotonic()
    training = get_historical_features(
        spark, entities, feature_repo=repo, features=features, full_feature_names=full_feature_names,
        table_resolver=table_at_commit, path_resolver=path_at_commit,
    )
    feature_columns = [c for c in training.columns if c not in entities.columns]

    location = destination.location
    lineage_of = _lineage_maker(
        lakefs=lakefs, ref=ref, commit=commit, split_version=split_version, seed=version.params.seed, splits=splits,
        repo=repo, service=service, feature_refs=feature_refs, feature_columns=feature_columns, output=output,
        output_format=output_format)
    if location is None:
        training.write.format(output_format).mode("overwrite").save(destination.target)
        lineage = lineage_of(spark.read.format(output_format).load(destination.target))
        if "://" not in destination.target:
            Path(destination.target, MANIFEST).write_text(lineage.to_json())
    else:
        built: list[TrainingSetLineage] = []

        def write(branch: str) -> dict:
            target = location.at(branch).s3a
            training.write.format(output_format).mode("overwrite").save(target)
            built.append(lineage_of(spark.read.format(output_format).load(target)))
            put_manifest(lakefs, branch, f"{location.path}/{MANIFEST}", json.loads(built[0].to_json()))
            return {"path": location.path, "rows": built[0].row_count, "fingerprint": built[0].fingerprint}

        plan = lifecycle.plan(
            lakefs, experiment=experiment or _experiment_name(location.path), owner="training_set",
            params={"path": location.path, "commit": commit, "split_version": split_version, "splits": list(splits),
                    "features": feature_refs, "format": output_format},
            source_ref=location.ref, merge_into=location.ref, delete_branch=True)
        result = lifecycle.run(lakefs, plan, write, message=f"training set {location.path}", metadata={
            "mlv.kind": "training_set", "lakefs_commit": commit, "split_version": split_version,
            "splits": ",".join(splits), "feast_feature_service": service})
        lineage = built[0] if built else TrainingSetLineage(**json.loads(lakefs.read_object(
            result.merge_commit or result.commit, f"{location.path}/{MANIFEST}")))
        lineage.output_commit = result.merge_commit
    log.info("training set: %d rows, %d features, fingerprint %s, in %.1fs", lineage.row_count, len(feature_columns),
             lineage.fingerprint[:16], time.monotonic() - started)
    return lineage


def _lineage_maker(*, lakefs: LakeFS, ref: str, commit: str, split_version: str, seed: int, splits: Sequence[str],
                   repo: FeatureRepo, service: str, feature_refs: list[str], feature_columns: list[str], output: str,
                   output_format: str):
    """The lineage of a written training set, from the written rows (fingerprinted, one job)."""
    def lineage_of(written: DataFrame) -> TrainingSetLineage:
        fp = content_fingerprint(written, count_by="split")
        return TrainingSetLineage(
            lakefs_repository=lakefs.repository, lakefs_ref=ref, lakefs_commit=commit,
            split_version=split_version, split_seed=seed, splits=list(splits),
            feast_repo_commit=feature_repo_commit(repo.root), feast_feature_service=service,
            features=feature_refs, feature_schema_hash=feature_schema_hash(written, feature_columns),
            fingerprint=fp.digest, row_count=fp.row_count, split_counts={str(s): n for s, n in fp.counts.items()},
            output=output, output_format=output_format,
        )
    return lineage_of


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
