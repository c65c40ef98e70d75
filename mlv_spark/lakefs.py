"""The one lakeFS client of mlv-spark: repositories, branches, commits, merges, tags, diffs.

Wraps the official `lakefs` SDK and maps its errors to mlv-spark exceptions that name the
repository and ref. Names are validated before lakeFS is called. lakeFS branch names cannot
contain '/', so the `experiments/<name>` convention maps to a configurable prefix
(`exp-<name>` by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Literal, Mapping

import lakefs
from lakefs.exceptions import ConflictException, LakeFSException, NotFoundException, ServerException

from mlv_spark.config import LakeFSSettings
from mlv_spark.errors import (
    InvalidRefNameError,
    LakeFSError,
    MlvError,
    MergeConflictError,
    RefNotFoundError,
    RefNotWritableError,
    ServiceUnavailableError,
    TagExistsError,
)
from mlv_spark.log import get_logger

log = get_logger(__name__)

_BRANCH_RE = re.compile(r"^\w[-\w]*$")
_REPO_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{64}$")
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
        or "@{" in name or any(c in name for c in "^:?*[\\") or any(c.isspace() or ord(c) < 32 for c in name)
    )
    if bad:
        hint = re.sub(r"[/\s^:?*\[\\]+", "-", name or "x").strip("-.") or "x"
        raise InvalidRefNameError(
            f"invalid tag name {name!r}: tags follow git ref rules and cannot contain '/', spaces, "
            f"'..', '^:?*[\\' or end with '.'/'.lock'; e.g. {hint!r}"
        )
    return name


def validate_repository_name(name: str) -> str:
    if not _REPO_RE.match(name or ""):
        raise InvalidRefNameError(
            f"invalid repository name {name!r}: 3-63 lower-case letters, digits and '-', starting with a letter or digit"
        )
    return name


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


class LakeFS:
    """Operations on one lakeFS repository."""

    def __init__(self, settings: LakeFSSettings, repository: str | None = None):
        key_id, secret = settings.require_credentials()
        self.settings = settings
        self.repository = validate_repository_name(repository or settings.repository)
        self.client = lakefs.Client(host=settings.endpoint, username=key_id, password=secret)
        self.repo = lakefs.Repository(self.repository, client=self.client)

    # -- helpers --------------------------------------------------------------------------
    def _where(self, ref: str | None = None) -> str:
        return f"lakefs://{self.repository}/{ref}" if ref else f"lakefs://{self.repository}"

    def _fail(self, exc: Exception, action: str, ref: str | None = None) -> MlvError:
        if isinstance(exc, NotFoundException):
            return RefNotFoundError(f"{action}: {self._where(ref)} does not exist")
        if isinstance(exc, ServerException):
            message = exc.body.get("message") if isinstance(exc.body, dict) else None
            return LakeFSError(f"{action} at {self._where(ref)} failed: {message or exc}")
        if isinstance(exc, LakeFSException):
            return LakeFSError(f"{action} at {self._where(ref)} failed: {exc}")
        return ServiceUnavailableError(f"lakeFS at {self.settings.endpoint} unreachable during {action}: {exc}")

    # -- repository -----------------------------------------------------------------------
    def ensure_repository(self, storage_namespace: str | None = None) -> None:
        """Create the repository (default branch from settings) unless it exists."""
        namespace = storage_namespace or self.settings.storage_namespace.format(repository=self.repository)
        try:
            self.repo.create(
                storage_namespace=namespace, default_branch=self.settings.default_branch, exist_ok=True
            )
        except Exception as exc:  # noqa: BLE001 - mapped below
            raise self._fail(exc, "create repository") from exc

    def delete_repository(self) -> None:
        try:
            self.repo.delete()
        except NotFoundException:
            return
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "delete repository") from exc

    # -- refs -----------------------------------------------------------------------------
    def experiment_branch(self, name: str) -> str:
        """Map an experiment name (e.g. `exp-123-new-embeddings` or `experiments/x`) to a branch name."""
        slug = name.split("/", 1)[1] if name.startswith("experiments/") else name
        prefix = self.settings.experiment_prefix
        return validate_branch_name(slug if slug.startswith(prefix) else f"{prefix}{slug}")

    def branch_exists(self, branch: str) -> bool:
        try:
            self.repo.branch(branch).get_commit()
            return True
        except NotFoundException:
            return False
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "look up branch", branch) from exc

    def ref_kind(self, ref: str) -> RefKind:
        """Whether `ref` names a branch, a tag or a commit; RefNotFoundError when none."""
        sdk = self.client.sdk_client
        try:
            sdk.branches_api.get_branch(self.repository, ref)
            return "branch"
        except Exception:  # noqa: BLE001 - try the next kind
            pass
        try:
            sdk.tags_api.get_tag(self.repository, ref)
            return "tag"
        except Exception:  # noqa: BLE001
            pass
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
        try:
            return self.repo.ref(ref).get_commit().id
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "resolve ref", ref) from exc

    def get_commit(self, ref: str) -> CommitInfo:
        try:
            commit = self.repo.ref(ref).get_commit()
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "read commit", ref) from exc
        return CommitInfo(commit.id, commit.message, dict(commit.metadata or {}), tuple(commit.parents or ()))

    def create_branch(self, branch: str, source: str) -> str:
        """Create `branch` from `source`; returns the commit id it starts at."""
        validate_branch_name(branch)
        source_commit = self.resolve(source)
        try:
            self.repo.branch(branch).create(source_reference=source_commit)
        except ConflictException as exc:
            raise LakeFSError(f"branch {self._where(branch)} already exists; pick another name or delete it") from exc
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "create branch", branch) from exc
        log.info("lakefs: created branch %s from %s @ %s", branch, source, source_commit[:12])
        return source_commit

    def delete_branch(self, branch: str) -> None:
        if branch == self.settings.default_branch:
            raise RefNotWritableError(f"refusing to delete the default branch {self._where(branch)}")
        try:
            self.repo.branch(branch).delete()
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "delete branch", branch) from exc
        log.info("lakefs: deleted branch %s", branch)

    def commit(self, branch: str, message: str, metadata: Mapping[str, object] | None = None,
               allow_empty: bool = False) -> str:
        """Commit the branch's staged changes with string metadata; returns the commit id."""
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        try:
            ref = self.repo.branch(branch).commit(message=message, metadata=meta, allow_empty=allow_empty)
            commit_id = ref.get_commit().id
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "commit", branch) from exc
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
        try:
            commit_id = self.repo.ref(source).merge_into(self.repo.branch(destination), **kwargs)
        except ConflictException as exc:
            raise MergeConflictError(
                f"merging {self._where(source)} into {destination} hit conflicting changes; "
                f"{destination} is unchanged. Resolve on the source branch and merge again"
            ) from exc
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"merge into {destination}", source) from exc
        log.info("lakefs: merged %s into %s @ %s", source, destination, commit_id[:12])
        return commit_id

    def tag(self, tag: str, ref: str) -> str:
        """Create an immutable tag at `ref`'s commit; returns the commit id.

        Re-tagging the same commit is a no-op; pointing an existing tag elsewhere is refused.
        """
        validate_tag_name(tag)
        commit_id = self.resolve(ref)
        try:
            existing = self.repo.tag(tag).get_commit().id
        except NotFoundException:
            existing = None
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "look up tag", tag) from exc
        if existing is not None:
            if existing == commit_id:
                return commit_id
            raise TagExistsError(
                f"tag {self._where(tag)} already points to {existing[:12]}; tags are never moved "
                f"(wanted {commit_id[:12]}); choose a new tag name"
            )
        try:
            self.repo.tag(tag).create(commit_id)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "create tag", tag) from exc
        log.info("lakefs: tagged %s -> %s", tag, commit_id[:12])
        return commit_id

    def diff(self, left: str, right: str, prefix: str | None = None) -> list[Change]:
        """Committed differences between two refs (what `right` changes relative to `left`)."""
        try:
            changes = self.repo.ref(left).diff(other_ref=right, prefix=prefix or "")
            return [Change(c.path, c.type, c.size_bytes) for c in changes]
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"diff against {right}", left) from exc

    def uncommitted(self, branch: str, prefix: str | None = None) -> list[Change]:
        try:
            changes = self.repo.branch(branch).uncommitted(prefix=prefix or "")
            return [Change(c.path, c.type, c.size_bytes) for c in changes]
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, "list uncommitted changes", branch) from exc

    def put_object(self, branch: str, path: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Upload one (small) object to a branch, uncommitted."""
        self.require_branch(branch)
        try:
            self.repo.branch(branch).object(path).upload(data, content_type=content_type)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"upload {path}", branch) from exc

    def read_object(self, ref: str, path: str) -> bytes:
        try:
            with self.repo.ref(ref).object(path).reader(mode="rb") as handle:
                return handle.read()
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"read {path}", ref) from exc

    def reset_prefix(self, branch: str, prefix: str) -> None:
        """Drop the branch's uncommitted changes under `prefix` (used to undo a failed write)."""
        try:
            self.repo.branch(branch).reset_changes(path_type="common_prefix", path=prefix)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"reset uncommitted changes under {prefix!r}", branch) from exc

    def objects(self, ref: str, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(path, size in bytes) of every object under `prefix` at `ref`."""
        try:
            for obj in self.repo.ref(ref).objects(prefix=prefix):
                size = getattr(obj, "size_bytes", None)
                if size is not None:
                    yield obj.path, int(size)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"list objects under {prefix!r}", ref) from exc

    def size_bytes(self, ref: str, prefix: str) -> int:
        """Total stored bytes under `prefix` at `ref` (measured, not estimated)."""
        return sum(size for _, size in self.objects(ref, prefix))
