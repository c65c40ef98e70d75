"""Build a training set: split index rows (entity rows) + Feast features, at a pinned commit.

Order of work, so that bad input writes nothing: resolve the lakeFS ref to a commit → load the
Feast repo and expand the requested features → read the split registry at the commit and check
the split version and split names → join point-in-time → write the output → fingerprint what
was written → (on lakeFS) commit with the lineage as metadata. Everything is read at the
commit, never at a moving branch.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError, SplitVersionError
from mlv_spark.fingerprint import content_fingerprint, schema_signature
from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger
from mlv_spark.split_index import SPLITS_TABLE, VERSIONS_TABLE, decode_entity_key
from mlv_spark.sql import path_exists
from mlv_spark.tables import Tables
from mlv_spark.training import get_historical_features, load_feature_repo, resolve_features
from mlv_spark.training.feast_repo import FeatureRepo

log = get_logger(__name__)
MANIFEST = "_mlv_training_set.json"
_LAKEFS_URI = re.compile(r"^(?:lakefs|s3a?)://(?P<repo>[^/]+)/(?P<ref>[^/]+)/(?P<path>.*)$")


@dataclass
class TrainingSetLineage:
    """What the MLflow lineage records for a training set (see mlv_spark.lineage)."""

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


def feature_repo_commit(repo_root: Path) -> str:
    """The Git commit of the Feast repo (with `-dirty` when it has uncommitted changes), or a
    content hash of its Python and YAML files when it is not in Git."""
    try:
        head = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo_root), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{head}-dirty" if dirty else head
    except (subprocess.CalledProcessError, FileNotFoundError):
        digest = hashlib.sha256()
        for path in sorted(p for p in repo_root.rglob("*") if p.suffix in (".py", ".yaml", ".yml") and p.is_file()):
            digest.update(str(path.relative_to(repo_root)).encode() + b"\0" + path.read_bytes() + b"\0")
        return "content-sha256:" + digest.hexdigest()[:16]


def pin_path(path: str, repository: str, commit: str) -> str:
    """Rewrite a lakeFS path at any ref (`lakefs://` or `s3a://<repo>/<ref>/…`) to the commit."""
    match = _LAKEFS_URI.match(path)
    if match and match["repo"] == repository:
        return f"s3a://{repository}/{commit}/{match['path']}"
    return path


def feature_schema_hash(df: DataFrame, feature_columns: Sequence[str]) -> str:
    return hashlib.sha256(schema_signature(df.select(*feature_columns)).encode()).hexdigest()[:16]


def _split_version_record(tables: Tables, commit: str, version: str) -> dict:
    if not tables.exists(VERSIONS_TABLE, commit):
        raise SplitVersionError(f"no split versions at commit {commit[:12]}: run jobs/compute_splits.py first")
    rows = tables.read(VERSIONS_TABLE, commit).collect()
    by_name = {r["split_version"]: r.asDict() for r in rows}
    if version not in by_name:
        raise SplitVersionError(f"unknown split version {version!r} at {commit[:12]}; known: {sorted(by_name)}")
    return by_name[version]


def entity_rows(tables: Tables, commit: str, version: str, splits: Sequence[str]) -> tuple[DataFrame, dict]:
    """The split index rows of `version` restricted to `splits`, with the original key columns."""
    record = _split_version_record(tables, commit, version)
    params = json.loads(record["params_json"])
    known = list(params["ratios"])
    unknown = [s for s in splits if s not in known]
    if unknown or not splits:
        raise InvalidInputError(f"split(s) {unknown or splits} not in split version {version!r}; it has {known}")
    index = tables.read(SPLITS_TABLE, commit).where(
        (F.col("split_version") == version) & F.col("split").isin(list(splits)))
    decoded = decode_entity_key(index, params["key_types"])
    return decoded.select(*params["key_types"], "event_timestamp", "split"), {**record, "params": params}


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
) -> TrainingSetLineage:
    """Join and write one training set; returns its lineage (fingerprint, counts, commits).

    `ref` is recorded as given; the data is read at `commit` (default: `ref` resolved now)."""
    if output_format not in ("parquet", "delta"):
        raise InvalidInputError(f"output format {output_format!r} is not supported; use parquet or delta")
    commit = commit or lakefs.resolve(ref)

    def table_at_commit(name: str) -> str:
        return tables.catalog.table(name, commit).identifier or name

    def path_at_commit(path: str) -> str:
        return pin_path(path, lakefs.repository, commit)

    repo: FeatureRepo = load_feature_repo(feature_repo, spark=spark, table_resolver=table_at_commit,
                                          path_resolver=path_at_commit)
    requested = resolve_features(repo, features)
    feature_refs = [f"{r.name}:{f}" for r in requested for f in r.features]
    service = features if isinstance(features, str) else ""

    out_match = _LAKEFS_URI.match(output) if output.startswith("lakefs://") else None
    if output.startswith("lakefs://"):
        if not out_match or out_match["repo"] != lakefs.repository:
            raise InvalidInputError(f"output {output!r} must be lakefs://{lakefs.repository}/<branch>/<path>")
        lakefs.require_branch(out_match["ref"])
        target = f"s3a://{lakefs.repository}/{out_match['ref']}/{out_match['path'].strip('/')}"
    else:
        target = output
    if path_exists(spark, target) and not overwrite:
        raise InvalidInputError(f"output {output!r} already exists; choose another location or pass --overwrite")

    entities, record = entity_rows(tables, commit, split_version, splits)
    started = time.monotonic()
    training = get_historical_features(
        spark, entities, feature_repo=repo, features=features, full_feature_names=full_feature_names,
        table_resolver=table_at_commit, path_resolver=path_at_commit,
    )
    feature_columns = [c for c in training.columns if c not in entities.columns]
    try:
        training.write.format(output_format).mode("overwrite").save(target)
        written = spark.read.format(output_format).load(target)
        fp = content_fingerprint(written, count_by="split")
        counts = {str(split): n for split, n in fp.counts.items()}
        lineage = TrainingSetLineage(
            lakefs_repository=lakefs.repository, lakefs_ref=ref, lakefs_commit=commit,
            split_version=split_version, split_seed=int(record["params"]["seed"]), splits=list(splits),
            feast_repo_commit=feature_repo_commit(repo.root), feast_feature_service=service,
            features=feature_refs, feature_schema_hash=feature_schema_hash(written, feature_columns),
            fingerprint=fp.digest, row_count=fp.row_count, split_counts=counts, output=output,
            output_format=output_format,
        )
        if out_match:
            branch, path = out_match["ref"], out_match["path"].strip("/")
            lakefs.put_object(branch, f"{path}/{MANIFEST}", lineage.to_json().encode(), "application/json")
            lineage.output_commit = lakefs.commit(branch, f"training set {path}", {
                "mlv.kind": "training_set", "fingerprint": fp.digest, "lakefs_commit": commit,
                "split_version": split_version, "splits": ",".join(splits), "feast_feature_service": service,
                "feast_repo_commit": lineage.feast_repo_commit, "row_count": fp.row_count,
            })
        else:
            Path(target, MANIFEST).write_text(lineage.to_json()) if "://" not in target else None
    except BaseException:
        if out_match:
            lakefs.reset_prefix(out_match["ref"], out_match["path"].strip("/") + "/")
        raise
    log.info("training set: %d rows, %d features, fingerprint %s, in %.1fs", fp.row_count, len(feature_columns),
             fp.digest[:16], time.monotonic() - started)
    return lineage

