"""Compute one split version and publish it to the split index table on a lakeFS branch.

Order of work, so that bad input writes nothing: validate the version → resolve the source ref
to a commit and check the target branch → read the entity table there → check the registry
(same definition: no-op; another: error) → assign splits (`mlv_spark.splits.assign`) → publish
on the branch: index rows, registry row and report, one commit with the parameters as metadata.
Any failure after the first write resets the branch's uncommitted changes under `ml_datasets/`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark.catalogs import Tables
from mlv_spark.errors import InvalidInputError
from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger
from mlv_spark.splits import assign
from mlv_spark.splits.index import (
    SPLITS_TABLE,
    VERSION_SCHEMA,
    VERSIONS_TABLE,
    SplitVersion,
    build_index,
    check_version,
    decode_entity_key,
    encode_entity_key,
    split_counts,
    version_record,
)
from mlv_spark.workflows.publish import commit_with_manifest, staged
from mlv_spark.workflows.registry import SplitRegistry

log = get_logger(__name__)
NAMESPACE_PREFIX = "ml_datasets/"
StorageReport = Literal["estimate", "measured"]


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
    storage: StorageReport | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

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
            how = "measured: copies written and discarded" if self.storage == "measured" else \
                "estimated: the feature table's data bytes times each split's row share"
            lines.append(
                f"  storage: split index {self.index_bytes:,d} B vs copied train/val/test tables "
                f"{self.copies_bytes:,d} B ({1 - self.index_bytes / self.copies_bytes:.1%} saved; {how})"
            )
        return "\n".join(lines)


def compute_split_version(
    spark: SparkSession,
    tables: Tables,
    lakefs: LakeFS,
    version: SplitVersion,
    branch: str,
    *,
    create_branch_from: str | None = None,
    feature_table: str | None = None,
    storage_report: StorageReport | None = None,
) -> SplitReport:
    """Compute and commit split version `version` on `branch`; see the module doc for the order."""
    version.validate()
    source_commit = lakefs.resolve(version.source_ref)
    branch_exists = lakefs.branch_exists(branch)
    if branch_exists:
        lakefs.require_branch(branch)
        registry_ref = branch
    elif create_branch_from is None:
        raise InvalidInputError(f"target branch {branch!r} does not exist; create it or pass a source to branch from")
    else:
        registry_ref = lakefs.resolve(create_branch_from)
    source = tables.read(version.source_table, source_commit)
    params = version.params
    missing = [c for c in (*params.entity_key, params.time_column, *params.stratify_by, *params.group_by)
               if c not in source.columns]
    if missing:
        raise InvalidInputError(
            f"column(s) {missing} not in {version.source_table}@{version.source_ref}; it has {source.columns}"
        )
    version = version.with_key_types({k: source.schema[k].dataType.simpleString() for k in params.entity_key})

    registry = SplitRegistry(tables, registry_ref)
    existing = registry.record(version.name)
    if check_version(existing, version):
        assert existing is not None  # check_version is true only for an existing version
        totals, per_stratum = split_counts(registry.index(version.name))
        log.info("splits: version %s already exists with the same parameters: nothing to do", version.name)
        return SplitReport(version.name, branch, None, existing["source_commit"], True, totals, per_stratum)

    previous = None
    if version.previous_version:
        if registry.record(version.previous_version) is None:
            raise InvalidInputError(f"previous split version {version.previous_version!r} does not exist on {registry_ref}")
        previous = decode_entity_key(registry.index(version.previous_version), version.key_types).select(
            *params.entity_key, "split").dropDuplicates(list(params.entity_key))

    started = time.monotonic()
    index = build_index(assign(source, params, previous=previous, per_row=True), version).cache()
    try:
        totals, per_stratum = split_counts(index)
        totals = {name: totals[name] for name in params.split_names if name in totals}
        if not totals:
            raise InvalidInputError(f"{version.source_table}@{version.source_ref} yielded no rows to split")
        log.info("splits: assigned %d rows in %.1fs", sum(totals.values()), time.monotonic() - started)
        if not branch_exists:
            lakefs.create_branch(branch, registry_ref)
        report = SplitReport(version.name, branch, None, source_commit, False, totals, per_stratum)
        with staged(lakefs, branch, [NAMESPACE_PREFIX]):
            tables.write(index, SPLITS_TABLE, branch, mode="append" if tables.exists(SPLITS_TABLE, branch) else "create",
                         partition_by=["split_version"])
            record = version_record(version, source_commit, totals)
            registry_row = spark.createDataFrame([(*record.values(), None)], VERSION_SCHEMA).withColumn(
                "created_at", F.current_timestamp())
            tables.write(registry_row, VERSIONS_TABLE, branch,
                         mode="append" if tables.exists(VERSIONS_TABLE, branch) else "create")
            if storage_report is not None:
                report.storage = storage_report
                report.index_bytes = sum(c.size_bytes or 0 for c in lakefs.uncommitted(branch, prefix="ml_datasets/splits/")
                                         if c.type == "added")
                features = tables.read(feature_table, source_commit) if feature_table else source
                report.copies_bytes = (
                    _measure_copies(lakefs, branch, features, index, list(params.entity_key))
                    if storage_report == "measured"
                    else _estimate_copies(tables, feature_table or version.source_table, source_commit, totals)
                )
            metadata = {
                "mlv.kind": "split_version", "split_version": version.name, "split_seed": params.seed,
                "params_hash": version.params_hash, "source_commit": source_commit, **{
                    f"param.{k}": (json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v)
                    for k, v in version.definition().items()},
            }
            report.commit = commit_with_manifest(
                lakefs, branch, f"ml_datasets/_reports/splits/{version.name}.json", json.loads(report.to_json()),
                f"split version {version.name}", metadata)
    finally:
        index.unpersist()
    return report


def _estimate_copies(tables: Tables, feature_table: str, commit: str, totals: dict[str, int]) -> int:
    """Bytes that train/val/test copies of `feature_table` would take, estimated as its current
    data files' bytes times the share of rows the splits cover (all of them: the table's size)."""
    total_bytes = tables.data_bytes(feature_table, commit)
    rows = sum(totals.values())
    return sum(round(total_bytes * count / rows) for count in totals.values()) if rows else 0


def _measure_copies(lakefs: LakeFS, branch: str, features: DataFrame, index: DataFrame, key_columns: list[str]) -> int:
    """Bytes that train/val/test copies of `features` take: written for real to a scratch
    prefix on the branch, measured through lakeFS, then discarded (never committed)."""
    scratch = f"_mlv_scratch/{uuid.uuid4().hex}/"
    keyed = index.select("entity_key", "split").dropDuplicates(["entity_key"])
    joined = features.withColumn("__key", encode_entity_key(key_columns)).join(
        keyed, F.col("__key") == F.col("entity_key")).drop("__key", "entity_key")
    try:
        joined.write.partitionBy("split").mode("overwrite").parquet(lakefs.location(branch, scratch).s3a)
        return sum(c.size_bytes or 0 for c in lakefs.uncommitted(branch, prefix=scratch) if c.type == "added")
    finally:
        lakefs.reset_prefix(branch, scratch)
