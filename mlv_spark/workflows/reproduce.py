"""Rebuild the training data of a registered model version from its lineage alone and prove it
identical — or say exactly what differs.

From the model version (its lineage tags, else its run's lineage.json): the lakeFS tag must
still resolve to the logged commit and the commit must exist; the Feast repo is exported as of
its logged Git commit in a temporary directory; every logged split is rebuilt at the commit and
its content fingerprint and row count compared, and the feature schema hash. Differences are
named by kind: `moved tag`, `missing commit`, `changed definitions`, `schema drift`,
`different rows` (which split, how many rows), `missing data` (an object removed by GC).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mlv_spark.errors import FeatureDefinitionError, InvalidInputError, RefNotFoundError, SplitVersionError
from mlv_spark.fingerprint import content_fingerprint
from mlv_spark.lakefs import LakeFS
from mlv_spark.lineage.record import DataLineage
from mlv_spark.log import get_logger
from mlv_spark.workflows.provenance import git_state
from mlv_spark.workflows.registry import SplitRegistry
from mlv_spark.workflows.training_set import TrainingSetRequest, compute_training_set, feature_schema_hash

log = get_logger("mlv_spark.reproduce")


@dataclass(frozen=True)
class Difference:
    kind: str
    detail: str
    split: str | None = None

    def render(self) -> str:
        return f"  {self.kind}{f' [{self.split}]' if self.split else ''}: {self.detail}"


@dataclass
class Reproduction:
    model: str
    version: str
    lineage: DataLineage
    differences: list[Difference] = field(default_factory=list)
    rebuilt: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def reproducible(self) -> bool:
        return not self.differences

    def render(self) -> str:
        lineage = self.lineage
        head = (f"model {self.model} version {self.version}: training data "
                + ("REPRODUCED: identical" if self.reproducible else "NOT reproducible"))
        lines = [head, f"  lakeFS {lineage.lakefs_repository} @ {lineage.lakefs_tag or lineage.lakefs_ref} = "
                       f"{lineage.lakefs_commit}", f"  split version {lineage.split_version}, Feast "
                       f"{lineage.feast_feature_service or ','.join(lineage.feature_refs)} @ {lineage.feast_repo_commit}"]
        for split, logged in lineage.splits.items():
            got = self.rebuilt.get(split)
            if got is None:
                lines.append(f"  {split:<6} logged {logged.rows:,d} rows {logged.fingerprint[:16]} | not rebuilt")
            else:
                same = "identical" if got["fingerprint"] == logged.fingerprint else "DIFFERENT"
                lines.append(f"  {split:<6} logged {logged.rows:,d} rows {logged.fingerprint[:16]} | rebuilt "
                             f"{got['rows']:,d} rows {got['fingerprint'][:16]}: {same}")
        lines += [d.render() for d in self.differences] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "reproducible": self.reproducible,
                "lakefs_commit": self.lineage.lakefs_commit, "differences": [d.__dict__ for d in self.differences],
                "splits": {s: {"logged": {"rows": l.rows, "fingerprint": l.fingerprint}, "rebuilt": self.rebuilt.get(s)}
                           for s, l in self.lineage.splits.items()}, "notes": self.notes, "seconds": self.seconds}


def check_refs(lakefs: LakeFS, lineage: DataLineage, tag: str | None) -> list[Difference]:
    """The lakeFS side, before any Spark work: the tag at the commit, the commit there."""
    differences = []
    if tag:
        where = lakefs.tag_commit(tag)
        if where is None:
            differences.append(Difference("moved tag", f"tag {tag!r} no longer exists (it pointed to {lineage.lakefs_commit[:12]})"))
        elif where != lineage.lakefs_commit:
            differences.append(Difference(
                "moved tag", f"tag {tag!r} now points to {where[:12]}, not to the logged commit {lineage.lakefs_commit[:12]} "
                "(it was deleted and created again elsewhere)"))
    try:
        lakefs.resolve(lineage.lakefs_commit)
    except RefNotFoundError:
        differences.append(Difference(
            "missing commit", f"commit {lineage.lakefs_commit[:12]} is not in lakeFS repository {lakefs.repository} "
            "(garbage-collected, or another repository)"))
    return differences


@contextmanager
def feature_repo_at(lineage: DataLineage, code_root: Path) -> Iterator[tuple[Path | None, list[Difference], list[str]]]:
    """The Feast repo as it was at training time: the files of the code repository at the logged
    commit; a repo outside Git only if its files are unchanged."""
    logged = lineage.feast_repo_commit
    notes: list[str] = []
    if logged.startswith("content-sha256:"):
        path = Path(lineage.feast_repo_path)
        path = path if path.is_absolute() else code_root / path
        if path.is_dir() and git_state(path).commit == logged:
            yield path, [], ["the feature repo is not in Git; its files hash as at training time"]
        else:
            yield None, [Difference("changed definitions", f"the feature repo {path} is not in Git and its files changed "
                                                           f"since training ({logged})")], notes
        return
    if lineage.feast_repo_dirty:
        notes.append(f"training used uncommitted changes to the feature repo on top of {logged[:12]}; "
                     "it is rebuilt with the committed definitions")
    path = Path(lineage.feast_repo_path)
    path = path if path.is_absolute() else code_root / path
    top = _git_toplevel(path) or code_root
    inside = path.resolve().relative_to(top) if path.resolve().is_relative_to(top) else Path(lineage.feast_repo_path)
    if subprocess.run(["git", "-C", str(top), "cat-file", "-e", f"{logged}^{{commit}}"],
                      capture_output=True).returncode != 0:
        yield None, [Difference("changed definitions", f"Git commit {logged[:12]} of the feature repo is not in "
                                                       f"{top}; fetch it and reproduce again")], notes
        return
    folder = Path(tempfile.mkdtemp(prefix="mlv-reproduce-"))
    try:
        problem = _export(top, logged, inside, folder)
        if problem:
            yield None, [Difference("changed definitions", problem)], notes
        else:
            yield folder / inside, [], notes
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _export(top: Path, commit: str, inside: Path, folder: Path) -> str | None:
    """The files of `inside` at `commit` under `folder` (`git archive`: no worktree, nothing left in
    the repository); what went wrong, if anything."""
    spec = "." if str(inside) in ("", ".") else inside.as_posix()
    archive = subprocess.run(["git", "-C", str(top), "archive", "--format=tar", commit, "--", spec],
                             capture_output=True)
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip().splitlines()
        return (f"the feature repo {spec!r} cannot be read at Git commit {commit[:12]} of {top}: "
                f"{reason[-1] if reason else 'git archive failed'}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return None


def _git_toplevel(path: Path) -> Path | None:
    """The root of the Git work tree holding `path` (None when there is none, or no such path)."""
    probe = path if path.is_dir() else path.parent
    if not probe.is_dir():
        return None
    done = subprocess.run(["git", "-C", str(probe), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


def rebuild(spark: Any, tables: Any, lakefs: LakeFS, lineage: DataLineage, feature_repo: Path,
            report: Reproduction) -> None:
    """Rebuild every logged split at the logged commit and compare (adds to `report`)."""
    request = TrainingSetRequest(
        feature_repo=feature_repo, features=lineage.feast_feature_service or tuple(lineage.feature_refs),
        ref=lineage.lakefs_commit, split_version=lineage.split_version, splits=tuple(lineage.splits),
        labels=tuple(lineage.label_columns), full_feature_names=lineage.full_feature_names)
    try:
        _compare(spark, tables, lakefs, lineage, request, report)
    except (FeatureDefinitionError, SplitVersionError, InvalidInputError) as exc:
        report.differences.append(Difference("changed definitions", f"the training set cannot be built as logged: {exc}"))
    except Exception as exc:  # noqa: BLE001 - only a gone object is a finding; anything else is re-raised
        gone = _gone(str(exc), lakefs.repository, lineage.lakefs_commit)
        if gone is None:
            raise
        report.differences.append(Difference(
            "missing data", f"an object of commit {lineage.lakefs_commit[:12]} is gone from the storage ({gone}): "
            "garbage collection or retention removed it; `jobs/doctor.py` warns about such tags before it happens"))


#: How a removed object surfaces through lakeFS's S3 gateway and Hadoop's S3A reader.
_GONE = re.compile(r"FileNotFoundException[^\n]{0,300}|Status Code: 410[^\n]{0,80}|\b410 Gone\b|NoSuchKey[^\n]{0,300}")


def _gone(text: str, repository: str, commit: str) -> str | None:
    """The line saying an object of `commit` in `repository` is gone, if the error is that
    (a missing local file, or a path of another ref, is not)."""
    for found in _GONE.finditer(text):
        line = found.group(0)
        if f"{repository}/{commit}" in line or ("410" in line and repository in text):
            return line[:300]
    return None


def _compare(spark: Any, tables: Any, lakefs: LakeFS, lineage: DataLineage, request: TrainingSetRequest,
             report: Reproduction) -> None:
    computed = compute_training_set(spark, tables, lakefs, request, lineage.lakefs_commit, verify_split_version=False)
    registry = SplitRegistry(tables, lineage.lakefs_commit)
    try:  # the per-split comparison below says where the rows differ
        registry.verify(lineage.split_version, registry.require(lineage.split_version)[1])
    except SplitVersionError as exc:
        report.differences.append(Difference("different rows", str(exc)))
    if computed.feature_refs != list(lineage.feature_refs):
        report.differences.append(Difference(
            "changed definitions", f"the features are now {computed.feature_refs}, the lineage logged "
                                   f"{list(lineage.feature_refs)}"))
    schema_hash = feature_schema_hash(computed.df, computed.feature_columns)
    if schema_hash != lineage.feature_schema_hash:
        report.differences.append(Difference(
            "schema drift", f"feature schema hash {schema_hash}, logged {lineage.feature_schema_hash}"))
    fingerprint = content_fingerprint(computed.df, count_by="split")
    for split, logged in lineage.splits.items():
        rows, digest = fingerprint.counts.get(split, 0), fingerprint.digests.get(split, "")
        report.rebuilt[split] = {"rows": rows, "fingerprint": digest}
        if digest != logged.fingerprint:
            how = (f"{rows:,d} rows rebuilt against {logged.rows:,d} logged ({rows - logged.rows:+,d})"
                   if rows != logged.rows else f"the same {rows:,d} rows in number, with different content")
            report.differences.append(Difference("different rows", how, split))


def reproduce(lineage: DataLineage, *, model: str, version: str, tag: str | None, lakefs: LakeFS,
              session: Callable[[], tuple[Any, Any]], code_root: Path) -> Reproduction:
    """The whole check; `session()` starts Spark (and gives its Tables) only when a rebuild runs."""
    started = time.monotonic()
    report = Reproduction(model, version, lineage)
    report.differences += check_refs(lakefs, lineage, tag)
    if any(d.kind == "missing commit" for d in report.differences):
        return report
    with feature_repo_at(lineage, code_root) as (repo, differences, notes):
        report.differences += differences
        report.notes += notes
        if repo is not None:
            spark, tables = session()
            mark = time.monotonic()
            rebuild(spark, tables, lakefs, lineage, repo, report)
            report.seconds["rebuild"] = round(time.monotonic() - mark, 3)
    report.seconds["total"] = round(time.monotonic() - started, 3)
    return report
