"""The one lakeFS client of mlv-spark, and the one parser and builder of lakeFS locations.

`LakeFS` wraps the official `lakefs` SDK for one repository: refs, commits, merges, tags,
diffs, objects and branch protection. Every call goes through `_api`, the one place that maps
SDK errors to mlv-spark exceptions: only a 404 means "not found"; 401/403 are auth errors, a
refused connection or a 5xx is `ServiceUnavailableError`, a 409 a conflict. Names are
validated before lakeFS is called. lakeFS branch names cannot contain '/', so the seed's
`experiments/<name>` maps to a configurable prefix (`exp-<name>` by default).

`LakeFSLocation` is a path at a ref of a repository, however it is written: `lakefs://repo/ref/p`
or `s3a://repo/ref/p` (`s3://`, `s3n://` too: in an mlv-spark session s3a is lakeFS's S3
gateway, so the bucket is the repository).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Literal, Mapping

import lakefs
import lakefs_sdk
import urllib3
from lakefs.exceptions import LakeFSException, ServerException

from mlv_spark.config import LakeFSSettings
from mlv_spark.errors import (
    InvalidInputError,
    InvalidRefNameError,
    LakeFSAuthError,
    LakeFSError,
    MergeConflictError,
    RefNotFoundError,
    RefNotWritableError,
    ServiceUnavailableError,
    TagExistsError,
)
from mlv_spark.log import get_logger

#: Characters no branch or tag name holds, which make a ref an expression for a commit.
_REF_EXPRESSION = re.compile(r"[~^@:]")

log = get_logger(__name__)

_BRANCH_RE = re.compile(r"^\w[-\w]*$")
_REPO_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{64}$")
_LOCATION_RE = re.compile(r"^(?P<scheme>lakefs|s3a|s3n|s3)://(?P<repo>[^/]+)/(?P<ref>[^/]+)(?:/(?P<path>.*))?$")
RefKind = Literal["branch", "tag", "commit"]


def validate_branch_name(name: str) -> str:
    """A lakeFS-valid branch name, or InvalidRefNameError saying how to fix it."""
    if not _BRANCH_RE.match(name or ""):
        hint = re.sub(r"[^-\w]", "-", name or "x").lstrip("-") or "x"
        raise InvalidRefNameError(
            f"invalid branch name {name!r}: lakeFS branch names are letters, digits, '_' and '-' "
            f"(no '/'), starting with a letter, digit or '_'; e.g. {hint!r}"
        )
    return name


def validate_tag_name(name: str) -> str:
    """A lakeFS-valid tag name (git ref rules, no '/'), or InvalidRefNameError."""
    bad = (
        not name or name == "@" or name.endswith((".", ".lock")) or ".." in name or "/" in name
        or "@{" in name or any(c in name for c in "^:?*[\\~") or any(c.isspace() or ord(c) < 32 for c in name)
    )
    if bad:
        hint = re.sub(r"[/\s^:?*\[\\~]+", "-", name or "x").strip("-.") or "x"
        raise InvalidRefNameError(
            f"invalid tag name {name!r}: tags follow git ref rules and cannot contain '/', spaces, "
            f"'..', '^:?*[\\~' or end with '.'/'.lock'; e.g. {hint!r}"
        )
    return name


def validate_repository_name(name: str) -> str:
    if not _REPO_RE.match(name or ""):
        raise InvalidRefNameError(
            f"invalid repository name {name!r}: 3-63 lower-case letters, digits and '-', starting with a letter or digit"
        )
    return name


def is_commit_id(ref: str) -> bool:
    """Whether `ref` is a full lakeFS commit id (64 hex digits)."""
    return bool(_COMMIT_RE.match(ref or ""))


@dataclass(frozen=True)
class LakeFSLocation:
    """`path` (no leading or trailing '/', may be empty) at `ref` of `repository`."""

    repository: str
    ref: str
    path: str = ""

    @staticmethod
    def parse(text: str) -> LakeFSLocation | None:
        """The location `text` names (`lakefs://` or `s3a://`/`s3://`/`s3n://`), None for any
        other path (a local or cluster file system)."""
        match = _LOCATION_RE.match(text or "")
        if match is None:
            if re.match(r"^(lakefs|s3a|s3n|s3)://", text or ""):
                raise InvalidInputError(
                    f"location {text!r} needs a repository and a ref: lakefs://<repository>/<ref>/<path>"
                )
            return None
        path = (match["path"] or "").strip("/")
        if any(part in (".", "..") for part in path.split("/")):
            raise InvalidInputError(f"location {text!r} has '.' or '..' in its path; write the path out")
        return LakeFSLocation(match["repo"], match["ref"], re.sub(r"/+", "/", path))

    def at(self, ref: str) -> LakeFSLocation:
        """The same path at another ref (e.g. pinned to a commit)."""
        return LakeFSLocation(self.repository, ref, self.path)

    def child(self, *parts: str) -> LakeFSLocation:
        joined = "/".join(p.strip("/") for p in (self.path, *parts) if p.strip("/"))
        return LakeFSLocation(self.repository, self.ref, joined)

    @property
    def uri(self) -> str:
        return f"lakefs://{self.repository}/{self.ref}/{self.path}".rstrip("/")

    @property
    def s3a(self) -> str:
        """What Spark reads and writes (through the S3 gateway)."""
        return f"s3a://{self.repository}/{self.ref}/{self.path}".rstrip("/")

    def overlaps(self, other_path: str) -> bool:
        """Whether this path and `other_path` (same ref) contain one another."""
        mine, theirs = self.path + "/", other_path.strip("/") + "/"
        return mine.startswith(theirs) or theirs.startswith(mine)


def pin_path(path: str, repository: str, commit: str) -> str:
    """A lakeFS location of `repository` at any ref, rewritten to `commit` as an s3a URI; any other
    path unchanged."""
    location = LakeFSLocation.parse(path)
    if location is None or location.repository != repository:
        return path
    return location.at(commit).s3a


@dataclass(frozen=True)
class Change:
    path: str
    type: str  # added | removed | changed | conflict | prefix_changed
    size_bytes: int | None


@dataclass(frozen=True)
class CommitInfo:
    id: str
    message: str
    metadata: Mapping[str, str]
    parents: tuple[str, ...]
    creation_date: int = 0


class _ObjectExists(LakeFSError):
    """A conditional upload found an object at its path (409/412)."""


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ServerException):
        return exc.status_code
    if isinstance(exc, lakefs_sdk.exceptions.ApiException):
        return exc.status
    return None


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, (str, bytes)) and body:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        found = re.search(r'"message"\s*:\s*"([^"]*)"', text)
        return found.group(1) if found else text[:200]
    return str(getattr(exc, "reason", "") or exc).splitlines()[0] if str(exc) else type(exc).__name__


class LakeFS:
    """Operations on one lakeFS repository."""

    def __init__(self, settings: LakeFSSettings, repository: str | None = None):
        key_id, secret = settings.require_credentials()
        self.settings = settings
        self.repository = validate_repository_name(repository or settings.repository)
        self.client = lakefs.Client(host=settings.endpoint, username=key_id, password=secret)
        self.repo = lakefs.Repository(self.repository, client=self.client)

    @property
    def default_branch(self) -> str:
        return self.settings.default_branch

    def location(self, ref: str, path: str = "") -> LakeFSLocation:
        return LakeFSLocation(self.repository, ref, path.strip("/"))

    # -- the one error mapping ----------------------------------------------------------------
    def _where(self, ref: str | None = None) -> str:
        return f"lakefs://{self.repository}/{ref}" if ref else f"lakefs://{self.repository}"

    @contextmanager
    def _api(self, action: str, ref: str | None = None, *, conflict: type[LakeFSError] | None = None,
             conflict_hint: str = "", precondition: type[LakeFSError] | None = None) -> Iterator[None]:
        """Map whatever a lakeFS call raises to one mlv-spark exception naming the action and ref."""
        try:
            yield
        except (LakeFSError, ServiceUnavailableError, InvalidInputError):
            raise
        except Exception as exc:  # noqa: BLE001 - this is the mapping
            status = _status(exc)
            message = _message(exc)
            if status == 404:
                raise RefNotFoundError(f"{action}: {self._where(ref)} does not exist ({message})") from exc
            if status in (401, 403):
                if status == 403 and "protected" in message.lower():
                    raise RefNotWritableError(
                        f"{action} at {self._where(ref)} refused: {message}; the branch is protected, so "
                        "changes reach it only by a merge (run the job on an experiment branch)"
                    ) from exc
                raise LakeFSAuthError(
                    f"{action} at {self._where(ref)} refused by lakeFS ({status}: {message}); check "
                    "MLV_LAKEFS_ACCESS_KEY_ID / MLV_LAKEFS_SECRET_ACCESS_KEY and the user's policies"
                ) from exc
            if status == 409 and conflict is not None:
                raise conflict(f"{action} at {self._where(ref)}: {message}{conflict_hint}") from exc
            if status == 412:  # a failed If-None-Match, or a lakeFS hook (pre-merge, pre-commit, …) said no
                if precondition is not None:
                    raise precondition(f"{action} at {self._where(ref)}: {message}") from exc
                raise LakeFSError(f"{action} at {self._where(ref)} was rejected by a lakeFS hook: {message}; "
                                  "see the hook's run in the lakeFS UI (Actions)") from exc
            if status is not None and (status >= 500 or status == 429):
                raise ServiceUnavailableError(
                    f"lakeFS at {self.settings.endpoint} failed during {action} ({status}: {message}); retry later"
                ) from exc
            if status is not None or isinstance(exc, LakeFSException):
                raise LakeFSError(f"{action} at {self._where(ref)} failed: {message}") from exc
            if not isinstance(exc, (OSError, urllib3.exceptions.HTTPError)):
                raise  # not the service: a defect, shown as one
            raise ServiceUnavailableError(
                f"lakeFS at {self.settings.endpoint} is unreachable during {action}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}; start it (make services-up) or fix [lakefs] endpoint"
            ) from exc

    # -- repository -----------------------------------------------------------------------
    def ensure_repository(self, storage_namespace: str | None = None) -> bool:
        """Create the repository (default branch from settings) unless it exists; True when created."""
        namespace = storage_namespace or self.settings.storage_namespace.format(repository=self.repository)
        if self.repository_exists():
            return False
        with self._api("create repository"):
            self.repo.create(storage_namespace=namespace, default_branch=self.default_branch, exist_ok=True)
        log.info("lakefs: created repository %s (%s)", self.repository, namespace)
        return True

    def repository_exists(self) -> bool:
        try:
            with self._api("look up repository"):
                self.client.sdk_client.repositories_api.get_repository(self.repository)
            return True
        except RefNotFoundError:
            return False

    def storage_namespace(self) -> str:
        """Where this repository keeps its objects (e.g. s3://bucket/ml-data or local://ml-data)."""
        with self._api("look up repository"):
            return str(self.client.sdk_client.repositories_api.get_repository(self.repository).storage_namespace)

    def delete_repository(self) -> None:
        try:
            with self._api("delete repository"):
                self.repo.delete()
        except RefNotFoundError:
            return

    def protect_branch(self, branch: str) -> bool:
        """A branch protection rule for `branch` (no direct writes or commits, merges only);
        True when it was added, False when it was there already."""
        api = self.client.sdk_client.repositories_api
        with self._api("read branch protection rules"):
            rules = list(api.get_branch_protection_rules(self.repository) or [])
        if any(rule.pattern == branch for rule in rules):
            return False
        rules.append(lakefs_sdk.BranchProtectionRule(pattern=branch))
        with self._api("set branch protection rules", branch):
            api.set_branch_protection_rules(self.repository, rules)
        log.info("lakefs: protected branch %s (merges only)", branch)
        return True

    def protected_branches(self) -> list[str]:
        with self._api("read branch protection rules"):
            return [r.pattern for r in self.client.sdk_client.repositories_api.get_branch_protection_rules(self.repository) or []]

    def gc_rules(self) -> dict[str, int] | None:
        """The garbage-collection retention rules (branch -> days, "*" the default), None when the
        repository has none (then lakeFS never hard-deletes committed data)."""
        try:
            with self._api("read garbage-collection rules"):
                rules = self.client.sdk_client.repositories_api.get_gc_rules(self.repository)
        except RefNotFoundError:
            return None
        return {"*": int(rules.default_retention_days), **{r.branch_id: int(r.retention_days) for r in rules.branches or []}}

    def set_gc_rules(self, default_days: int, branches: Mapping[str, int] | None = None) -> None:
        rules = lakefs_sdk.GarbageCollectionRules(
            default_retention_days=default_days,
            branches=[lakefs_sdk.GarbageCollectionRule(branch_id=b, retention_days=d) for b, d in (branches or {}).items()])
        with self._api("set garbage-collection rules"):
            self.client.sdk_client.repositories_api.set_gc_rules(self.repository, rules)

    # -- refs -----------------------------------------------------------------------------
    def experiment_branch(self, name: str) -> str:
        """Map an experiment name (e.g. `exp-123-new-embeddings` or `experiments/x`) to a branch name."""
        slug = name.split("/", 1)[1] if name.startswith("experiments/") else name
        prefix = self.settings.experiment_prefix
        return validate_branch_name(slug if slug.startswith(prefix) else f"{prefix}{slug}")

    def branch_exists(self, branch: str) -> bool:
        try:
            with self._api("look up branch", branch):
                self.client.sdk_client.branches_api.get_branch(self.repository, branch)
            return True
        except RefNotFoundError:
            return False

    def tag_commit(self, tag: str) -> str | None:
        """The commit a tag points to, None when there is no such tag."""
        try:
            with self._api("look up tag", tag):
                return str(self.client.sdk_client.tags_api.get_tag(self.repository, tag).commit_id)
        except RefNotFoundError:
            return None

    def ref_kind(self, ref: str) -> RefKind:
        """Whether `ref` names a branch, a tag or a commit; RefNotFoundError when none. Only a
        404 means "not this kind": an outage or an auth failure is raised as such. An expression
        (`main~1`, `v1^`, `main@`) names a commit."""
        if _REF_EXPRESSION.search(ref or ""):
            self.resolve(ref)
            return "commit"
        if self.branch_exists(ref):
            return "branch"
        if self.tag_commit(ref) is not None:
            return "tag"
        self.resolve(ref)
        return "commit"

    def require_branch(self, ref: str) -> str:
        """`ref` if it is a branch; RefNotWritableError for tags and commits."""
        kind = self.ref_kind(ref)
        if kind != "branch":
            raise RefNotWritableError(
                f"cannot write at {self._where(ref)}: it is a {kind}, and only branches are writable; "
                f"create a branch from it first"
            )
        return ref

    def resolve(self, ref: str) -> str:
        """The commit id a branch, tag, commit id or expression (`main~1`) points to now."""
        if not ref:
            raise InvalidInputError("an empty ref names nothing; give a branch, tag or commit id")
        with self._api("resolve ref", ref):
            return str(self.repo.ref(ref).get_commit().id)

    def get_commit(self, ref: str) -> CommitInfo:
        with self._api("read commit", ref):
            commit = self.repo.ref(ref).get_commit()
        return CommitInfo(commit.id, commit.message, dict(commit.metadata or {}), tuple(commit.parents or ()),
                          int(commit.creation_date or 0))

    def log(self, ref: str, limit: int = 100) -> list[CommitInfo]:
        """The latest `limit` commits reachable from `ref`, newest first."""
        with self._api("read the commit log", ref):
            return [CommitInfo(c.id, c.message, dict(c.metadata or {}), tuple(c.parents or ()), int(c.creation_date or 0))
                    for c in self.repo.ref(ref).log(max_amount=limit)]

    def branches(self, prefix: str = "") -> dict[str, str]:
        """Branch name -> head commit id, for the branches starting with `prefix`."""
        with self._api("list branches"):
            return {b.id: b.get_commit().id for b in self.repo.branches(prefix=prefix)}

    def tags(self, prefix: str = "") -> dict[str, str]:
        """Tag name -> commit id."""
        with self._api("list tags"):
            return {t.id: t.get_commit().id for t in self.repo.tags(prefix=prefix)}

    def create_branch(self, branch: str, source: str) -> str:
        """Create `branch` from `source`; returns the commit id it starts at."""
        validate_branch_name(branch)
        source_commit = self.resolve(source)
        with self._api("create branch", branch, conflict=LakeFSError,
                       conflict_hint="; the branch already exists: pick another name or delete it"):
            self.repo.branch(branch).create(source_reference=source_commit)
        log.info("lakefs: created branch %s from %s @ %s", branch, source, source_commit[:12])
        return source_commit

    def delete_branch(self, branch: str) -> None:
        if branch == self.default_branch:
            raise RefNotWritableError(f"refusing to delete the default branch {self._where(branch)}")
        with self._api("delete branch", branch):
            self.repo.branch(branch).delete()
        log.info("lakefs: deleted branch %s", branch)

    def commit(self, branch: str, message: str, metadata: Mapping[str, object] | None = None,
               allow_empty: bool = False) -> str:
        """Commit the branch's staged changes with string metadata; returns the commit id."""
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        with self._api("commit", branch):
            commit_id = str(self.repo.branch(branch).commit(message=message, metadata=meta,
                                                             allow_empty=allow_empty).get_commit().id)
        log.info("lakefs: committed %s @ %s: %s", branch, commit_id[:12], message)
        return commit_id

    def merge(self, source: str, destination: str, message: str | None = None,
              metadata: Mapping[str, object] | None = None) -> str:
        """Merge `source` into branch `destination` atomically; a conflict leaves it unchanged."""
        self.require_branch(destination)
        kwargs: dict[str, object] = {}
        if message:
            kwargs["message"] = message
        if metadata:
            kwargs["metadata"] = {str(k): str(v) for k, v in metadata.items()}
        with self._api(f"merge into {destination}", source, conflict=MergeConflictError, conflict_hint=(
                f"; both sides changed the same objects, and {destination} is unchanged. Rerun the change "
                f"on a branch from {destination}'s current head")):
            commit_id = str(self.repo.ref(source).merge_into(self.repo.branch(destination), **kwargs))
        log.info("lakefs: merged %s into %s @ %s", source, destination, commit_id[:12])
        return commit_id

    def check_tag(self, tag: str, commit_id: str | None = None) -> str | None:
        """Validate `tag`; the commit it points to when it exists. With `commit_id`, a tag at
        another commit is a TagExistsError (tags are never moved)."""
        validate_tag_name(tag)
        existing = self.tag_commit(tag)
        if existing is not None and commit_id is not None and existing != commit_id:
            raise TagExistsError(
                f"tag {self._where(tag)} already points to {existing[:12]}; tags are never moved "
                f"(wanted {commit_id[:12]}); choose a new tag name"
            )
        return existing

    def tag(self, tag: str, ref: str) -> str:
        """Create an immutable tag at `ref`'s commit; returns the commit id.

        Re-tagging the same commit is a no-op; pointing an existing tag elsewhere is refused.
        """
        commit_id = self.resolve(ref)
        if self.check_tag(tag, commit_id) is not None:
            return commit_id
        with self._api("create tag", tag, conflict=TagExistsError, conflict_hint="; tags are never moved"):
            self.repo.tag(tag).create(commit_id)
        log.info("lakefs: tagged %s -> %s", tag, commit_id[:12])
        return commit_id

    def delete_tag(self, tag: str) -> None:
        with self._api("delete tag", tag):
            self.repo.tag(tag).delete()

    def diff(self, left: str, right: str, prefix: str | None = None, *, two_dot: bool = False) -> list[Change]:
        """Committed differences between two refs: what `right` changed since their merge base, or
        (`two_dot`) every difference between the two."""
        kwargs = {"type": "two_dot"} if two_dot else {}
        with self._api(f"diff against {right}", left):
            return [Change(c.path, c.type, c.size_bytes)
                    for c in self.repo.ref(left).diff(other_ref=right, prefix=prefix or "", **kwargs)]

    def uncommitted(self, branch: str, prefix: str | None = None) -> list[Change]:
        with self._api("list uncommitted changes", branch):
            return [Change(c.path, c.type, c.size_bytes) for c in self.repo.branch(branch).uncommitted(prefix=prefix or "")]

    def put_object(self, branch: str, path: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Upload one (small) object to a branch, uncommitted."""
        self.require_branch(branch)
        with self._api(f"upload {path}", branch):
            self.repo.branch(branch).object(path).upload(data, content_type=content_type)

    def put_object_if_absent(self, branch: str, path: str, data: bytes) -> bool:
        """Upload `path` only if the branch has no object there (atomically, If-None-Match: *);
        False when one exists."""
        try:
            with self._api(f"upload {path}", branch, conflict=_ObjectExists, precondition=_ObjectExists):
                self.client.sdk_client.objects_api.upload_object(self.repository, branch, path, if_none_match="*",
                                                                 content=data)
            return True
        except _ObjectExists:
            return False

    def delete_object(self, branch: str, path: str) -> None:
        try:
            with self._api(f"delete {path}", branch):
                self.repo.branch(branch).object(path).delete()
        except RefNotFoundError:
            return

    def read_object(self, ref: str, path: str) -> bytes:
        with self._api(f"read {path}", ref):
            with self.repo.ref(ref).object(path).reader(mode="rb") as handle:
                return handle.read()

    def object_exists(self, ref: str, path: str) -> bool:
        with self._api(f"look up {path}", ref):
            return bool(self.repo.ref(ref).object(path).exists())

    def reset_prefix(self, branch: str, prefix: str) -> None:
        """Drop the branch's uncommitted changes under `prefix` (used to undo a failed write)."""
        with self._api(f"reset uncommitted changes under {prefix!r}", branch):
            self.repo.branch(branch).reset_changes(path_type="common_prefix", path=prefix)

    def reset_branch(self, branch: str) -> None:
        """Drop every uncommitted change of `branch`."""
        with self._api("reset uncommitted changes", branch):
            self.repo.branch(branch).reset_changes(path_type="reset")

    def has_unmerged_changes(self, branch: str, target: str) -> bool:
        """Whether `branch` holds work that `target` lacks: commits since their merge base, or
        uncommitted changes."""
        with self._api(f"diff against {target}", branch):
            if next(iter(self.repo.ref(target).diff(other_ref=branch, max_amount=1)), None) is not None:
                return True
        return bool(self.uncommitted(branch)[:1])

    def list_dir(self, ref: str, prefix: str = "") -> tuple[list[str], list[tuple[str, int]]]:
        """What lies right below `prefix` at `ref`: the "directories" (common prefixes, each
        ending in '/') and the objects with their sizes."""
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        dirs, files = [], []
        with self._api(f"list {prefix or '/'}", ref):
            for entry in self.repo.ref(ref).objects(prefix=prefix, delimiter="/"):
                size = getattr(entry, "size_bytes", None)
                if size is None:
                    dirs.append(entry.path)
                else:
                    files.append((entry.path, int(size)))
        return dirs, files

    def objects(self, ref: str, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(path, size in bytes) of every object under `prefix` at `ref`."""
        for path, _, size in self.stored_objects(ref, prefix):
            yield path, size

    def stored_objects(self, ref: str, prefix: str = "") -> Iterator[tuple[str, str, int]]:
        """(path, physical address, size in bytes) of every object under `prefix` at `ref`."""
        with self._api(f"list objects under {prefix!r}", ref):
            for obj in self.repo.ref(ref).objects(prefix=prefix):
                size = getattr(obj, "size_bytes", None)
                if size is not None:
                    yield obj.path, obj.physical_address, int(size)

    def size_bytes(self, ref: str, prefix: str) -> int:
        """Total stored bytes under `prefix` at `ref` (measured, not estimated)."""
        return sum(size for _, size in self.objects(ref, prefix))
