"""Demo: the whole flow on the embedded local stack.

1. synthetic labels and features committed as Iceberg tables on lakeFS `main`
2. a stratified split version in the split index table (no feature data copied)
3. a point-in-time training set from the Feast repo in examples/feature_repo, read at the
   pinned commit, written to lakeFS with its fingerprint
Rerunning is safe: existing tables and the split version are reused.
"""

from __future__ import annotations

from mlv_spark.cli import Job, job_parser, run, step
from mlv_spark.modules import load_module
from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SplitVersion
from mlv_spark.workflows.split_version import compute_split_version
from mlv_spark.workflows.training_set import build_training_set

SPLIT_VERSION = "v1_stratified_80_10_10"


def main(argv: list[str]) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000, help="synthetic users (default 20000)")
    args = parser.parse_args(argv)
    job = Job(args, "demo")
    settings, lakefs = job.settings, job.lakefs
    main_branch = settings.lakefs.default_branch
    synthetic = load_module("synthetic", [settings.root / "examples"], what="data generator")
    with step("lakeFS repository"):
        lakefs.ensure_repository()
    spark, tables = job.spark, job.tables

    with step("synthetic feature tables on main"):
        wrote = False
        for name, frame in (("features.labels", synthetic.labelled_events(spark, args.users)),
                            ("features.user_stats", synthetic.user_stats(spark, args.users)),
                            ("features.user_profile", synthetic.user_profile(spark, args.users))):
            if not tables.exists(name, main_branch):
                tables.write(frame, name, main_branch)
                wrote = True
        if wrote:
            lakefs.commit(main_branch, "demo: synthetic labels and features", {"job": "demo", "users": args.users})

    with step("split version"):
        params = SplitParams.of(entity_key="user_id", ratios={"train": 0.8, "val": 0.1, "test": 0.1}, seed=42,
                                stratify_by="label", time_column="event_timestamp")
        split_report = compute_split_version(
            spark, tables, lakefs, SplitVersion(SPLIT_VERSION, "features.labels", main_branch, params), main_branch,
            feature_table="features.user_stats", storage_report="estimate")

    with step("training set"):
        lineage = build_training_set(
            spark, tables, lakefs, feature_repo=settings.root / "examples" / "feature_repo",
            features="fraud_model_v1", ref=main_branch, split_version=SPLIT_VERSION, splits=["train"],
            output=f"lakefs://{lakefs.repository}/{main_branch}/training_sets/fraud_model_v1_train", overwrite=True)

    print()
    print(split_report.render())
    print()
    print(f"training set  {lineage.output}  ({lineage.row_count:,d} rows, commit {lineage.output_commit})")
    print(f"  read at     {lineage.lakefs_ref} = {lineage.lakefs_commit}")
    print(f"  features    {', '.join(lineage.features)}")
    print(f"  fingerprint {lineage.fingerprint}")
    print(f"  feast repo  {lineage.feast_repo_commit}")
    print()
    print(f"lakeFS        {settings.lakefs.endpoint}  (repository {lakefs.repository})")
    print(f"MLflow        {settings.mlflow.tracking_uri}")
    print(f"services dir  {settings.services.run_dir}")
    return 0


if __name__ == "__main__":
    run(main)
