"""What every publication leaves next to its data: a manifest, the JSON record of what was
written (with its content fingerprint), uploaded on the branch before the lifecycle commits."""

from __future__ import annotations

import json
from typing import Any, Mapping

from mlv_spark.lakefs import LakeFS


def put_manifest(lakefs: LakeFS, branch: str, path: str, record: Mapping[str, Any]) -> None:
    """Upload `record` as pretty JSON to `path` on `branch` (uncommitted)."""
    body = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    lakefs.put_object(branch, path, body, "application/json")
