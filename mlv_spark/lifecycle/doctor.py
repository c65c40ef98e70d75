"""The anti-patterns of the strategy, found in a repository, each explained with its fix.

| rule | the anti-pattern | do instead |
|---|---|---|
| split-tables | train/val/test as separate tables | one split index table (`ml_datasets.splits`) |
| branch-as-version | branches kept as permanent version markers: old and unmerged, or named by lineage | tags |
| code-in-lakefs | transform code stored in lakeFS | Git, with the Feast definitions |
| snapshot-lineage | lineage that names an Iceberg snapshot without a lakeFS commit | lakeFS commits (snapshots expire) |
| retention | a tag a registered model version trains on, whose data a retention rule will remove | pin it (a branch at the commit) or keep it longer |

`examine` walks the ref's directories (tables are found by their Iceberg pointer or Delta log,
lineage by its manifests) and the repository's branches; `split_table_groups` is the pure rule.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

from mlv_spark.lakefs import LakeFS, is_commit_id
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.lifecycle")

MANIFEST_NAMES = ("_mlv_training_set.json",)
CODE_SUFFIXES = (".py", ".ipynb", ".scala", ".sql", ".jar", ".whl", ".egg", ".r", ".sh", ".java")
_SPLIT_WORD = re.compile(r"(?:^|[_.-])(train|training|val|valid|validation|dev|test|testing|holdout)(?=$|[_.-])", re.I)
_SKIP_DIRS = ("metadata/", "data/", "_delta_log/", "_mlv_scratch/")


@dataclass(frozen=True)
class Finding:
    rule: str
    subject: str
    explanation: str
    fix: str

    def render(self) -> str:
        return f"[{self.rule}] {self.subject}\n    why: {self.explanation}\n    fix: {self.fix}"


def split_table_groups(tables: Iterable[str]) -> list[list[str]]:
    """Groups of two or more tables whose names differ only by a split word (train/val/test…)."""
    groups: dict[str, list[str]] = {}
    for table in tables:
        parent, _, name = table.rpartition("/")
        if _SPLIT_WORD.search(name):
            stem = _SPLIT_WORD.sub("", name) or "_"
            groups.setdefault(f"{parent}/{stem}", []).append(table)
    return [sorted(g) for g in groups.values() if len(g) >= 2]


@dataclass
class Walk:
    """What a walk over a ref found: tables (path -> format), manifests, code files."""

    tables: dict[str, str]
    manifests: list[str]
    code: list[str]
    truncated: bool = False


def walk(lakefs: LakeFS, ref: str, *, max_dirs: int = 2000, max_depth: int = 6) -> Walk:
    """Directories of `ref`, breadth first, without descending into tables."""
    found = Walk({}, [], [])
    queue, listed = [("", 0)], 0
    while queue:
        prefix, depth = queue.pop(0)
        if listed >= max_dirs:
            found.truncated = True
            break
        dirs, files = lakefs.list_dir(ref, prefix)
        listed += 1
        names = {d[len(prefix):] for d in dirs}
        if "_delta_log/" in names:
            found.tables[prefix.rstrip("/")] = "delta"
            continue
        if "metadata/" in names and lakefs.object_exists(ref, f"{prefix}metadata/version-hint.text"):
            found.tables[prefix.rstrip("/")] = "iceberg"
            continue
        for path, _ in files:
            if path.rsplit("/", 1)[-1] in MANIFEST_NAMES:
                found.manifests.append(path)
            elif path.lower().endswith(CODE_SUFFIXES):
                found.code.append(path)
        if depth < max_depth:
            queue += [(d, depth + 1) for d in dirs if not d[len(prefix):].startswith(_SKIP_DIRS)]
    return found


def examine(lakefs: LakeFS, ref: str, *, stale_days: float = 30.0, now: float | None = None,
            lineage: Iterable[tuple[str, Mapping]] = (),
            promoted: Iterable[tuple[str, str]] = ()) -> tuple[list[Finding], Walk]:
    """Every finding at `ref` (and among the repository's branches). `lineage` adds records found
    elsewhere (e.g. MLflow runs) as (where, record) pairs; `promoted`, the (model version, lakeFS
    tag) pairs of registered models, for the retention guard."""
    now = time.time() if now is None else now
    found = walk(lakefs, ref)
    findings = []
    for group in split_table_groups(found.tables):
        findings.append(Finding(
            "split-tables", ", ".join(group),
            "train/val/test live in separate tables: every change of the split copies the features, and the "
            "tables drift apart",
            "keep one feature table and compute split versions into the split index (jobs/compute_splits.py); "
            "filter by split at retrieval time (jobs/build_training_set.py --splits)"))
    for path in found.code:
        findings.append(Finding(
            "code-in-lakefs", path,
            "transformation code stored next to the data is versioned with the data, not reviewed or "
            "tested with the rest of the code",
            "keep pipelines in Git (a module under the profile's [code] pipelines, run by "
            "jobs/feature_pipeline.py) and delete the object from lakeFS"))
    records = [(f"lakefs://{lakefs.repository}/{ref}/{m}", _read_json(lakefs, ref, m)) for m in found.manifests]
    branches = lakefs.branches()
    for where, record in [*records, *lineage]:
        findings += _lineage_findings(lakefs, where, record, branches)
    findings += _stale_branches(lakefs, branches, stale_days, now)
    findings += retention_findings(lakefs, promoted)
    return findings, found


def retention_findings(lakefs: LakeFS, promoted: Iterable[tuple[str, str]]) -> list[Finding]:
    """The retention guard: a tag keeps its commit, not its data. lakeFS garbage collection
    hard-deletes an object once every branch has replaced or deleted it and the branch's retention
    has passed — tags do not count — and Iceberg's expire_snapshots or Delta's VACUUM on a branch are
    such deletions. So a model's training data is at risk when GC rules exist and objects of its
    tagged commit are no longer on any branch head."""
    promoted = list(promoted)
    rules = lakefs.gc_rules() if promoted else None
    findings = []
    for where, tag in promoted:
        commit = lakefs.tag_commit(tag)
        if commit is None:
            findings.append(Finding("retention", f"{where}: tag {tag!r}",
                                    "the tag the model's training data was pinned with no longer exists",
                                    "recreate the tag at the commit in the model version's data/lakefs_commit tag"))
            continue
        if rules is None:
            continue
        heads = lakefs.branches()
        gone = None
        for branch in heads:
            changed = [c for c in lakefs.diff(commit, branch, two_dot=True) if c.type in ("removed", "changed")]
            gone = changed if gone is None else [c for c in gone if c.path in {x.path for x in changed}]
            if not gone:
                break
        if gone:
            days = min(rules.get(b, rules["*"]) for b in heads)
            findings.append(Finding(
                "retention", f"{where}: tag {tag!r} @ {commit[:12]}",
                f"{len(gone)} object(s) of that commit (e.g. {gone[0].path}) are on no branch any more, and garbage "
                f"collection hard-deletes such objects {days} day(s) after they were replaced (rules: {rules}); the "
                "tag would keep the commit but not its data, and the training set could not be rebuilt",
                f"pin it: keep a branch at the commit (lakectl branch create lakefs://{lakefs.repository}/retain-{tag} "
                f"--source {commit}), which garbage collection respects, or raise the retention days of the branches"))
    return findings


def _read_json(lakefs: LakeFS, ref: str, path: str) -> dict:
    try:
        return json.loads(lakefs.read_object(ref, path))
    except (ValueError, UnicodeDecodeError):
        return {"__unreadable__": path}


def _lineage_findings(lakefs: LakeFS, where: str, record: Mapping, branches: Mapping[str, str]) -> list[Finding]:
    findings = []
    commit = record.get("lakefs_commit") or record.get("data/lakefs_commit")
    snapshot = next((k for k in record if "snapshot" in k.lower()), None)
    if snapshot and not commit:
        findings.append(Finding(
            "snapshot-lineage", where,
            f"it records {snapshot}={record[snapshot]!r} but no lakeFS commit: Iceberg snapshots expire "
            "(expire_snapshots), so the data cannot be found again",
            "record the lakeFS commit the data was read at (mlv-spark's lineage always does) and tag it"))
    ref = record.get("lakefs_ref") or record.get("data/lakefs_ref")
    if ref and ref in branches and ref != lakefs.default_branch and not is_commit_id(ref):
        findings.append(Finding(
            "branch-as-version", f"{where} names branch {ref!r}",
            "lineage that points at a branch points at whatever the branch holds next; experiment branches are "
            "deleted after their merge",
            f"record the commit and tag it (lakefs tag at {str(commit or 'the commit')[:12]}); "
            "promote with jobs/promote.py, which tags the exact commit"))
    return findings


def _stale_branches(lakefs: LakeFS, branches: Mapping[str, str], stale_days: float, now: float) -> list[Finding]:
    findings = []
    protected = set(lakefs.protected_branches())
    for branch, head in sorted(branches.items()):
        if branch == lakefs.default_branch or branch in protected:
            continue
        age = (now - lakefs.get_commit(head).creation_date) / 86400
        if age >= stale_days and lakefs.has_unmerged_changes(branch, lakefs.default_branch):
            findings.append(Finding(
                "branch-as-version", f"branch {branch!r} (head {head[:12]}, {age:.0f} days old, unmerged)",
                "an old unmerged branch is being used as a version marker; branches move and are meant to be "
                "merged and deleted",
                f"tag the state you need (lakeFS tag at {head[:12]}), then merge the branch or delete it "
                "(jobs/cleanup_branches.py)"))
    return findings


def as_dicts(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]
