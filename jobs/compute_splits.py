"""Compute a split version into the split index table `ml_datasets.splits` on a lakeFS branch.

Example:
  ./spark-submit.sh jobs/compute_splits.py --entity-table features.transactions \\
      --entity-key user_id --stratify-by label --ratios train=0.8,val=0.1,test=0.1 --seed 42 \\
      --split-version v1_stratified_80_10_10 --branch main
"""

from __future__ import annotations

import sys

from mlv_spark.catalogs import load_catalog
from mlv_spark.cli import job_parser, run
from mlv_spark.config import load_settings
from mlv_spark.errors import InvalidInputError
from mlv_spark.lakefs import LakeFS
from mlv_spark.session import build_session
from mlv_spark.split_index import SplitParams
from mlv_spark.split_versions import compute_split_version
from mlv_spark.tables import Tables


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


def columns(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in (text or "").split(",") if c.strip())


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--repository", help="lakeFS repository (default: the profile's)")
    parser.add_argument("--catalog", default="lakefs", help="catalog of the entity table and the index (default lakefs)")
    parser.add_argument("--source-ref", default=None, help="ref to read the entity table at (default: the default branch)")
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
    parser.add_argument("--branch", default=None, help="branch to write to (default: the default branch)")
    parser.add_argument("--create-branch-from", help="create --branch from this ref when it does not exist")
    parser.add_argument("--feature-table", help="table whose per-split copies the storage report measures (default: the entity table)")
    parser.add_argument("--no-storage-report", action="store_true", help="skip measuring per-split copies")
    args = parser.parse_args(argv)

    settings = load_settings(args.profile)
    source_ref = args.source_ref or settings.lakefs.default_branch
    params = SplitParams(
        source_table=args.entity_table, source_ref=source_ref, entity_key=columns(args.entity_key),
        time_column=args.time_column, ratios=parse_ratios(args.ratios), seed=args.seed,
        stratify_by=columns(args.stratify_by), group_by=columns(args.group_by), method=args.method,
        previous_version=args.previous_version, cutoff=args.cutoff,
        gap_seconds=None if args.gap_days is None else args.gap_days * 86400.0,
        future_splits=columns(args.future_splits) or None, exclude_train_entities=args.exclude_train_entities,
    ).validate()

    lakefs = LakeFS(settings.lakefs, args.repository)
    lakefs.resolve(source_ref)  # fail fast on an unknown ref, before Spark starts
    spark = build_session(settings, "mlv-spark:compute_splits")
    catalog = load_catalog(args.catalog, settings)
    if args.repository:
        catalog = catalog.for_repository(lakefs.repository).activate(spark)
    report = compute_split_version(
        spark, Tables(spark, catalog, lakefs), lakefs, params, args.split_version,
        args.branch or settings.lakefs.default_branch, create_branch_from=args.create_branch_from,
        feature_table=args.feature_table, measure_storage=not args.no_storage_report,
    )
    print(report.render())
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
