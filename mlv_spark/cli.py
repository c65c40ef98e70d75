"""The one shared job setup: common arguments, settings, lakeFS, the Spark session, the catalog
and its Tables — each made when first needed, so bad input fails before Spark starts — plus
timing and exit codes.

Exit codes: 0 success, 2 a clear error (bad input, unknown ref, conflict, missing service —
the message says what to fix), 1 anything unexpected (with a traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from contextlib import contextmanager
from functools import cached_property
from typing import Callable, Iterator

from mlv_spark.errors import InvalidInputError, MlvError, data_error, outage_error
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.job")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one `error:` line and exit code 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InvalidInputError(f"{self.prog}: {message} (see --help)")


def job_parser(description: str, *, lakefs: bool = True) -> argparse.ArgumentParser:
    """The parser of a job: `--profile`, and for jobs on lakeFS `--repository` and `--catalog`."""
    parser = _Parser(description=description)
    parser.add_argument("--profile", default=None, help="settings profile in conf/ (default: MLV_PROFILE or local)")
    if lakefs:
        parser.add_argument("--repository", help="lakeFS repository (default: the profile's)")
        parser.add_argument("--catalog", default="lakefs", help="catalog of the tables (default lakefs)")
    return parser


def add_lifecycle_arguments(parser: argparse.ArgumentParser, default_experiment: str) -> None:
    """The experiment-branch options every writing job shares (see mlv_spark.lifecycle)."""
    parser.add_argument("--experiment", default=None,
                        help=f"experiment name; its branch is <prefix><name>, e.g. exp-<name> (default {default_experiment})")
    parser.add_argument("--merge-into", default=None, metavar="BRANCH",
                        help="merge the experiment into this branch when it is committed (e.g. main)")
    parser.add_argument("--tag", default=None, help="tag the merge commit (immutable; needs --merge-into)")
    parser.add_argument("--delete-branch", action="store_true", help="delete the experiment branch after the merge")


def add_pipeline_arguments(parser: argparse.ArgumentParser, flag: str) -> None:
    """The options of jobs that run a pipeline: `flag` (--pipeline or --generator) names it."""
    parser.add_argument(flag, required=True, dest="pipeline",
                        help="a name in the profile's [code] pipelines folders, a dotted module path or a .py file")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline parameter (repeatable), e.g. amount_transform=log1p")
    parser.add_argument("--source-ref", default=None, help="ref the experiment branch starts from (default: main)")
    parser.add_argument("--feature-repo", default=None,
                        help="Feast repo the outputs are validated against (default: the profile's [code] feature_repo)")
    add_lifecycle_arguments(parser, default_experiment=f"{flag.lstrip('-')}-<name>")


def add_training_set_arguments(parser: argparse.ArgumentParser, *, splits_default: str | None = "train") -> None:
    """The options that name a training set (build_training_set, train)."""
    parser.add_argument("--feature-repo", default=None, help="the Feast feature repo (default: the profile's [code] feature_repo)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--feature-service", help="Feast feature service name")
    what.add_argument("--features", help="comma-separated view:feature references")
    parser.add_argument("--ref", required=True, help="lakeFS branch, tag or commit; resolved to a commit and read only there")
    parser.add_argument("--split-version", required=True)
    if splits_default is not None:
        parser.add_argument("--splits", default=splits_default, help=f"split name(s), comma-separated (default {splits_default})")
    parser.add_argument("--label", action="append", default=[], help="a label column of the split version's source table (repeatable)")
    parser.add_argument("--full-feature-names", action="store_true")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="accept a feature repo with uncommitted changes (its lineage then cannot be checked out)")


def parse_params(items: list[str]) -> dict[str, str]:
    """`KEY=VALUE` items (repeatable --param) as a mapping; a malformed or repeated key is an error."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--param {item!r}: write KEY=VALUE, e.g. --param amount_transform=log1p")
        if key.strip() in params:
            raise InvalidInputError(f"--param {key.strip()!r} is given twice")
        params[key.strip()] = value.strip()
    return params


class Job:
    """Settings, lakeFS, Spark session, catalog and Tables of one job run."""

    def __init__(self, args: argparse.Namespace, name: str):
        from mlv_spark.config import load_settings

        self.args = args
        self.name = name
        self.settings = load_settings(args.profile)

    @cached_property
    def lakefs(self):  # -> mlv_spark.lakefs.LakeFS
        from mlv_spark.lakefs import LakeFS

        return LakeFS(self.settings.lakefs, getattr(self.args, "repository", None))

    @property
    def catalog_type(self) -> str:
        """The type of the job's catalog, known without Spark."""
        from mlv_spark.catalogs import catalog_properties

        return catalog_properties(self.settings, getattr(self.args, "catalog", "lakefs"))["type"]

    @cached_property
    def spark(self):  # -> pyspark.sql.SparkSession
        from mlv_spark.session import build_session

        return build_session(self.settings, f"mlv-spark:{self.name}")

    @cached_property
    def catalog(self):  # -> mlv_spark.catalogs.Catalog
        from mlv_spark.catalogs import profile_catalog

        catalog = profile_catalog(self.settings, getattr(self.args, "catalog", "lakefs"))
        if catalog.versioned and self.lakefs.repository != catalog.repository:
            catalog = catalog.for_repository(self.lakefs.repository).activate(self.spark)
        return catalog

    def lakefs_ui(self, ref: str) -> str:
        """The lakeFS web UI's page of `ref` in the job's repository."""
        return f"{self.settings.lakefs.endpoint}/repositories/{self.lakefs.repository}/objects?ref={ref}"

    @cached_property
    def tables(self):  # -> mlv_spark.catalogs.Tables
        from mlv_spark.catalogs import Tables

        return Tables(self.spark, self.catalog, self.lakefs if self.catalog.versioned else None)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log one line when a step finishes, with its duration."""
    started = time.monotonic()
    yield
    log.info("%s done in %.1fs", name, time.monotonic() - started)


def run(main: Callable[[list[str]], int], argv: list[str] | None = None) -> None:
    """Run a job's main and exit with its code, turning project errors into one clear line."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = main(args)
    except MlvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: report and fail
        mapped = data_error(exc) or outage_error(exc)  # a data check inside a Spark job; a service gone
        if mapped is not None:
            print(f"error: {mapped}", file=sys.stderr)
            code = 2
        else:
            traceback.print_exc()
            code = 1
    sys.exit(code)
