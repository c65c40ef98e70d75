"""Compute one split version and publish it to the split index table through an experiment branch.

Order of work, so that bad input writes nothing: validate the version → plan the experiment
(names, target, tag; `mlv_spark.lifecycle`) → check the target's registry (same definition:
no-op; another: error) → read the entity table at the source commit and assign splits
(`mlv_spark.splits.assign`, cached: data errors show here) → open the branch from the target's
head → write index rows, registry row and report → commit with the parameters as metadata →
merge → tag → delete.

A split version is immutable: when two runs publish the same new version at once, both write
the one table's pointer, so the second merge conflicts; it then finds the version on the target
and is a no-op (same definition) or a SplitVersionError (another one) — the table holds exactly
one copy. A conflict over another version is published again on the target's new head.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlv_spark import lifecycle
from mlv_spark.catalogs import Catalog, Tables
from mlv_spark.errors import InvalidInputError, MergeConflictError, SplitVersionError, data_errors
from mlv_spark.fingerprint import content_fingerprint
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
    tally,
    version_record,
)
from mlv_spark.workflows.publish import put_manifest
from mlv_spark.workflows.registry import SplitRegistry

log = get_logger(__name__)

#: How often a split version is published again when its target changed under the merge.
MERGE_ATTEMPTS = 3
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
    merge_commit: str | None = None
    lifecycle: dict | None = None
    target: str | None = None
    tag: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    def render(self, max_strata: int = 20) -> str:
        where = f"merged into {self.target} from {self.branch}" if self.target and self.merge_commit else f"on {self.branch}"
        lines = [f"split version {self.version} {where}" + (" (already exists: no-op)" if self.noop else "")]
        lines.append(f"  source commit {self.source_commit}")
        if self.commit:
            lines.append(f"  commit        {self.commit}")
        if self.merge_commit:
            lines.append(f"  merged        {self.merge_commit}")
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
    *,
    experiment: str | None = None,
    merge_into: str | None = None,
    tag: str | None = None,
    delete_branch: bool = False,
    feature_tables: Sequence[str] = (),
    storage_report: StorageReport | None = None,
) -> SplitReport:
    """Compute split version `version` and publish it through an experiment branch (see the
    module doc); a version that `merge_into` (or the source ref) already holds with the same
    definition is a no-op, with another definition an error."""
    version.validate()
    experiment, target, owner_params = _plan_inputs(version, tables.catalog.type_name, experiment, merge_into,
                                                    feature_tables, storage_report)
    source_commit = lakefs.resolve(version.source_ref)
    prepared: _Prepared | None = None
    try:
        for attempt in range(1, MERGE_ATTEMPTS + 1):
            plan = lifecycle.plan(lakefs, experiment=experiment, owner="splits", params=owner_params, source_ref=target,
                                  merge_into=merge_into, tag=tag, delete_branch=delete_branch)
            if plan.needs_write:
                existing = _existing(tables, lakefs, target, version, source_commit, tag=tag)
                if existing is not None:
                    return existing
                prepared = prepared or _prepare(spark, tables, version, source_commit,
                                                SplitRegistry(tables, lakefs.resolve(target)))
                if storage_report == "measured":
                    _check_measurable(tables, feature_tables, prepared)
            report = SplitReport(version.name, plan.branch, None, source_commit, False, target=merge_into)
            try:
                result = lifecycle.run(
                    lakefs, plan,
                    lambda branch: _write(spark, tables, lakefs, branch, prepared, report, feature_tables, storage_report),
                    message=f"split version {version.name}", metadata=_commit_metadata(prepared or version, source_commit))
            except MergeConflictError:
                try:
                    existing = _existing(tables, lakefs, target, version, source_commit, concurrent=True)
                except SplitVersionError:  # published meanwhile with another definition: ours is not needed
                    lakefs.delete_branch(plan.branch)
                    raise
                if existing is not None:  # the same version was published meanwhile, with the same definition
                    if lakefs.branch_exists(plan.branch):
                        lakefs.delete_branch(plan.branch)
                    return existing
                log.warning("splits: %s changed under the merge (attempt %d of %d); publishing again on its new head",
                            target, attempt, MERGE_ATTEMPTS)
                lakefs.delete_branch(plan.branch)
                continue
            return _record_result(report, result, target,
                                  lambda ref: split_counts(SplitRegistry(tables, ref).index(version.name)))
        raise MergeConflictError(f"split version {version.name!r}: {target} kept changing under {MERGE_ATTEMPTS} merges; rerun")
    finally:
        if prepared is not None:
            prepared.index.unpersist()


@dataclass
class _Prepared:
    """A split version computed (cached) and ready to write: its definition with key types, the
    index rows, the counts and the source rows."""

    version: SplitVersion
    source_commit: str
    source: DataFrame
    index: DataFrame
    totals: dict[str, int]
    per_stratum: list[tuple[str | None, str, int]]
    fingerprint: str


def published_without_spark(catalog: Catalog, lakefs: LakeFS, version: SplitVersion, *, experiment: str | None = None,
                            merge_into: str | None = None, tag: str | None = None, delete_branch: bool = False,
                            feature_tables: Sequence[str] = (), storage_report: StorageReport | None = None
                            ) -> SplitReport | None:
    """What `compute_split_version` would answer for a rerun of a published version — its no-op
    report, or the SplitVersionError of another definition — decided without starting Spark (the
    registry and the version's index rows read with pyiceberg). None when Spark has to decide:
    the catalog cannot read without it, the experiment branch holds a run in progress, the
    version is not published yet, or its index is too large to count in this process."""
    if not catalog.spark_free_reads:
        return None
    version.validate()
    experiment, target, owner_params = _plan_inputs(version, catalog.type_name, experiment, merge_into,
                                                    feature_tables, storage_report)
    source_commit = lakefs.resolve(version.source_ref)
    plan = lifecycle.plan(lakefs, experiment=experiment, owner="splits", params=owner_params, source_ref=target,
                          merge_into=merge_into, tag=tag, delete_branch=delete_branch)
    same = f"split_version == '{version.name}'"

    def record(ref: str) -> dict | None:
        rows = catalog.read_small(lakefs, VERSIONS_TABLE, ref, row_filter=same)
        return rows.to_pylist()[0] if rows is not None and rows.num_rows else None

    def counts(ref: str) -> tuple[dict[str, int], list[tuple[str | None, str, int]]]:
        index = catalog.read_small(lakefs, SPLITS_TABLE, ref, row_filter=same, columns=("stratum", "split"))
        grouped = index.group_by(["stratum", "split"]).aggregate([("split", "count")]).to_pylist()
        return tally((r["stratum"], r["split"], r["split_count"]) for r in grouped)

    def small(existing: dict | None) -> bool:
        return existing is not None and sum(json.loads(existing["counts_json"]).values()) <= SPARK_FREE_MAX_ROWS

    if plan.merged_commit is not None:  # this very run finished before: at most its tag and clean-up are left
        if not small(record(plan.merged_commit)):
            return None
        report = SplitReport(version.name, plan.branch, None, source_commit, False, target=merge_into)
        result = lifecycle.run(lakefs, plan, _never_written, message=f"split version {version.name}")
        return _record_result(report, result, target, counts)
    if not plan.needs_write:  # committed on its branch, not merged: the lifecycle resumes it in Spark
        return None
    head = lakefs.resolve(target)
    existing = record(head)
    if not small(existing):
        return None
    return _noop_report(existing, version, target, tag, lambda: counts(head))


def _never_written(branch: str) -> dict:  # pragma: no cover - a merged plan writes nothing
    raise AssertionError(f"a finished split version was about to be written again on {branch}")


def _record_result(report: SplitReport, result: lifecycle.ExperimentResult, target: str,
                   counts: Callable[[str], tuple[dict[str, int], list[tuple[str | None, str, int]]]]) -> SplitReport:
    """`report` completed with what the lifecycle did; the counts of a resumed run come from
    what was published."""
    report.commit, report.merge_commit = result.commit, result.merge_commit
    report.tag = result.tag if result.merge_commit else None
    report.lifecycle = json.loads(result.to_json())
    report.noop = "merge" in result.resumed  # this same run had finished before
    if not report.totals:
        report.totals, report.per_stratum = counts(result.merge_commit or result.commit or target)
    return report


#: The largest split version whose counts a rerun takes without Spark (its index rows are read here).
SPARK_FREE_MAX_ROWS = 2_000_000


def _plan_inputs(version: SplitVersion, catalog_type: str, experiment: str | None, merge_into: str | None,
                 feature_tables: Sequence[str], storage_report: StorageReport | None) -> tuple[str, str, dict]:
    """The experiment name, the target and the parameters the lifecycle plans with."""
    experiment = experiment or "splits-" + re.sub(r"[^-\w]", "-", version.name)
    target = merge_into or version.source_ref
    owner_params = {"definition": {**version.definition(), "key_types": None}, "feature_tables": list(feature_tables),
                    "storage_report": storage_report, "catalog": catalog_type}
    return experiment, target, owner_params


def _existing(tables: Tables, lakefs: LakeFS, target: str, version: SplitVersion, source_commit: str,
              concurrent: bool = False, tag: str | None = None) -> SplitReport | None:
    """A no-op report when `target` already holds the version with this definition; None when it
    holds no such version; a SplitVersionError when it holds it with another definition."""
    registry = SplitRegistry(tables, lakefs.resolve(target))
    existing = registry.record(version.name)
    if existing is None:
        return None
    return _noop_report(existing, version, target, tag, lambda: split_counts(registry.index(version.name)), concurrent)


def _noop_report(existing: dict, version: SplitVersion, target: str, tag: str | None,
                 counts: Callable[[], tuple[dict[str, int], list[tuple[str | None, str, int]]]],
                 concurrent: bool = False) -> SplitReport:
    """The report of a version `target` already holds (`existing`, its registry row) — or the
    SplitVersionError when that row has another definition."""
    recorded = SplitVersion.from_record(existing)
    if not check_version(existing, version.with_key_types(recorded.key_types)):  # pragma: no cover
        raise AssertionError("check_version raises for another definition")
    totals, per_stratum = counts()
    how = "was published by a concurrent run" if concurrent else "already exists"
    log.info("splits: version %s %s with the same parameters on %s: nothing to do", version.name, how, target)
    if tag and not concurrent:
        log.warning("splits: tag %s not created: %s already holds version %s (published before)", tag, target, version.name)
    return SplitReport(version.name, target, None, existing["source_commit"], True, totals, per_stratum)


def _prepare(spark: SparkSession, tables: Tables, version: SplitVersion, source_commit: str,
             registry: SplitRegistry) -> _Prepared:
    """Read the entity table at the source commit and assign splits (cached): every data error
    shows here, before a branch exists."""
    source = tables.read(version.source_table, source_commit)
    params = version.params
    missing = [c for c in (*params.entity_key, params.time_column, *params.stratify_by, *params.group_by)
               if c not in source.columns]
    if missing:
        raise InvalidInputError(
            f"column(s) {missing} not in {version.source_table}@{version.source_ref}; it has {source.columns}"
        )
    version = version.with_key_types({k: source.schema[k].dataType.simpleString() for k in params.entity_key})
    previous = None
    if version.previous_version:
        if registry.record(version.previous_version) is None:
            raise InvalidInputError(f"previous split version {version.previous_version!r} does not exist at {registry.ref[:12]}")
        previous = decode_entity_key(registry.index(version.previous_version), version.key_types).select(
            *params.entity_key, "split").dropDuplicates(list(params.entity_key))
    started = time.monotonic()
    index = build_index(assign(source, params, previous=previous, per_row=True), version).cache()
    try:
        with data_errors():  # the hash method checks keys and strata lazily, in this first job
            totals, per_stratum = split_counts(index)
        fingerprint = content_fingerprint(index).digest
    except BaseException:
        index.unpersist()
        raise
    totals = {name: totals[name] for name in params.split_names if name in totals}
    if not totals:
        index.unpersist()
        raise InvalidInputError(f"{version.source_table}@{version.source_ref} yielded no rows to split")
    log.info("splits: assigned %d rows in %.1fs", sum(totals.values()), time.monotonic() - started)
    return _Prepared(version, source_commit, source, index, totals, per_stratum, fingerprint)


def _write(spark: SparkSession, tables: Tables, lakefs: LakeFS, branch: str, prepared: _Prepared | None,
           report: SplitReport, feature_tables: Sequence[str], storage_report: StorageReport | None) -> dict:
    """Index rows, registry row and report on the branch (the lifecycle commits them)."""
    assert prepared is not None  # the lifecycle writes only when nothing was committed yet
    version = prepared.version
    report.totals, report.per_stratum = prepared.totals, prepared.per_stratum
    # Each version is its own partition, replaced rather than appended: a second writer of the same
    # version on the same branch (a concurrent run, a rerun) leaves one copy, never two.
    record = version_record(version, prepared.source_commit, prepared.totals, prepared.fingerprint)
    registry_row = spark.createDataFrame([(*record.values(), None)], VERSION_SCHEMA).withColumn(
        "created_at", F.current_timestamp())
    for rows, name in ((prepared.index, SPLITS_TABLE), (registry_row, VERSIONS_TABLE)):
        mode = "replace_partitions" if tables.exists(name, branch) else "create"
        tables.write(rows, name, branch, mode=mode, partition_by=["split_version"])
    if storage_report is not None:
        report.storage = storage_report
        report.index_bytes = sum(c.size_bytes or 0 for c in lakefs.uncommitted(branch, prefix="ml_datasets/splits/")
                                 if c.type == "added")
        names = list(feature_tables) or [version.source_table]
        report.copies_bytes = sum(
            _measure_copies(lakefs, branch, tables.read(name, prepared.source_commit), prepared.index,
                            list(version.params.entity_key))
            if storage_report == "measured"
            else _estimate_copies(tables, name, prepared.source_commit, prepared.totals)
            for name in names)
    put_manifest(lakefs, branch, f"ml_datasets/_reports/splits/{version.name}.json", json.loads(report.to_json()))
    return {"split_version": version.name, "rows": sum(prepared.totals.values()), "totals": prepared.totals}


def _commit_metadata(prepared: _Prepared | SplitVersion, source_commit: str) -> dict[str, object]:
    version = prepared.version if isinstance(prepared, _Prepared) else prepared
    return {
        "mlv.kind": "split_version", "split_version": version.name, "split_seed": version.params.seed,
        "params_hash": version.params_hash, "source_commit": source_commit, **{
            f"param.{k}": (json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v)
            for k, v in version.definition().items()},
    }


def _check_measurable(tables: Tables, feature_tables: Sequence[str], prepared: _Prepared) -> None:
    """Measured copies join each feature table to the index on the entity key: it must have it."""
    keys = list(prepared.version.params.entity_key)
    for name in feature_tables:
        columns = tables.read(name, prepared.source_commit).columns
        if not set(keys) <= set(columns):
            raise InvalidInputError(
                f"--storage-report measured copies {name} per split by the entity key {keys}, which it lacks "
                f"(it has {columns}); use --storage-report estimate for tables keyed otherwise")


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
