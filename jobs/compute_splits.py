"""Compute a split version into the split index table `ml_datasets.splits`, through an experiment
branch that is merged into the target (a split version is a change of data like any other).

Example:
  ./spark-submit.sh jobs/compute_splits.py --entity-table features.transaction_labels \\
      --entity-key txn_id --group-by user_id --stratify-by is_fraud \\
      --ratios train=0.8,val=0.1,test=0.1 --seed 42 --split-version v1_stratified_80_10_10 \\
      --merge-into main --tag splits-v1 --delete-branch
"""

from __future__ import annotations

import json
import math
import sys
from datetime import timedelta

from mlv_spark.catalogs import profile_catalog
from mlv_spark.cli import Job, add_lifecycle_arguments, job_parser, run
from mlv_spark.errors import InvalidInputError, MlvError
from mlv_spark.log import get_logger
from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SplitVersion
from mlv_spark.workflows.split_version import compute_split_version, published_without_spark


def parse_ratios(text: str) -> dict[str, float]:
    ratios: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            ratios[name.strip()] = float(value)
        except ValueError:
            raise InvalidInputError(f"--ratios {text!r}: expected name=value pairs like train=0.8,val=0.1,test=0.1") from None
    return ratios


def parse_gap(days: float | None) -> timedelta | None:
    """`--gap-days` as a timedelta: a finite number of days >= 0 that fits a timedelta."""
    if days is None:
        return None
    if not math.isfinite(days) or days < 0 or days > 3_650_000:
        raise InvalidInputError(f"--gap-days {days!r} must be a finite number of days between 0 and 3650000")
    return timedelta(days=days)


def columns(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in (text or "").split(",") if c.strip())


log = get_logger("mlv_spark.job")


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--source-ref", default=None,
                        help="ref to read the entity table at, pinned to its commit (default: the default branch)")
    parser.add_argument("--entity-table", required=True, help="namespace.table with one or more rows per entity")
    parser.add_argument("--entity-key", required=True, help="key column(s), comma-separated")
    parser.add_argument("--time-column", default="event_timestamp", help="event time column (default event_timestamp)")
    parser.add_argument("--stratify-by", help="stratum column(s), comma-separated")
    parser.add_argument("--group-by", help="group column(s) whose entities share a split, comma-separated")
    parser.add_argument("--ratios", required=True, help="e.g. train=0.8,val=0.1,test=0.1")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--method", choices=["exact", "hash"], default="exact")
    parser.add_argument("--split-version", required=True, help="immutable version name, e.g. v1_stratified_80_10_10")
    parser.add_argument("--previous-version", help="keep this version's assignments (sticky growth)")
    parser.add_argument("--cutoff", help="out-of-time: events at/after cutoff+gap go to the future splits")
    parser.add_argument("--gap-days", type=float, help="out-of-time gap after the cutoff, in days")
    parser.add_argument("--future-splits", help="out-of-time splits (default: all but the first)")
    parser.add_argument("--exclude-train-entities", action="store_true", help="out-of-time: never reuse train entities")
    add_lifecycle_arguments(parser, default_experiment="splits-<split version>")
    parser.add_argument("--storage-report", nargs="?", const="estimate", choices=["estimate", "measured"],
                        help="compare the index's bytes with train/val/test copies of --feature-table: "
                             "estimate (default; from the table's data files) or measured (writes the copies "
                             "to a scratch prefix and discards them)")
    parser.add_argument("--feature-table", action="append", default=[],
                        help="a table whose per-split copies the storage report counts (repeatable; default: the entity table)")
    args = parser.parse_args(argv)

    job = Job(args, "compute_splits")
    source_ref = args.source_ref or job.settings.lakefs.default_branch
    params = SplitParams.of(
        entity_key=columns(args.entity_key), ratios=parse_ratios(args.ratios), seed=args.seed,
        stratify_by=columns(args.stratify_by) or None, group_by=columns(args.group_by) or None,
        time_column=args.time_column, cutoff=args.cutoff, gap=parse_gap(args.gap_days),
        future_splits=columns(args.future_splits) or None, exclude_train_entities=args.exclude_train_entities,
        method=args.method,
    )
    version = SplitVersion(args.split_version, args.entity_table, source_ref, params, args.previous_version).validate()
    job.lakefs.resolve(source_ref)  # fail fast on an unknown ref, before Spark starts
    options = dict(experiment=args.experiment, merge_into=args.merge_into, tag=args.tag, delete_branch=args.delete_branch,
                   feature_tables=args.feature_table, storage_report=args.storage_report)
    # a rerun of a published version is answered from the registry without starting Spark
    catalog = profile_catalog(job.settings, args.catalog, job.lakefs.repository)
    try:
        report = published_without_spark(catalog, job.lakefs, version, **options)
    except MlvError:
        raise  # another definition of a published version, an unknown ref: the answer itself
    except Exception as exc:  # noqa: BLE001 - a pyiceberg/pyarrow read failed: Spark answers instead
        log.warning("splits: the registry could not be read without Spark (%s); reading it with Spark", exc)
        report = None
    if report is None:
        report = compute_split_version(job.spark, job.tables, job.lakefs, version, **options)
    print(report.render())
    print(json.dumps({"split_version": report.version, "noop": report.noop, "branch": report.branch,
                      "source_commit": report.source_commit, "commit": report.commit,
                      "merge_commit": report.merge_commit, "tag": report.tag,
                      "totals": report.totals}, sort_keys=True))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
