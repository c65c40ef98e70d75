"""Publishing on a lakeFS branch: write → fingerprint → manifest → commit, undone on failure.

Both workflows publish this way: what they write goes to a branch under known prefixes; a
manifest object records what was written (with its content fingerprint); one commit carries
the same facts as metadata. Any failure before the commit resets the branch's uncommitted
changes under those prefixes, so a branch never keeps half a publication.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger

log = get_logger(__name__)


@contextmanager
def staged(lakefs: LakeFS, branch: str, prefixes: Sequence[str]) -> Iterator[None]:
    """Writes under `prefixes` of `branch`; on any failure inside, those prefixes' uncommitted
    changes are reset (and the failure re-raised)."""
    lakefs.require_branch(branch)
    try:
        yield
    except BaseException:
        for prefix in prefixes:
            try:
                lakefs.reset_prefix(branch, prefix)
            except Exception as undo:  # noqa: BLE001 - report, and keep the original failure
                log.warning("publish: could not reset %s on %s after a failure: %s", prefix, branch, undo)
        raise


def commit_with_manifest(lakefs: LakeFS, branch: str, manifest_path: str, manifest: Mapping[str, Any],
                         message: str, metadata: Mapping[str, object]) -> str:
    """Upload the manifest (JSON) and commit the branch with `metadata`; returns the commit id."""
    body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    lakefs.put_object(branch, manifest_path, body, "application/json")
    return lakefs.commit(branch, message, metadata)
