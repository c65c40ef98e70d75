"""Compute one split version and write it to the split index table on a lakeFS branch.

Order of work, so that bad input writes nothing: validate parameters → resolve the source
ref to a commit → read the entity table there → check the version registry (same params:
no-op; other params: error) → assign splits → write index + registry row + report on the
branch → commit with the parameters as metadata. Any failure after the first write resets
the branch's uncommitted changes under `ml_datasets/`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError
from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger
from mlv_spark.split_index import (
    SPLITS_TABLE,
    VERSION_SCHEMA,
    VERSIONS_TABLE,
    SplitParams,
    build_index,
    check_version,
    decode_entity_key,
    encode_entity_key,
    split_counts,
    version_record,
)
from mlv_spark.splits import assign_splits
from mlv_spark.tables import Tables

log = get_logger(__name__)
NAMESPACE_PREFIX = "ml_datasets/"


@dataclass
class SplitReport:
    version: str
    branch: str
    commit: str | None
    source_commit: str
    noop: bool
    totals: dict[str, int] = field(default_factory=dict)
    per_stratum: list[tuple[str | None, str, int]] = field(default_factory=list)
    index_bytes: int | None = None
    copies_bytes: int | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True, default=str)

    def render(self, max_strata: int = 20) -> str:
        lines = [f"split version {self.version} on {self.branch}" + (" (already exists: no-op)" if self.noop else "")]
        lines.append(f"  source commit {self.source_commit}")
        if self.commit:
            lines.append(f"  commit        {self.commit}")
        total = sum(self.totals.values())
        for split, count in self.totals.items():
            lines.append(f"  {split:<12} {count:>12,d}  {count / total:7.2%}" if total else f"  {split}: 0")
        strata = sorted({s for s, _, _ in self.per_stratum}, key=lambda s: (s is None, s or ""))
        if strata and strata != [None]:
            splits = list(self.totals)
            lines.append(f"  {'stratum':<20}" + "".join(f"{s:>12}" for s in splits))
            counts = {(s, sp): c for s, sp, c in self.per_stratum}
            for stratum in strata[:max_strata]:
                lines.append(f"  {str(stratum)[:20]:<20}" + "".join(f"{counts.get((stratum, sp), 0):>12,d}" for sp in splits))
            if len(strata) > max_strata:
                lines.append(f"  … {len(strata) - max_strata} more strata (see the JSON report)")
        if self.index_bytes is not None and self.copies_bytes:
            lines.append(
                f"  storage: split index {self.index_bytes:,d} B vs copied train/val/test tables "
                f"{self.copies_bytes:,d} B ({1 - self.index_bytes / self.copies_bytes:.1%} saved)"
            )
        return "\n".join(lines)


def _existing_version(tables: Tables, ref: str, version: str) -> dict | None:
    if not tables.exists(VERSIONS_TABLE, ref):
        return None
    rows = tables.read(VERSIONS_TABLE, ref).where(F.col("split_version") == version).limit(1).collect()
    return rows[0].asDict() if rows else None


def _measure_copies(spark: SparkSession, lakefs: LakeFS, branch: str, features: DataFrame,
                    index: DataFrame, key_columns: list[str]) -> int:
    """Bytes that train/val/test copies of `features` would take: written for real to a scratch
    prefix on the branch, measured through lakeFS, then discarded (never committed)."""
    scratch = f"_mlv_scratch/{uuid.uuid4().hex}/"
    keyed = index.select("entity_key", "split").dropDuplicates(["entity_key"])
    joined = features.withColumn("__key", encode_entity_key(key_columns)).join(
        keyed, F.col("__key") == F.col("entity_key")).drop("__key", "entity_key")
    try:
        joined.write.partitionBy("split").mode("overwrite").parquet(f"s3a://{lakefs.repository}/{branch}/{scratch}")
        return sum(c.size_bytes or 0 for c in lakefs.uncommitted(branch, prefix=scratch) if c.type == "added")
    finally:
        lakefs.reset_prefix(branch, scratch)


def compute_split_version(
    spark: SparkSession,
    tables: Tables,
    lakefs: LakeFS,
    params: SplitParams,
    version: str,
    branch: str,
    *,
    create_branch_from: str | None = None,
    feature_table: str | None = None,
    measure_storage: bool = True,
) -> SplitReport:
    """Compute and commit split version `version` on `branch`; see the module doc for the order."""
    params.validate()
    if not version or not version.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise InvalidInputError(f"split version {version!r} must be letters, digits, '_', '-' or '.'")
    source_commit = lakefs.resolve(params.source_ref)
    branch_exists = lakefs.branch_exists(branch)
    if branch_exists:
        lakefs.require_branch(branch)
    elif create_branch_from is None:
        raise InvalidInputError(f"target branch {branch!r} does not exist; create it or pass a source to branch from")
    source = tables.read(params.source_table, source_commit)
    missing = [c for c in (*params.entity_key, params.time_column, *params.stratify_by, *params.group_by)
               if c not in source.columns]
    if missing:
        raise InvalidInputError(
            f"column(s) {missing} not in {params.source_table}@{params.source_ref}; it has {source.columns}"
        )
    params = SplitParams(**{**params.__dict__, "key_types": {
        k: source.schema[k].dataType.simpleString() for k in params.entity_key}})

    registry_ref = branch if branch_exists else create_branch_from
    assert registry_ref is not None  # a missing branch without a source was refused above
    existing = _existing_version(tables, registry_ref, version)
    if check_version(existing, params, version):
        assert existing is not None  # check_version is true only for an existing version
        index = tables.read(SPLITS_TABLE, registry_ref).where(F.col("split_version") == version)
        totals, per_stratum = split_counts(index)
        log.info("splits: version %s already exists with the same parameters: nothing to do", version)
        return SplitReport(version, branch, None, existing["source_commit"], True, totals, per_stratum)

    previous = None
    if params.previous_version:
        if not tables.exists(SPLITS_TABLE, registry_ref) or _existing_version(tables, registry_ref, params.previous_version) is None:
            raise InvalidInputError(f"previous split version {params.previous_version!r} does not exist on {registry_ref}")
        prev_index = tables.read(SPLITS_TABLE, registry_ref).where(F.col("split_version") == params.previous_version)
        previous = decode_entity_key(prev_index, params.key_types).select(*params.entity_key, "split").dropDuplicates(
            list(params.entity_key))

    started = time.monotonic()
    assigned = assign_splits(source, previous=previous, **params.assign_kwargs())
    index = build_index(assigned, params, version).cache()
    totals, per_stratum = split_counts(index)
    totals = {name: totals[name] for name in params.ratios if name in totals}
    if not totals:
        raise InvalidInputError(f"{params.source_table}@{params.source_ref} yielded no rows to split")
    log.info("splits: assigned %d rows in %.1fs", sum(totals.values()), time.monotonic() - started)

    if not branch_exists:
        lakefs.create_branch(branch, create_branch_from)  # type: ignore[arg-type]
    try:
        exists = tables.exists(SPLITS_TABLE, branch)
        tables.write(index, SPLITS_TABLE, branch, mode="append" if exists else "create", partition_by=["split_version"])
        index_bytes = sum(c.size_bytes or 0 for c in lakefs.uncommitted(branch, prefix="ml_datasets/splits/")
                          if c.type == "added")
        record = version_record(params, version, source_commit, totals)
        registry = spark.createDataFrame([(*record.values(), None)], VERSION_SCHEMA).withColumn(
            "created_at", F.current_timestamp())
        tables.write(registry, VERSIONS_TABLE, branch, mode="append" if tables.exists(VERSIONS_TABLE, branch) else "create")
        copies_bytes = None
        if measure_storage:
            features = tables.read(feature_table, source_commit) if feature_table else source
            copies_bytes = _measure_copies(spark, lakefs, branch, features, index, list(params.entity_key))
        report = SplitReport(version, branch, None, source_commit, False, totals, per_stratum, index_bytes, copies_bytes)
        lakefs.put_object(branch, f"ml_datasets/_reports/splits/{version}.json", report.to_json().encode(),
                          "application/json")
        metadata = {
            "mlv.kind": "split_version", "split_version": version, "split_seed": params.seed,
            "params_hash": params.params_hash, "source_commit": source_commit, **{
                f"param.{k}": (json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v)
                for k, v in json.loads(params.to_json()).items()},
        }
        report.commit = lakefs.commit(branch, f"split version {version}", metadata)
    except BaseException:
        lakefs.reset_prefix(branch, NAMESPACE_PREFIX)
        raise
    finally:
        index.unpersist()
    return report
