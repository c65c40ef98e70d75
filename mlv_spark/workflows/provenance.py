"""Where code came from: the Git commit (and whether the tree was dirty) of a directory."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitState:
    """`commit` is a Git commit id, or `content-sha256:…` for a directory outside Git."""

    commit: str
    dirty: bool
    in_git: bool

    def __str__(self) -> str:
        return f"{self.commit}-dirty" if self.dirty else self.commit


def git_state(directory: str | Path) -> GitState:
    """The HEAD commit of the Git work tree holding `directory` and whether files under it have
    uncommitted changes; a content hash of its Python and YAML files when it is not in Git."""
    root = Path(directory)
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=True).stdout.strip()
        return GitState(head, bool(dirty), True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml", ".yml") and p.is_file()):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        return GitState("content-sha256:" + digest.hexdigest()[:16], False, False)


def require_committed(directory: str | Path, *, allow_dirty: bool = False, what: str = "the feature repo") -> GitState:
    """The Git state of `directory`; an InvalidInputError when it has uncommitted changes (a lineage
    naming its commit would not describe the definitions that ran), unless `allow_dirty`."""
    from mlv_spark.errors import InvalidInputError

    if not Path(directory).is_dir():
        raise InvalidInputError(f"{what} {directory} does not exist; pass --feature-repo <path to a Feast repo>")
    state = git_state(directory)
    if state.dirty and not allow_dirty:
        raise InvalidInputError(
            f"{what} {directory} has uncommitted changes on top of {state.commit[:12]}: commit them (the lineage "
            "records the Git commit, and reproduction checks it out) or pass --allow-dirty")
    return state
