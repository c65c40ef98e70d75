"""Demo: the whole flow on the embedded local stack, with a protected `main`.

1. the repository, its `main` protected (only merges land)
2. raw card transactions and labels ingested through a branch and a merge (tag raw-…)
3. the feature pipeline on an experiment branch: validate, commit, merge, tag feature-eng-vN,
   delete the branch; then a second experiment with another normalization (feature-eng-vN+1)
4. a stratified, group-safe split version in the split index table, through a branch
5. a model trained on point-in-time training data (Feast repo in examples/feature_repo) read at
   the pinned commit, its lineage logged to MLflow
6. promotion: a lakeFS tag at the exact commit, a registered model version, an alias
7. reproduction from the model version alone, fingerprints compared
Rerunning is safe: the raw data and the split version are reused; the experiments, the run and
the model version are new.
"""

from __future__ import annotations

import re

from mlv_spark.cli import Job, job_parser, run, step
from mlv_spark.errors import InvalidInputError
from mlv_spark.lineage.mlflow import client, find_model_version, model_version_lineage, shown_uri
from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SplitVersion
from mlv_spark.trainer import logistic_regression
from mlv_spark.workflows.feature_pipeline import load_pipeline, plan_pipeline, run_pipeline
from mlv_spark.workflows.promote import promote
from mlv_spark.workflows.reproduce import reproduce
from mlv_spark.workflows.split_version import compute_split_version
from mlv_spark.workflows.train import train_model
from mlv_spark.workflows.training_set import TrainingSetRequest

SPLIT_VERSION = "txn_v1_stratified_80_10_10"
MODEL = "fraud-detector"


def next_number(tags: dict[str, str], prefix: str) -> int:
    """1 + the highest N of the tags `<prefix>N`."""
    numbers = [int(m.group(1)) for t in tags if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", t))]
    return max(numbers, default=0) + 1


def next_model_version(tracking, name: str) -> int:
    """1 + the highest version of the registered model (1 when there is none)."""
    try:
        versions = tracking.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - no such model yet
        return 1
    return max((int(v.version) for v in versions), default=0) + 1


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000, help="synthetic card holders (default 3000)")
    parser.add_argument("--days", type=int, default=60, help="days of transactions (default 60)")
    parser.add_argument("--model-name", default=MODEL, help=f"the registered model (default {MODEL})")
    args = parser.parse_args(argv)
    if args.users < 1 or args.days < 20:
        raise InvalidInputError(f"--users {args.users} --days {args.days}: give at least 1 user and 20 days")
    job = Job(args, "demo")
    settings, lakefs = job.settings, job.lakefs
    main_branch = lakefs.default_branch
    with step("repository with a protected main"):
        lakefs.ensure_repository()
        lakefs.protect_branch(main_branch)
    code, repo = settings.code.pipelines, settings.code.feature_repo

    with step("ingest raw transactions"):
        raw = load_pipeline("card_transactions", code, {"users": str(args.users), "days": str(args.days)}, None)
        plan = plan_pipeline(lakefs, raw, catalog=job.catalog_type, experiment=f"ingest-{args.users}u-{args.days}d",
                             merge_into=main_branch, tag=f"raw-{args.users}u-{args.days}d", delete_branch=True)
        ingest = run_pipeline(job.spark, job.tables, lakefs, raw, plan, code_root=settings.root)

    experiments = []
    for transform in ("raw", "log1p"):
        with step(f"feature pipeline, amount_transform={transform}"):
            n = next_number(lakefs.tags("feature-eng-v"), "feature-eng-v")
            loaded = load_pipeline("fraud_features", code, {"amount_transform": transform}, repo)
            plan = plan_pipeline(lakefs, loaded, catalog=job.catalog_type, experiment=f"features-v{n}-{transform}",
                                 merge_into=main_branch, tag=f"feature-eng-v{n}", delete_branch=True)
            experiments.append(run_pipeline(job.spark, job.tables, lakefs, loaded, plan, code_root=settings.root))
    with step("split version"):
        params = SplitParams.of(entity_key="txn_id", group_by="user_id", stratify_by="is_fraud", seed=42,
                                ratios={"train": 0.8, "val": 0.1, "test": 0.1}, time_column="event_timestamp")
        split_report = compute_split_version(
            job.spark, job.tables, lakefs, SplitVersion(SPLIT_VERSION, "features.transaction_labels", main_branch, params),
            merge_into=main_branch, delete_branch=True, feature_tables=("features.user_txn_stats", "features.merchant_risk", "features.txn_details"),
            storage_report="estimate")

    with step("train"):
        request = TrainingSetRequest(feature_repo=repo, features="fraud_model", ref=main_branch,
                                     split_version=SPLIT_VERSION, splits=("train", "val"), labels=("is_fraud",))
        trained = train_model(job.spark, job.tables, lakefs, request, trainer=logistic_regression,
                              tracking_uri=settings.mlflow.tracking_uri, experiment=settings.mlflow.experiment,
                              model_name=args.model_name, code_root=settings.root, lakefs_ui=job.lakefs_ui(main_branch))

    with step("promote"):
        tracking = client(settings.mlflow.tracking_uri)
        tag = f"model-{args.model_name}-{next_model_version(tracking, args.model_name)}-data"
        promotion = promote(tracking, lambda _: lakefs, run_id=trained.run_id, tag=tag, model_name=args.model_name,
                            alias="champion", lakefs_ui=job.lakefs_ui(tag))

    with step("reproduce"):
        model = find_model_version(tracking, args.model_name, alias="champion")
        reproduction = reproduce(model_version_lineage(tracking, model), model=args.model_name, version=str(model.version),
                                 tag=promotion.tag, lakefs=lakefs, session=lambda: (job.spark, job.tables),
                                 code_root=settings.root)

    print()
    print(f"raw data      {ingest.tag} = {ingest.merge_commit}")
    for result in experiments:
        print(f"experiment    {result.branch}: merged @ {result.merge_commit[:12]}, tag {result.tag}, "
              f"branch deleted: {result.branch_deleted}, tables {result.written.get('tables')}")
    print()
    print(split_report.render())
    print()
    lineage = trained.lineage
    print(f"training run  {trained.run_id}: val AUC {trained.metrics['val_auc']:.3f} "
          f"(train {trained.lineage.samples('train'):,d} rows, val {trained.lineage.samples('val'):,d} rows)")
    print(f"  read at     {lineage.lakefs_ref} = {lineage.lakefs_commit}")
    print(f"  features    {', '.join(lineage.feature_refs)}")
    print(f"  feast repo  {lineage.feast_repo_path} @ {lineage.feast_repo_commit}")
    print(f"model         {args.model_name} version {promotion.version} (@champion), lakeFS tag {promotion.tag} -> "
          f"{promotion.lakefs_commit[:12]}")
    print()
    print(reproduction.render())
    timing = trained.seconds
    print(f"  cost        lineage {timing['lineage_record'] + timing['lineage_logging']:.2f}s of the {timing['total']:.1f}s "
          f"training job; rebuild {reproduction.seconds.get('rebuild', 0):.1f}s against the original "
          f"{timing['training_set']:.1f}s")
    print()
    stray = sorted(b for b in lakefs.branches() if b != main_branch)
    print(f"branches      {main_branch} (protected: {main_branch in lakefs.protected_branches()})"
          + (f"; also {', '.join(stray)}" if stray else "; no experiment branches left"))
    print(f"lakeFS UI     {settings.lakefs.endpoint}/repositories/{lakefs.repository}/commits?ref={main_branch}  "
          f"(log in with the [lakefs] keys of conf/{settings.profile}.toml)")
    print(f"MLflow UI     {trained.run_url}  (artifacts: lineage/lineage_card.html)")
    print(f"              {shown_uri(settings.mlflow.tracking_uri)}/#/models/{args.model_name}/versions/{promotion.version}")
    return 0 if reproduction.reproducible else 3


if __name__ == "__main__":
    run(main)
