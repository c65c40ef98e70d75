"""Project exceptions. Each names the offending value and what would fix it."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

#: Marks an InvalidInputError raised inside a Spark job (`raise_error`, for checks that run lazily
#: with the data): `data_error` finds it in whatever exception Spark wraps it in.
DATA_ERROR_PREFIX = "mlv-spark data check failed: "
_DATA_ERROR = re.compile(re.escape(DATA_ERROR_PREFIX) + r"([^\n\r]*?)(?:\s*(?:SQLSTATE|at org\.|\n|$))")


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


def data_error(exc: BaseException) -> InvalidInputError | None:
    """The InvalidInputError a Spark job raised with `DATA_ERROR_PREFIX`, if `exc` carries one."""
    found = _DATA_ERROR.search(str(exc))
    message = found.group(1).strip().rstrip(".") if found else ""
    return InvalidInputError(message) if message else None


@contextmanager
def data_errors() -> Iterator[None]:
    """Turn a data check that failed inside a Spark job into the InvalidInputError it stands for."""
    try:
        yield
    except MlvError:
        raise
    except Exception as exc:
        mapped = data_error(exc)
        if mapped is None:
            raise
        raise mapped from None


_UNREACHABLE = re.compile(r"(Connect to [^\n]{0,80}? failed[^\n]{0,40}|Connection refused|Failed to establish a new connection|"
                          r"Max retries exceeded with url|Connection reset by peer|UnknownHostException)[^\n]{0,160}")


def outage_error(exc: BaseException) -> ServiceUnavailableError | None:
    """A ServiceUnavailableError for an exception that shows a service went away mid-job (a refused
    connection to lakeFS's S3 gateway inside a Spark job, to MLflow…), whatever wraps it."""
    found = _UNREACHABLE.search(str(exc))
    if found is None:
        return None
    return ServiceUnavailableError(
        f"a service became unreachable during the job ({found.group(0).strip()[:200]}); nothing reached the "
        "target branch unless the job said it merged: start the service again and rerun the same command, "
        "which resumes where this run stopped")
