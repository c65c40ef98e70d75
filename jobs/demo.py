"""Demo: the embedded local stack end to end.

Creates the lakeFS repository, writes an Iceberg table on `main` through Spark and lakeFS's
S3 gateway, commits, reads it back at the commit, and prints where everything is.
"""

from __future__ import annotations

from mlv_spark.catalogs import load_catalog
from mlv_spark.cli import job_parser, run, step
from mlv_spark.config import load_settings
from mlv_spark.lakefs import LakeFS
from mlv_spark.session import build_session
from mlv_spark.tables import Tables


def main(argv: list[str]) -> int:
    args = job_parser(__doc__.splitlines()[0]).parse_args(argv)
    settings = load_settings(args.profile)
    lakefs = LakeFS(settings.lakefs)
    with step("lakeFS repository"):
        lakefs.ensure_repository()
    spark = build_session(settings, "mlv-spark-demo")
    tables = Tables(spark, load_catalog("lakefs", settings), lakefs)

    with step("write demo.hello on main"):
        df = spark.createDataFrame(
            [(1, "ada", 0.5), (2, "grace", 1.5), (3, "alan", 2.5)], "user_id long, name string, score double"
        )
        table = tables.write(df, "demo.hello", settings.lakefs.default_branch, mode="overwrite")
        commit = lakefs.commit(settings.lakefs.default_branch, "demo: write demo.hello", {"job": "demo"})
    with step("read back at the commit"):
        back = tables.read("demo.hello", commit)
        rows = back.orderBy("user_id").collect()
    assert len(rows) == 3, rows

    print()
    print(f"lakeFS        {settings.lakefs.endpoint}  repository {lakefs.repository}")
    print(f"commit        {commit}")
    print(f"table         {table.identifier}  ({len(rows)} rows read back at {commit[:12]})")
    print(f"data          s3a://{lakefs.repository}/{settings.lakefs.default_branch}/demo/hello/")
    print(f"MLflow        {settings.mlflow.tracking_uri}")
    print(f"services dir  {settings.services.run_dir}")
    return 0


if __name__ == "__main__":
    run(main)
