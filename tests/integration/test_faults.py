"""Faults: lakeFS stopped in the middle of a feature pipeline's write, MLflow stopped before a
training run logs its lineage, an executor JVM killed during a write on a local cluster. Each
job finishes or fails cleanly — one `error:` line, `main` unchanged, no half-made MLflow run —
and the same command, rerun once the service is back, converges.

These tests stop and start services, so they run against a private lakeFS + MLflow pair of their
own (free ports, a temporary run directory), never the session's shared one."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlv_spark.config import load_settings
from mlv_spark.devstack import LocalServices, free_port
from mlv_spark.lakefs import LakeFS

from tests.integration.helpers import REPO_ROOT, run_job

pytestmark = pytest.mark.integration
REPO = "faults"


@pytest.fixture(scope="module")
def private(services):
    """(environment for jobs, LocalServices, LakeFS client) of a private service pair with data:
    raw transactions ingested, the fraud features merged, a split version."""
    run_dir = Path(tempfile.mkdtemp(prefix="mlv-faults-"))
    lakefs_port, mlflow_port = free_port(), free_port()
    env = {"MLV_SERVICES_RUN_DIR": str(run_dir), "MLV_SERVICES_LAKEFS_PORT": str(lakefs_port),
           "MLV_SERVICES_MLFLOW_PORT": str(mlflow_port), "MLV_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}"}
    settings = load_settings("local", env={**os.environ, **env})
    stack = LocalServices(settings)
    stack.up()
    try:
        repo = ["--repository", REPO]
        for job, args in (
            ("init_repository", repo),
            ("ingest", [*repo, "--generator", "card_transactions", "--param", "users=100", "--param", "days=20",
                        "--merge-into", "main", "--delete-branch"]),
            ("feature_pipeline", [*repo, "--pipeline", "fraud_features", "--experiment", "fe-0", "--merge-into", "main",
                                  "--delete-branch"]),
            ("compute_splits", [*repo, "--entity-table", "features.transaction_labels", "--entity-key", "txn_id",
                                "--group-by", "user_id", "--ratios", "train=0.7,val=0.3", "--seed", "3",
                                "--split-version", "v1", "--merge-into", "main", "--delete-branch"]),
        ):
            result = run_job(job, *args, env=env)
            assert result.returncode == 0, (job, result.output[-3000:])
        yield env, stack, LakeFS(settings.lakefs, REPO), settings
    finally:
        stack.down()


def one_error(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    return errors[0]


def test_lakefs_stopped_mid_write_leaves_main_unchanged_and_a_rerun_converges(private):
    env, stack, lk, _ = private
    before = lk.resolve("main")
    args = ["--repository", REPO, "--pipeline", "fraud_features", "--param", "amount_transform=log1p",
            "--experiment", "outage", "--merge-into", "main", "--tag", "fe-outage", "--delete-branch"]
    proc = subprocess.Popen([str(REPO_ROOT / "spark-submit.sh"), "jobs/feature_pipeline.py", *args], cwd=REPO_ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if lk.branch_exists("exp-outage") and any(c.path.startswith("features/") for c in lk.uncommitted("exp-outage")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the job ended before lakeFS was stopped"
    stack.stop("lakefs")
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 2, output[-3000:]
    assert "unreachable" in one_error(output)
    stack.up()  # lakeFS back, on the same data
    assert lk.resolve("main") == before and "fe-outage" not in lk.tags()
    rerun = run_job("feature_pipeline", *args, env=env)
    assert rerun.returncode == 0, rerun.output[-3000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert lk.resolve("main") == lk.resolve("fe-outage") == summary["merge_commit"]
    assert lk.get_commit(summary["merge_commit"]).parents[0] == before and not lk.branch_exists("exp-outage")


def test_mlflow_stopped_before_the_lineage_is_logged_leaves_no_run_and_a_rerun_converges(private):
    env, stack, lk, settings = private
    tracking = MlflowClient(settings.mlflow.tracking_uri)
    experiment = "faults"
    args = ["--repository", REPO, "--feature-service", "fraud_model", "--ref", "main", "--split-version", "v1",
            "--label", "is_fraud", "--experiment", experiment]
    proc = subprocess.Popen([str(REPO_ROOT / "spark-submit.sh"), "jobs/train.py", *args], cwd=REPO_ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # the training set is being built: the run is not created yet
        lines.append(line)
        if "planned training set" in line:
            stack.stop("mlflow")
            break
    output = "".join(lines) + proc.communicate(timeout=600)[0]
    assert proc.returncode == 2, output[-3000:]
    assert "MLflow" in one_error(output) or "unreachable" in one_error(output)
    stack.up()
    found = tracking.get_experiment_by_name(experiment)
    assert found is None or not tracking.search_runs([found.experiment_id]), "no half-made run"
    rerun = run_job("train", *args, env=env)
    assert rerun.returncode == 0, rerun.output[-3000:]
    run_id = json.loads(rerun.stdout.strip().splitlines()[-1])["run_id"]
    runs = tracking.search_runs([tracking.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["data/lakefs_commit"] == lk.resolve("main")


def _executors(root: int) -> list[int]:
    """The executor JVMs below process `root` (local-cluster launches them as its children)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            children.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    found, stack = [], [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            stack.append(pid)
            try:
                if b"CoarseGrainedExecutorBackend" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                continue
    return found


def _kill_one_executor(root: int) -> int:
    """SIGKILL one of the job's executor JVMs; its pid."""
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        executors = _executors(root)
        seen.update(executors)
        for pid in executors:
            try:
                os.kill(pid, 9)
                return pid
            except ProcessLookupError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no live executor JVM below the job (seen: {sorted(seen)})")


def test_an_executor_killed_mid_write_is_survived_on_a_local_cluster(private):
    """Separate executor JVMs (local-cluster): one is SIGKILLed while the pipeline writes. Spark
    reruns its tasks elsewhere; the job finishes (or fails cleanly), `main` moves only by the merge,
    and a rerun converges. (Executors of their own also need Spark's SLF4J API first on their class
    path: without it they died at start-up and the job waited for ever.)"""
    env, _, lk, _ = private
    cluster = {**env, "MLV_SPARK_MASTER": "local-cluster[2,1,1024]"}
    before = lk.resolve("main")
    args = ["--repository", REPO, "--pipeline", "fraud_features", "--param", "amount_transform=log1p",
            "--experiment", "executor-lost", "--merge-into", "main", "--tag", "fe-executor-lost", "--delete-branch"]
    command = [str(REPO_ROOT / "spark-submit.sh"), "--conf", "spark.executor.memory=512m", "jobs/feature_pipeline.py",
               *args]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **cluster}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    said: list[str] = []
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                said.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            if "lifecycle: open exp-executor-lost" in said[-1]:
                time.sleep(2)  # into the write: the pipeline's first stages are running
                killed = _kill_one_executor(proc.pid)
        assert killed is not None, "".join(said)[-3000:]
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=30)
    while not lines.empty():
        said.append(lines.get())
    output = "".join(said)
    assert proc.returncode in (0, 2), output[-3000:]
    if proc.returncode == 2:
        one_error(output)
        assert lk.resolve("main") == before, "a failed run never moves main"
        rerun = run_job("feature_pipeline", *args, env=env)
        assert rerun.returncode == 0, rerun.output[-3000:]
        output = rerun.stdout
    # the summary line (Spark's standalone master may still log about the lost executor after it)
    summary = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    assert lk.resolve("main") == lk.resolve("fe-executor-lost") == summary["merge_commit"]
    assert lk.get_commit(summary["merge_commit"]).parents[0] == before and not lk.branch_exists("exp-executor-lost")
    assert summary["written"]["tables"]["features.user_txn_stats"] > 0
