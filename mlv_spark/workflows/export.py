"""Export a tagged commit's tables to a plain location (a local or cluster file system, a
bucket outside lakeFS) for consumers without lakeFS: each table as Parquet under
`<to>/<namespace>/<table>/`, read back and fingerprinted against the tag's rows, then
`<to>/_mlv_export.json` written last (repository, tag, commit, tables with row counts and
content fingerprints): a reader that finds it knows the export is complete and what it holds.

A branch moves, so it is refused: tag the commit first. Rerunning the same export is a no-op;
a location holding anything else is refused unless `overwrite`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from mlv_spark.catalogs import Tables
from mlv_spark.errors import InvalidInputError
from mlv_spark.fingerprint import content_fingerprint
from mlv_spark.lakefs import LakeFS, LakeFSLocation
from mlv_spark.lifecycle.doctor import walk
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.export")

MANIFEST = "_mlv_export.json"


@dataclass(frozen=True)
class ExportPlan:
    ref: str
    commit: str
    tables: tuple[str, ...]
    to: str
    overwrite: bool


@dataclass
class ExportResult:
    repository: str
    ref: str
    commit: str
    to: str
    noop: bool
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_export(lakefs: LakeFS, ref: str, to: str, tables: list[str] | None = None, *, table_format: str = "iceberg",
                overwrite: bool = False) -> ExportPlan:
    """Check the ref (a tag or a commit), the destination (not lakeFS) and the tables (those of
    `table_format`, the catalog's: iceberg or delta) before anything is read or written."""
    kind = lakefs.ref_kind(ref)
    if kind == "branch":
        raise InvalidInputError(f"--ref {ref!r} is a branch, and a branch moves: export a tag or a commit id (tag its "
                                f"head first, e.g. lakectl tag create lakefs://{lakefs.repository}/export-1 "
                                f"lakefs://{lakefs.repository}/{ref})")
    location = to.strip()
    if not location or location.rstrip("/") in ("", "file:"):
        raise InvalidInputError(f"--to {to!r}: name a folder to export into, e.g. --to /data/exports/{ref}")
    if location.startswith("lakefs://") or _in_repository(location, lakefs.repository):
        raise InvalidInputError(f"--to {to!r} is in lakeFS: an export is for readers without lakeFS; to share a version "
                                "inside lakeFS, tag it instead")
    commit = lakefs.resolve(ref)
    found = {path.replace("/", "."): fmt for path, fmt in walk(lakefs, commit).tables.items()
             if path.count("/") == 1 and fmt == table_format}
    names = tuple(sorted(found)) if not tables else tuple(dict.fromkeys(tables))
    missing = [t for t in names if t not in found]
    if missing:
        raise InvalidInputError(f"--table {', '.join(missing)}: not a table ({table_format}) at {ref} ({commit[:12]}); those there: "
                                f"{', '.join(sorted(found)) or 'none'}")
    if not names:
        raise InvalidInputError(f"{ref} ({commit[:12]}) holds no {table_format} tables to export (--catalog names the format)")
    return ExportPlan(ref, commit, names, location.rstrip("/"), overwrite)


def run_export(spark: SparkSession, tables: Tables, lakefs: LakeFS, plan: ExportPlan) -> ExportResult:
    """Write each table as Parquet, verify it by fingerprint, then the manifest."""
    started = time.monotonic()
    result = ExportResult(lakefs.repository, plan.ref, plan.commit, plan.to, noop=False)
    fs, root = _filesystem(spark, plan.to)
    manifest_path = spark._jvm.org.apache.hadoop.fs.Path(root, MANIFEST)
    if fs.exists(manifest_path):
        previous = json.loads(_read(spark, fs, manifest_path))
        if previous.get("commit") == plan.commit and sorted(previous.get("tables", {})) == sorted(plan.tables):
            log.info("export: %s already holds %s @ %s: no-op", plan.to, plan.ref, plan.commit[:12])
            return ExportResult(lakefs.repository, plan.ref, plan.commit, plan.to, True, previous["tables"])
    if fs.exists(root) and fs.listStatus(root) and not plan.overwrite:
        raise InvalidInputError(f"--to {plan.to!r} is not empty and holds no export of {plan.ref} ({plan.commit[:12]}); "
                                "choose an empty folder, or pass --overwrite to replace what is there")
    if plan.overwrite and fs.exists(manifest_path):
        fs.delete(manifest_path, False)  # an interrupted overwrite must not look complete
    for name in plan.tables:
        namespace, table = name.split(".", 1)
        target = f"{plan.to}/{namespace}/{table}"
        source = tables.read(name, plan.commit)
        expected = content_fingerprint(source)
        source.write.mode("overwrite").parquet(target)
        written = content_fingerprint(spark.read.parquet(target))
        if (written.digest, written.row_count) != (expected.digest, expected.row_count):
            raise InvalidInputError(f"export of {name} to {target} does not match {plan.ref} ({written.row_count} rows "
                                    f"{written.digest[:12]} vs {expected.row_count} rows {expected.digest[:12]}); rerun it")
        result.tables[name] = {"path": target, "rows": expected.row_count, "fingerprint": expected.digest}
        log.info("export: %s -> %s (%d rows, verified)", name, target, expected.row_count)
    manifest = {"repository": lakefs.repository, "ref": plan.ref, "commit": plan.commit, "format": "parquet",
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tables": result.tables}
    _write(fs, manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _in_repository(location: str, repository: str) -> bool:
    try:
        parsed = LakeFSLocation.parse(location)
    except InvalidInputError:
        return False
    return parsed is not None and parsed.repository == repository


def _filesystem(spark: SparkSession, location: str) -> tuple[Any, Any]:
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _read(spark: SparkSession, fs: Any, path: Any) -> str:
    """A small file through Hadoop (Spark's file sources skip names starting with '_')."""
    stream = fs.open(path)
    try:
        return str(spark._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def _write(fs: Any, path: Any, text: str) -> None:
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()
