"""Every job as on a cluster: `spark-submit.sh --package zip` under `--master
local-cluster[2,1,1024]` — executors in JVMs of their own, and a driver and Python workers that
get mlv_spark only from build/mlv_spark.zip (through .run/zip-python, a Python that sees the
venv's dependencies but not its installed package). With `--package env` the dependencies come
from a packed environment instead, shipped with `--archives` (venv-pack; the driver runs an
unpacked copy of it). Select them alone: `make test-cluster`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlv_spark.packaging import ENV_ALIAS
from tests.integration.helpers import REPO_ROOT, run_job, state

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

CLUSTER = {"MLV_PACKAGE": "zip", "MLV_SPARK_MASTER": "local-cluster[2,1,1024]"}
PACKED = {**CLUSTER, "MLV_PACKAGE": "env"}
ZIP = REPO_ROOT / "build" / "mlv_spark.zip"
#: The jobs that start Spark (the others only talk to lakeFS and MLflow).
SPARK_JOBS = {"ingest", "feature_pipeline", "compute_splits", "build_training_set", "train", "reproduce", "export"}


def on_cluster(name: str, *args: str, expect: int = 0) -> dict:
    """Run a job the cluster way; its JSON summary (from the last line starting with '{' to the end)."""
    result = run_job(name, *args, env=CLUSTER, timeout=900)
    assert result.returncode == expect, f"{name}: {result.output[-4000:]}"
    if name in SPARK_JOBS:
        assert f"master local-cluster[2,1,1024], profile local, mlv_spark from {ZIP}" in result.output, result.output[-3000:]
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("{")]
    return json.loads("\n".join(lines[starts[-1]:])) if starts else {"output": result.stdout}


def test_the_python_workers_import_the_package_from_the_zip_alone(settings, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""\
        import json, os, sys
        from mlv_spark.config import load_settings
        from mlv_spark.session import build_session
        import mlv_spark

        spark = build_session(load_settings(), "probe")
        def where(_):
            import mlv_spark.splits
            return [(mlv_spark.splits.__file__, os.getpid(), sys.executable)]
        found = spark.sparkContext.parallelize(range(4), 4).flatMap(where).collect()
        print(json.dumps({"driver": mlv_spark.__file__, "workers": found}))
        """))
    result = subprocess.run([str(REPO_ROOT / "spark-submit.sh"), str(probe)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, **CLUSTER})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    seen = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert seen["driver"].startswith(str(ZIP))
    assert all("mlv_spark.zip" in f for f, _, _ in seen["workers"]), seen["workers"]
    zip_python = settings.services.run_dir / "zip-python" / "bin" / "python"  # the run directory's (a private one under test)
    assert {python for _, _, python in seen["workers"]} == {str(zip_python)}
    # and that Python cannot import the package without the zip: the zip is its only source
    alone = subprocess.run([str(zip_python), "-c", "import mlv_spark"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert alone.returncode != 0 and "No module named 'mlv_spark'" in alone.stderr


def test_every_job_runs_on_a_local_cluster_from_the_zip(settings, lakefs_repo, tmp_path):
    lk = lakefs_repo
    repo = ["--repository", lk.repository]
    model = f"fraud-detector-{lk.repository}"

    init = on_cluster("init_repository", *repo)
    assert init["protected"] == ["main"]
    ingest = on_cluster("ingest", *repo, "--generator", "card_transactions", "--param", "users=150", "--param",
                        "days=30", "--experiment", "ingest", "--merge-into", "main", "--tag", "raw-v1", "--delete-branch")
    assert lk.tags()["raw-v1"] == ingest["merge_commit"] == lk.resolve("main")
    features = on_cluster("feature_pipeline", *repo, "--pipeline", "fraud_features", "--experiment", "fe-1",
                          "--merge-into", "main", "--tag", "feature-eng-v1", "--delete-branch")
    assert features["written"]["tables"]["features.user_txn_stats"] > 0 and lk.tags()["feature-eng-v1"] == lk.resolve("main")
    splits = on_cluster("compute_splits", *repo, "--entity-table", "features.transaction_labels", "--entity-key", "txn_id",
                        "--group-by", "user_id", "--stratify-by", "is_fraud", "--ratios", "train=0.8,val=0.2",
                        "--seed", "7", "--split-version", "v1", "--merge-into", "main", "--delete-branch")
    assert splits["merge_commit"] == lk.resolve("main") and splits["totals"]["train"] > splits["totals"]["val"] > 0
    data_commit = lk.resolve("main")

    built = on_cluster("build_training_set", *repo, "--feature-service", "fraud_model", "--ref", "main",
                       "--split-version", "v1", "--splits", "val", "--label", "is_fraud",
                       "--output", str(tmp_path / "val_set"))
    assert built["lineage"]["lakefs_commit"] == data_commit and built["output"] == str(tmp_path / "val_set")
    assert built["lineage"]["splits"]["val"]["rows"] == splits["totals"]["val"]

    trained = on_cluster("train", *repo, "--feature-service", "fraud_model", "--ref", "main", "--split-version", "v1",
                         "--label", "is_fraud", "--model-name", model, "--experiment", f"cluster-{lk.repository}")
    assert trained["lakefs_commit"] == data_commit and trained["metrics"]["val_auc"] > 0.6, "the planted signal is learned"
    promoted = on_cluster("promote", "--run-id", trained["run_id"], "--tag", "model-cluster-1-data", "--model-name", model,
                          "--alias", "champion")
    assert promoted["registered"] and lk.resolve("model-cluster-1-data") == data_commit
    tree = on_cluster("lineage", "--model-name", model, "--alias", "champion")
    assert data_commit in tree["output"]
    reproduced = on_cluster("reproduce", "--model-name", model, "--alias", "champion")
    assert reproduced["reproducible"] is True
    assert MlflowClient(settings.mlflow.tracking_uri).get_model_version_by_alias(model, "champion").run_id == trained["run_id"]

    before = state(lk)
    doctor = on_cluster("doctor", *repo)
    assert doctor["findings"] == [] and doctor["tables"]["ml_datasets/splits"] == "iceberg"
    cleanup = on_cluster("cleanup_branches", *repo)
    assert cleanup["dry_run"] is True
    storage = on_cluster("storage_report", *repo)
    assert {r["ref"] for r in storage["refs"]} == {"main", "raw-v1", "feature-eng-v1", "model-cluster-1-data"}
    exported = on_cluster("export", *repo, "--ref", "feature-eng-v1", "--table", "features.user_txn_stats",
                          "--to", str(tmp_path / "export"))
    assert exported["tables"]["features.user_txn_stats"]["rows"] > 0
    assert state(lk) == before, "doctor, a dry-run clean-up, the storage report and an export change nothing"


def test_python_workers_take_their_dependencies_from_the_shipped_archive(settings, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""\
        import json, sys
        import feast, mlflow, lakefs
        import mlv_spark
        from mlv_spark.config import load_settings
        from mlv_spark.session import build_session

        spark = build_session(load_settings(), "probe")
        def where(_):
            import mlv_spark.splits, pandas, pyarrow
            return [(mlv_spark.splits.__file__, sys.executable, pyarrow.__file__, pandas.__file__)]
        found = spark.sparkContext.parallelize(range(4), 4).flatMap(where).collect()
        print(json.dumps({"driver": mlv_spark.__file__, "python": sys.executable, "feast": feast.__file__,
                          "mlflow": mlflow.__file__, "lakefs": lakefs.__file__, "workers": found}))
        spark.stop()
        """))
    result = subprocess.run([str(REPO_ROOT / "spark-submit.sh"), str(probe)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=1200, env={**os.environ, **PACKED})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # built ("env: wrote PATH (…)") or reused ("env: PATH is up to date"), and said so
    archive = Path(re.search(r"^env: (?:wrote )?(\S+\.tar\.gz)", result.stderr, re.M).group(1))
    assert archive.parent == REPO_ROOT / "build" and archive.name.startswith(f"mlv-spark-env-spark{settings.spark.effective_line}-py3.11-")
    seen = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    unpacked = settings.services.run_dir / "packed-env" / archive.name.removesuffix(".tar.gz")
    assert seen["driver"].startswith(str(ZIP)) and seen["python"] == str(unpacked / "bin" / "python")
    assert all(seen[name].startswith(str(unpacked)) for name in ("feast", "mlflow", "lakefs")), seen
    for module, python, pyarrow, pandas in seen["workers"]:
        # each executor unpacked the archive into its own working directory, as a YARN container does
        home = python.removesuffix("/environment/bin/python")
        assert "/work/app-" in home and python.endswith("/environment/bin/python"), python
        assert pyarrow.startswith(f"{home}/environment/lib/") and pandas.startswith(f"{home}/environment/lib/")
        assert module.endswith("mlv_spark.zip/mlv_spark/splits/__init__.py")
    with tarfile.open(archive) as packed:
        names = packed.getnames()
    assert not any("/site-packages/pyspark/jars/" in n for n in names), "the cluster's Spark provides the jars"
    assert not any("/site-packages/mlv_spark/" in n for n in names), "the package travels as the zip only"
    assert any(n.endswith("/site-packages/feast/__init__.py") for n in names)


def test_the_demo_runs_on_a_local_cluster_from_the_zip_and_the_packed_environment(lakefs_repo):
    lk = lakefs_repo
    result = run_job("demo", "--repository", lk.repository, "--users", "150", "--days", "20", "--model-name",
                     f"fraud-detector-{lk.repository}", env=PACKED, timeout=1500)
    assert result.returncode == 0, result.output[-4000:]
    assert f"mlv_spark from {ZIP}" in result.output and "training data REPRODUCED: identical" in result.output
    assert f"workers' Python ./{ENV_ALIAS}/bin/python" in result.output
    assert set(lk.branches()) == {"main"} and {"feature-eng-v1", "feature-eng-v2"} <= set(lk.tags())
