"""Project exceptions. Each names the offending value and what would fix it."""

from __future__ import annotations


class MlvError(Exception):
    """Base class of every error mlv-spark raises on purpose."""


class ConfigError(MlvError):
    """A setting is missing, malformed or contradicts another."""


class InvalidInputError(MlvError):
    """Input data or arguments do not satisfy a documented precondition."""


class ServiceUnavailableError(MlvError):
    """A required service (lakeFS, MLflow) or artifact (jar, binary) is not reachable."""


class LakeFSError(MlvError):
    """A lakeFS operation failed."""


class LakeFSAuthError(LakeFSError):
    """lakeFS refused the credentials (401) or the operation (403)."""


class RefNotFoundError(LakeFSError):
    """A branch, tag or commit does not exist."""


class RefNotWritableError(LakeFSError):
    """A write was attempted at a tag or commit; only branches are writable."""


class InvalidRefNameError(LakeFSError):
    """A branch or tag name lakeFS would reject."""


class MergeConflictError(LakeFSError):
    """A merge hit conflicting changes; the destination was left unchanged."""


class TagExistsError(LakeFSError):
    """A tag already exists and tags are never moved."""


class CatalogError(MlvError):
    """A catalog plugin is unknown or misconfigured, or a table cannot be resolved."""


class FeatureDefinitionError(MlvError):
    """A Feast feature repo, view, service or reference is invalid or unknown."""


class SplitVersionError(MlvError):
    """A split version conflicts with an existing one or does not exist."""
