"""`DataLineage`: everything that says which data, splits and feature definitions made a model,
and what reproducing its training set needs — and its flat forms: MLflow params under `data/`
(as the seed's quick reference reads them) and the tags of Feast's MLflow integration.

Pure: no MLflow, no lakeFS here (`mlv_spark.lineage.mlflow` logs and reads it).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from mlv_spark.errors import InvalidInputError
from mlv_spark.lakefs import is_commit_id

#: MLflow's limits (mlflow.utils.validation): a param value, a tag value, a dataset digest.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_MODEL_VERSION_TAG_VALUE = 100_000  # the model registry's own, larger limit
MAX_DIGEST = 36
PARAM_PREFIX = "data/"
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "validation": "validation", "test": "test"}


@dataclass(frozen=True)
class SplitLineage:
    """One split of the training data: its content fingerprint and row count."""

    fingerprint: str
    rows: int


@dataclass(frozen=True)
class SourceTable:
    """A table the training data was read from, with its format's own version at the commit
    (secondary lineage: Iceberg snapshots expire, the lakeFS commit is what counts)."""

    name: str
    format: str
    iceberg_snapshot_id: int | None = None
    delta_version: int | None = None


@dataclass(frozen=True)
class DataLineage:
    # lakeFS state
    lakefs_repository: str
    lakefs_ref: str  # what was asked for: a branch, a tag or a commit id
    lakefs_commit: str  # what it resolved to: the data is read only there
    # split definition
    split_version: str
    split_seed: int
    split_params_hash: str
    # Feast state
    feast_project: str
    feast_repo_path: str  # relative to the code repository's root, when it lies inside it
    feast_repo_commit: str
    feast_repo_dirty: bool
    feast_feature_service: str
    feature_refs: tuple[str, ...]
    feature_views: tuple[str, ...]
    # the training data
    entity_columns: tuple[str, ...]
    label_columns: tuple[str, ...]
    splits: Mapping[str, SplitLineage]
    feature_schema_hash: str
    full_feature_names: bool = False
    # secondary lineage and the code that ran
    source_tables: tuple[SourceTable, ...] = ()
    lakefs_tag: str | None = None
    code_commit: str = ""
    code_dirty: bool = False
    versions: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> DataLineage:
        """A lineage must name a commit, never only a branch: a branch moves."""
        if not is_commit_id(self.lakefs_commit):
            raise InvalidInputError(
                f"lineage names lakeFS ref {self.lakefs_ref!r} with commit {self.lakefs_commit!r}, which is not a "
                "commit id; resolve the ref to its commit before logging lineage")
        if not self.splits:
            raise InvalidInputError("lineage without any split: log at least the split the model was trained on")
        return self

    def samples(self, split: str) -> int:
        found = self.splits.get(split)
        return found.rows if found else 0

    # -- flat forms ---------------------------------------------------------------------------
    def to_params(self) -> dict[str, str]:
        """MLflow params, `data/<name>`; values past MLflow's limit point to lineage.json."""
        params: dict[str, Any] = {
            "lakefs_repository": self.lakefs_repository, "lakefs_ref": self.lakefs_ref,
            "lakefs_commit": self.lakefs_commit, "split_version": self.split_version, "split_seed": self.split_seed,
            "split_params_hash": self.split_params_hash, "feast_project": self.feast_project,
            "feast_repo_path": self.feast_repo_path, "feast_repo_commit": self.feast_repo_commit,
            "feast_repo_dirty": self.feast_repo_dirty, "feast_feature_service": self.feast_feature_service,
            "feature_refs": ",".join(self.feature_refs), "feature_views": ",".join(self.feature_views),
            "entity_columns": ",".join(self.entity_columns), "label_columns": ",".join(self.label_columns),
            "splits": ",".join(self.splits), "feature_schema_hash": self.feature_schema_hash,
            "full_feature_names": self.full_feature_names,
            "train_samples": self.samples("train"), "val_samples": self.samples("val"), "test_samples": self.samples("test"),
            "code_commit": self.code_commit, "code_dirty": self.code_dirty,
        }
        if self.lakefs_tag:
            params["lakefs_tag"] = self.lakefs_tag
        for split, lineage in self.splits.items():
            params[f"fingerprint.{_key(split)}"] = lineage.fingerprint
        for name, version in self.versions.items():
            params[f"version.{_key(name)}"] = version
        return {PARAM_PREFIX + k: _fit(_text(v), MAX_PARAM_VALUE) for k, v in params.items()}

    def feast_tags(self) -> dict[str, str]:
        """The tags Feast's MLflow integration sets on a training run, plus the repo's Git commit."""
        tags = {
            "feast.project": self.feast_project, "feast.retrieval_type": "historical",
            "feast.feature_views": ",".join(sorted(self.feature_views)), "feast.feature_refs": ",".join(self.feature_refs),
            "feast.entity_count": str(sum(s.rows for s in self.splits.values())),
            "feast.feature_count": str(len(self.feature_refs)), "feast.repo_git_commit": self.feast_repo_commit,
        }
        if self.feast_feature_service:
            tags["feast.feature_service"] = self.feast_feature_service
        return {k: _fit(v, MAX_TAG_VALUE) for k, v in tags.items()}

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> DataLineage:
        known = {f.name for f in fields(DataLineage)}
        values = {k: v for k, v in data.items() if k in known}
        values["splits"] = {k: SplitLineage(**v) for k, v in data.get("splits", {}).items()}
        values["source_tables"] = tuple(SourceTable(**t) for t in data.get("source_tables", ()))
        for name in ("feature_refs", "feature_views", "entity_columns", "label_columns"):
            values[name] = tuple(data.get(name, ()))
        return DataLineage(**values)


def digest(fingerprint: str) -> str:
    """A dataset digest for MLflow (at most MAX_DIGEST characters) from our content fingerprint."""
    return fingerprint[:min(32, MAX_DIGEST)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _fit(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    note = f"… ({len(value)} characters; the whole value is in lineage/lineage.json)"
    return value[: limit - len(note)] + note


def _key(name: str) -> str:
    """`name` as part of an MLflow param key (letters, digits, `_-. /` only; the record keeps the name)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)[:100] or "_"
