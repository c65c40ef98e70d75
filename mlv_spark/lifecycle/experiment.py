"""One mechanism for every writing job: an experiment branch from a source ref pinned to its
commit → write → validate → commit → merge into the target → tag the merge commit → delete.

Every step is recorded in lakeFS itself, so a rerun of the same work resumes where a crash
stopped it and never redoes or duplicates a finished step:

* the branch's first commit (empty) marks it as ours: the work's owner (e.g.
  `pipeline:fraud_features`), the hash of its parameters and the source commit;
* the data commit on the branch carries `mlv.lifecycle=commit` and the same hash;
* the merge commit on the target carries the experiment, the branch head it merged and the hash.

Everything that can be checked is checked before anything is written (`plan`): names, the
source ref, the target branch, a tag that is free or already at this work's merge commit, a
branch of that name holding other work. A failure of the work itself (not a crash) leaves no
trace: a branch this run created is deleted again, a resumed one is reset to its last commit —
except a failed validation, which keeps the branch for inspection and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from mlv_spark.errors import InvalidInputError, LakeFSError, MlvError, TagExistsError
from mlv_spark.lakefs import CommitInfo, LakeFS, validate_branch_name, validate_tag_name
from mlv_spark.lifecycle.lease import LEASE_PATH, BranchBusy, Lease
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.lifecycle")

#: Test switch: crash (exit 70, no clean-up) right after this step: write, commit or merge.
FAIL_AFTER_ENV = "MLV_FAIL_AFTER"
FAULT_EXIT_CODE = 70
_STEPS = ("write", "commit", "merge")
#: How far back the target's log is searched for this work's merge commit.
MERGE_SEARCH_DEPTH = 1000


class ValidationFailed(MlvError):
    """The written data broke a declared rule; nothing was committed, the branch was kept."""


@dataclass(frozen=True)
class ExperimentPlan:
    """What an experiment will do, checked before anything is written."""

    experiment: str
    branch: str
    owner: str
    params_hash: str
    source_ref: str
    source_commit: str
    merge_into: str | None
    tag: str | None
    delete_branch: bool
    resume: bool  # the branch exists and holds this work
    merged_commit: str | None = None  # this work was merged already (found on the target)
    committed_commit: str | None = None  # the branch holds this work's commit already

    @property
    def needs_write(self) -> bool:
        """Whether the work still has to be written (nothing committed or merged yet)."""
        return self.merged_commit is None and self.committed_commit is None


@dataclass
class ExperimentResult:
    """The summary every writing job prints (one JSON line)."""

    experiment: str
    branch: str
    source_commit: str
    commit: str | None = None
    merge_commit: str | None = None
    tag: str | None = None
    branch_deleted: bool = False
    resumed: list[str] = field(default_factory=list)  # steps found done and skipped
    written: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def params_hash(owner: str, params: Mapping[str, Any]) -> str:
    """Identity of a piece of work: who does it with which parameters."""
    text = json.dumps({"owner": owner, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(lakefs: LakeFS, *, experiment: str, owner: str, params: Mapping[str, Any], source_ref: str | None = None,
         merge_into: str | None = None, tag: str | None = None, delete_branch: bool = False) -> ExperimentPlan:
    """Check everything an experiment needs before it writes anything; see the module doc."""
    branch = lakefs.experiment_branch(experiment)
    source_ref = source_ref or lakefs.default_branch
    if tag is not None:
        validate_tag_name(tag)
        if merge_into is None:
            raise InvalidInputError(f"--tag {tag!r} tags the merge commit: also give --merge-into (e.g. main)")
    if delete_branch and merge_into is None:
        raise InvalidInputError("--delete-branch deletes the branch after its merge: also give --merge-into")
    if merge_into is not None:
        validate_branch_name(merge_into)
        if merge_into == branch:
            raise InvalidInputError(f"--merge-into {merge_into!r} is the experiment branch itself; name the target")
        if not lakefs.branch_exists(merge_into):
            raise InvalidInputError(f"--merge-into {merge_into!r}: no such branch in {lakefs.repository}; create it first")
    if branch == lakefs.default_branch:
        raise InvalidInputError(f"experiment {experiment!r} maps to the default branch {branch!r}; choose another name")
    source_commit = lakefs.resolve(source_ref)
    digest = params_hash(owner, params)
    resume = False
    committed = None
    merged = _find_merge(lakefs, merge_into, branch, digest) if merge_into else None
    if merged is not None:  # finished up to the merge: only the tag and the clean-up can be left
        source_commit = merged.metadata.get("mlv.source_commit", source_commit)
        resume = lakefs.branch_exists(branch)
    elif lakefs.branch_exists(branch):
        marker = _marker(lakefs, branch, [source_ref, *([merge_into] if merge_into else []), lakefs.default_branch])
        if marker is None or marker.metadata.get("mlv.owner") != owner or marker.metadata.get("mlv.params_hash") != digest:
            held = (f"{marker.metadata.get('mlv.owner')} ({marker.metadata.get('mlv.experiment')}) with other parameters"
                    if marker is not None else "work not made by this experiment")
            raise LakeFSError(
                f"branch {branch!r} already exists and holds {held}; choose another --experiment name, or delete the "
                f"branch (jobs/cleanup_branches.py --prefix {branch} --force) if it is abandoned"
            )
        recorded = marker.metadata.get("mlv.source_commit", source_commit)
        if recorded != source_commit and marker.metadata.get("mlv.source_ref") != source_ref:
            raise LakeFSError(
                f"branch {branch!r} was opened from {marker.metadata.get('mlv.source_ref')} @ {recorded[:12]}, not from "
                f"{source_ref} @ {source_commit[:12]}; rerun with --source-ref {recorded}, or choose another --experiment")
        resume = True
        source_commit = recorded
        head = lakefs.get_commit(branch)
        if head.metadata.get("mlv.lifecycle") == "commit" and head.metadata.get("mlv.params_hash") == digest:
            committed = head.id
    if tag is not None:
        existing = lakefs.check_tag(tag)
        if existing is not None and existing != (merged.id if merged else None):
            raise TagExistsError(
                f"tag {tag!r} already points to {existing[:12]}, not to this experiment's merge; tags are never "
                "moved: choose a new tag name"
            )
    return ExperimentPlan(experiment, branch, owner, digest, source_ref, source_commit, merge_into, tag,
                          delete_branch, resume, merged.id if merged else None, committed)


def run(
    lakefs: LakeFS,
    plan: ExperimentPlan,
    write: Callable[[str], Mapping[str, Any]],
    *,
    validate: Callable[[str, Mapping[str, Any]], list[str]] | None = None,
    message: str,
    metadata: Mapping[str, object] | None = None,
) -> ExperimentResult:
    """Run the lifecycle: `write(branch)` writes (and returns what it wrote, for the summary and
    `validate`), `validate(branch, written)` returns the broken rules (none: commit)."""
    result = ExperimentResult(plan.experiment, plan.branch, plan.source_commit, tag=plan.tag)
    if plan.merged_commit is not None:  # finished before: at most the tag and the clean-up are left
        result.merge_commit = plan.merged_commit
        result.resumed += ["write", "commit", "merge"]
        log.info("lifecycle: %s was merged into %s before (@ %s): nothing to redo", plan.branch, plan.merge_into,
                 plan.merged_commit[:12])
        _finish(lakefs, plan, result)
        return result

    created = False
    with _timed(result, "open"):
        if not plan.resume:
            lakefs.create_branch(plan.branch, plan.source_commit)
            created = True
            try:  # the branch and its marker, or neither
                lakefs.commit(plan.branch, f"open experiment {plan.experiment}", {
                    "mlv.lifecycle": "open", "mlv.owner": plan.owner, "mlv.params_hash": plan.params_hash,
                    "mlv.source_ref": plan.source_ref, "mlv.source_commit": plan.source_commit,
                    "mlv.experiment": plan.experiment,
                }, allow_empty=True)
            except BaseException:
                _undo(lakefs, plan, created)
                raise
        else:
            log.info("lifecycle: resuming %s (created from %s)", plan.branch, plan.source_commit[:12])

    if plan.committed_commit is not None:
        result.commit = plan.committed_commit
        result.resumed += ["write", "commit"]
        result.written = json.loads(lakefs.get_commit(plan.committed_commit).metadata.get("mlv.written", "{}"))
        log.info("lifecycle: %s already holds the committed work (@ %s)", plan.branch, plan.committed_commit[:12])
    else:
        lease = Lease(lakefs, plan.branch)
        try:
            lease.take()
        except BranchBusy:
            raise  # the branch is another live run's: never undone from here
        except BaseException:
            if created:
                _undo(lakefs, plan, created)
            raise
        head = lakefs.get_commit(plan.branch)
        if head.metadata.get("mlv.lifecycle") == "commit" and head.metadata.get("mlv.params_hash") == plan.params_hash:
            lease.release()  # another run of this work committed it after this one planned
            raise BranchBusy(f"another run committed this work on {plan.branch!r} (@ {head.id[:12]}) while this "
                             "one started; rerun the same command to merge it")
        try:
            unfinished = sorted({c.path.split("/", 1)[0] + "/" for c in lakefs.uncommitted(plan.branch)
                                 if c.path != LEASE_PATH})
            if unfinished:
                log.info("lifecycle: dropping unfinished writes on %s (a run stopped before its commit)", plan.branch)
                for prefix in unfinished:
                    lakefs.reset_prefix(plan.branch, prefix)
            with _timed(result, "write"):
                result.written = dict(write(plan.branch))
            _maybe_fail("write")
            with _timed(result, "validate"):
                problems = validate(plan.branch, result.written) if validate is not None else []
            lease.release()
        except BranchBusy:
            raise  # taken over while writing: the branch is the other run's now
        except BaseException:
            try:
                lease.release()
            except BranchBusy:
                raise
            _undo(lakefs, plan, created)
            raise
        if problems:
            raise ValidationFailed(
                f"validation of {plan.branch} failed, nothing was committed: " + "; ".join(problems)
                + f". The written data stays on branch {plan.branch!r} for inspection "
                f"(lakefs://{lakefs.repository}/{plan.branch}/); fix the pipeline and rerun, or delete the branch"
            )
        with _timed(result, "commit"):
            result.commit = lakefs.commit(plan.branch, message, {
                **{str(k): str(v) for k, v in (metadata or {}).items()},
                "mlv.lifecycle": "commit", "mlv.owner": plan.owner, "mlv.params_hash": plan.params_hash,
                "mlv.experiment": plan.experiment, "mlv.source_commit": plan.source_commit,
                "mlv.written": _bounded_json(result.written),
            })
        _maybe_fail("commit")

    if plan.merge_into is None:
        log.info("lifecycle: committed on %s; merge it with --merge-into <branch> when it is ready", plan.branch)
        return result
    with _timed(result, "merge"):
        result.merge_commit = lakefs.merge(plan.branch, plan.merge_into, f"merge experiment {plan.experiment}", {
            "mlv.lifecycle": "merge", "mlv.experiment": plan.experiment, "mlv.branch": plan.branch,
            "mlv.branch_head": result.commit, "mlv.params_hash": plan.params_hash, "mlv.owner": plan.owner,
            "mlv.source_commit": plan.source_commit,
        })
    _maybe_fail("merge")
    _finish(lakefs, plan, result)
    return result


def _bounded_json(value: Mapping[str, Any], limit: int = 4000) -> str:
    """`value` as JSON for commit metadata, or a note that it was too long to keep there."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else json.dumps({"omitted": f"{len(text)} characters"})


def _finish(lakefs: LakeFS, plan: ExperimentPlan, result: ExperimentResult) -> None:
    """Tag the merge commit and delete the branch (both idempotent)."""
    assert result.merge_commit is not None
    if plan.tag is not None:
        with _timed(result, "tag"):
            lakefs.tag(plan.tag, result.merge_commit)
    if plan.delete_branch:
        with _timed(result, "delete"):
            if lakefs.branch_exists(plan.branch):
                head = lakefs.resolve(plan.branch)
                if head != (result.commit or lakefs.get_commit(result.merge_commit).metadata.get("mlv.branch_head")):
                    log.warning("lifecycle: branch %s now holds other work (head %s): not deleting it", plan.branch,
                                head[:12])
                    return
                lakefs.delete_branch(plan.branch)
            result.branch_deleted = True


def _marker(lakefs: LakeFS, branch: str, bases: list[str]) -> CommitInfo | None:
    """The branch's own opening commit (among the commits it has that `bases` lack), when
    mlv-spark opened it; history it shares with them (merged experiments) does not count."""
    shared = {c.id for base in dict.fromkeys(bases) for c in lakefs.log(base, limit=MERGE_SEARCH_DEPTH)}
    for commit in lakefs.log(branch, limit=200):
        if commit.id in shared:
            return None
        if commit.metadata.get("mlv.lifecycle") == "open":
            return commit
    return None


def _find_merge(lakefs: LakeFS, target: str, branch: str, digest: str) -> CommitInfo | None:
    """This work's merge commit on `target`: the newest merge of the experiment branch, if it
    merged this very work. An older merge of it, with other work of the branch merged since, is
    refused (rerunning it would silently undo the newer work); no merge of it: None."""
    newer = None
    for commit in lakefs.log(target, limit=MERGE_SEARCH_DEPTH):
        meta = commit.metadata
        if meta.get("mlv.lifecycle") != "merge" or meta.get("mlv.branch") != branch:
            continue
        if meta.get("mlv.params_hash") == digest:
            if newer is None:
                return commit
            raise InvalidInputError(
                f"this work was merged into {target} from {branch!r} before (@ {commit.id[:12]}), and other work of "
                f"that experiment was merged after it (@ {newer.id[:12]}); running it again would undo that. To "
                "apply it again on purpose, run it under a new --experiment name")
        newer = newer or commit
    return None


def _undo(lakefs: LakeFS, plan: ExperimentPlan, created: bool) -> None:
    """After a failed write: no trace of this run (a branch it created is deleted, a resumed one reset)."""
    try:
        if created:
            lakefs.delete_branch(plan.branch)
        else:
            lakefs.reset_branch(plan.branch)
    except Exception as exc:  # noqa: BLE001 - keep the original failure
        log.warning("lifecycle: could not clean up %s after the failure: %s", plan.branch, exc)


def _maybe_fail(step: str) -> None:
    wanted = os.environ.get(FAIL_AFTER_ENV, "").strip().lower()
    if wanted and wanted not in _STEPS:
        raise InvalidInputError(f"{FAIL_AFTER_ENV}={wanted!r}: use one of {', '.join(_STEPS)}")
    if wanted == step:
        print(f"injected fault: stopping right after the {step} step ({FAIL_AFTER_ENV})", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(FAULT_EXIT_CODE)


class _timed:
    def __init__(self, result: ExperimentResult, step: str):
        self.result, self.step = result, step

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, kind, *_: object) -> None:
        seconds = time.monotonic() - self.started
        self.result.seconds[self.step] = round(seconds, 3)
        if kind is None:
            log.info("lifecycle: %s %s in %.1fs", self.step, self.result.branch, seconds)
