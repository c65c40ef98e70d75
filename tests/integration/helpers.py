"""Helpers for integration tests: running jobs through spark-submit.sh like a user would."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlv_spark.catalogs import Tables, profile_catalog
from mlv_spark.lakefs import LakeFS
from mlv_spark.workflows.feature_pipeline import load_pipeline, plan_pipeline, run_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Everything the job printed (spark-submit merges the Python driver's stderr into stdout)."""
        return self.stdout + self.stderr


def run_job(job: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600,
            submit_options: tuple[str, ...] = ()) -> JobResult:
    """Run `./spark-submit.sh [submit_options…] jobs/<job>.py args…` with the test session's MLV_*
    environment (plus `env`)."""
    proc = subprocess.run(
        [str(REPO_ROOT / "spark-submit.sh"), *submit_options, f"jobs/{job}.py", *args],
        cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )
    return JobResult(proc.returncode, proc.stdout, proc.stderr)


def state(lk: LakeFS) -> tuple:
    """What bad input must leave as it was: main's head, the branches and the tags."""
    return lk.resolve("main"), lk.branches(), lk.tags()


def ingest(spark, settings, lk: LakeFS, catalog: str = "lakefs") -> Tables:
    """Protected main with a small raw data set, landed through a branch and a merge."""
    tables = Tables(spark, profile_catalog(settings, catalog, lk.repository).activate(spark), lk)
    lk.protect_branch("main")
    raw = load_pipeline("card_transactions", settings.code.pipelines, {"users": "120", "days": "30"}, None)
    plan = plan_pipeline(lk, raw, catalog=catalog, experiment="ingest", merge_into="main", tag="raw-v1", delete_branch=True)
    run_pipeline(spark, tables, lk, raw, plan, code_root=REPO_ROOT)
    return tables


def snapshot(df):
    """The rows of `df` now, as a function giving them back as a DataFrame with the same schema."""
    schema, rows = df.schema, df.collect()
    return lambda spark: spark.createDataFrame(rows, schema)


def features(settings, transform: str = "raw"):
    return load_pipeline("fraud_features", settings.code.pipelines, {"amount_transform": transform},
                         settings.code.feature_repo)


def one_table_rewritten_on_a_branch(spark, lk: LakeFS) -> tuple[int, int, int]:
    """main with tables a and b (tagged tables-v1) and a branch exp-rewrite-b that rewrote b alone;
    the stored bytes of (a, b on main, b on the branch)."""
    root = f"s3a://{lk.repository}"
    spark.range(2000).selectExpr("id", "id * 2 AS v").write.parquet(f"{root}/main/tables/a")
    spark.range(3000).selectExpr("id", "id * 3 AS v").write.parquet(f"{root}/main/tables/b")
    lk.commit("main", "two tables")
    lk.tag("tables-v1", "main")
    lk.create_branch("exp-rewrite-b", "main")
    spark.range(500).selectExpr("id", "id * 5 AS v").write.mode("overwrite").parquet(f"{root}/exp-rewrite-b/tables/b")
    lk.commit("exp-rewrite-b", "b rewritten")
    return lk.size_bytes("main", "tables/a/"), lk.size_bytes("main", "tables/b/"), lk.size_bytes("exp-rewrite-b", "tables/b/")
