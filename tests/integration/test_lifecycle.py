"""Feature pipelines on experiment branches with a protected main, on a real lakeFS with Spark:
protection, the lifecycle end to end, crashes at every step, conflicts, validation, tags that
keep the merged state, bad input that changes nothing, branch clean-up and the doctor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from chispa import assert_df_equality
from mlflow.tracking import MlflowClient
from py4j.protocol import Py4JJavaError


from mlv_spark.devstack import free_port
from mlv_spark.errors import MergeConflictError, RefNotWritableError
from mlv_spark.lakefs import LakeFS
from mlv_spark.lifecycle import FAIL_AFTER_ENV, FAULT_EXIT_CODE, ValidationFailed
from mlv_spark.workflows.feature_pipeline import load_pipeline, plan_pipeline, run_pipeline

from tests.integration.helpers import REPO_ROOT, features, ingest, run_job, snapshot, state

pytestmark = pytest.mark.integration
FEATURE_TABLES = ("features.user_txn_stats", "features.merchant_risk", "features.txn_details", "features.transaction_labels")


@pytest.fixture()
def raw_repo(spark, settings, lakefs_repo):
    return lakefs_repo, ingest(spark, settings, lakefs_repo)


def pipeline_args(lk: LakeFS, *extra: str) -> list[str]:
    return ["--repository", lk.repository, "--pipeline", "fraud_features", *extra]


def test_protected_main_refuses_direct_writes_and_commits_but_takes_merges(spark, settings, lakefs_repo):
    lk = lakefs_repo
    init = run_job("init_repository", "--repository", lk.repository)
    assert init.returncode == 0, init.output[-2000:]
    assert json.loads(init.stdout.strip().splitlines()[-1])["protected"] == ["main"]
    head = lk.resolve("main")
    with pytest.raises(Py4JJavaError, match="(?i)protected|403|AccessDenied"):  # the S3 gateway refuses it
        spark.range(3).write.mode("overwrite").parquet(f"s3a://{lk.repository}/main/direct")
    with pytest.raises(RefNotWritableError, match="protected"):
        lk.commit("main", "a direct commit", allow_empty=True)
    with pytest.raises(RefNotWritableError, match="protected"):
        lk.put_object("main", "direct.txt", b"x")
    assert lk.resolve("main") == head and lk.uncommitted("main") == []
    lk.create_branch("exp-change", "main")
    lk.put_object("exp-change", "notes/a.txt", b"merged")
    lk.commit("exp-change", "a change")
    merged = lk.merge("exp-change", "main")
    assert lk.resolve("main") == merged and lk.read_object("main", "notes/a.txt") == b"merged"
    again = run_job("init_repository", "--repository", lk.repository)  # idempotent
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["created"] is False


def test_the_pipeline_job_reaches_main_only_by_a_merge_and_the_tag_keeps_the_merged_state(spark, settings, raw_repo):
    lk, tables = raw_repo
    source = lk.resolve("main")
    result = run_job("feature_pipeline", *pipeline_args(lk, "--experiment", "fe-1", "--merge-into", "main",
                                                        "--tag", "feature-eng-v1", "--delete-branch"))
    assert result.returncode == 0, result.output[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["branch"] == "exp-fe-1" and summary["source_commit"] == source and summary["tag"] == "feature-eng-v1"
    assert set(summary["written"]["tables"]) == set(FEATURE_TABLES) and all(summary["written"]["tables"].values())
    assert lk.resolve("main") == summary["merge_commit"] == lk.resolve("feature-eng-v1")
    assert not lk.branch_exists("exp-fe-1") and summary["branch_deleted"] is True
    commit = lk.get_commit(summary["commit"])
    assert commit.metadata["pipeline"] == "fraud_features" and json.loads(commit.metadata["params"]) == {"amount_transform": "raw"}
    assert commit.metadata["source_commit"] == source and commit.metadata["code_dirty"] in ("true", "false")
    assert len(commit.metadata["code_commit"]) == 40
    merged = {t: snapshot(tables.read(t, "feature-eng-v1")) for t in FEATURE_TABLES}

    # main moves on (the other normalization rewrites every feature table); the tag still reads the merged state
    loaded = features(settings, "log1p")
    run_pipeline(spark, tables, lk, loaded, plan_pipeline(lk, loaded, catalog="lakefs-iceberg", experiment="fe-2",
                                                          merge_into="main", delete_branch=True))
    assert lk.resolve("main") != lk.resolve("feature-eng-v1")
    for table, before in merged.items():
        assert_df_equality(tables.read(table, "feature-eng-v1"), before(spark), ignore_row_order=True)
    amounts = tables.read("features.txn_details", "main").agg({"txn_amount": "max"}).first()[0]
    assert amounts < tables.read("features.txn_details", "feature-eng-v1").agg({"txn_amount": "max"}).first()[0]


@pytest.mark.parametrize("step, main_moves, resumed", [
    ("write", False, []), ("commit", False, ["write", "commit"]), ("merge", True, ["write", "commit", "merge"]),
])
def test_a_crash_after_each_step_is_finished_by_a_rerun_without_redoing_work(raw_repo, step, main_moves, resumed):
    lk, tables = raw_repo
    before = lk.resolve("main")
    args = pipeline_args(lk, "--experiment", "crash", "--merge-into", "main", "--tag", "fe-crash", "--delete-branch")
    crashed = run_job("feature_pipeline", *args, env={FAIL_AFTER_ENV: step})
    assert crashed.returncode == FAULT_EXIT_CODE, crashed.output[-2000:]
    assert f"injected fault: stopping right after the {step} step" in crashed.output
    assert (lk.resolve("main") != before) is main_moves
    assert lk.branch_exists("exp-crash") and "fe-crash" not in lk.tags()
    rerun = run_job("feature_pipeline", *args)
    assert rerun.returncode == 0, rerun.output[-3000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["resumed"] == resumed
    assert lk.resolve("main") == lk.resolve("fe-crash") == summary["merge_commit"]
    assert lk.get_commit(summary["merge_commit"]).parents[0] == before, "one merge, on the head the run started from"
    assert not lk.branch_exists("exp-crash")
    for table, key in (("features.txn_details", "txn_id"), ("features.transaction_labels", "txn_id")):
        rows = tables.read(table, "main")
        assert rows.count() == rows.select(key).distinct().count() > 0, f"{table} holds duplicates"


def test_a_job_killed_mid_write_leaves_main_unchanged_and_a_rerun_converges(raw_repo):
    lk, tables = raw_repo
    before = lk.resolve("main")
    args = pipeline_args(lk, "--experiment", "killed", "--merge-into", "main", "--delete-branch")
    proc = subprocess.Popen([str(REPO_ROOT / "spark-submit.sh"), "jobs/feature_pipeline.py", *args], cwd=REPO_ROOT,
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if lk.branch_exists("exp-killed") and any(c.path.startswith("features/") for c in lk.uncommitted("exp-killed")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the job ended before it was killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert lk.resolve("main") == before
    assert lk.uncommitted("exp-killed"), "the kill happened mid-write"
    rerun = run_job("feature_pipeline", *args)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert "dropping unfinished writes" in rerun.output
    rows = tables.read("features.txn_details", "main")
    assert rows.count() == rows.select("txn_id").distinct().count() > 0
    assert not lk.branch_exists("exp-killed")


def test_two_experiments_from_one_commit_the_second_conflicts_clearly_and_nothing_is_lost(spark, settings, raw_repo):
    lk, tables = raw_repo
    source = lk.resolve("main")
    first = features(settings, "raw")
    run_pipeline(spark, tables, lk, first, plan_pipeline(lk, first, catalog="lakefs-iceberg", experiment="a",
                                                         source_ref=source, merge_into="main", delete_branch=True))
    after_first = lk.resolve("main")
    expected = snapshot(tables.read("features.txn_details", after_first))
    second = features(settings, "log1p")
    plan = plan_pipeline(lk, second, catalog="lakefs-iceberg", experiment="b", source_ref=source, merge_into="main",
                         delete_branch=True)
    with pytest.raises(MergeConflictError, match="main is unchanged"):
        run_pipeline(spark, tables, lk, second, plan)
    assert lk.resolve("main") == after_first
    assert_df_equality(tables.read("features.txn_details", "main"), expected(spark), ignore_row_order=True)
    assert lk.branch_exists("exp-b"), "the conflicting work is kept on its branch"
    assert tables.read("features.txn_details", "exp-b").count() == expected(spark).count()


def test_a_failed_validation_commits_nothing_and_keeps_the_branch(spark, settings, raw_repo, tmp_path):
    lk, tables = raw_repo
    (tmp_path / "wrong_types.py").write_text(
        "from pyspark.sql import functions as F\n"
        "from mlv_spark.pipeline import Output, Pipeline\n"
        "def build(ctx):\n"
        "    t = ctx.read('raw.transactions')\n"
        "    return {'features.user_txn_stats': t.select('user_id', 'event_timestamp', 'created',\n"
        "        F.lit(1.5).alias('txn_count_7d'), F.col('amount').alias('amount_sum_7d'),\n"
        "        F.col('amount').alias('amount_avg_30d'), F.lit(1).cast('long').alias('distinct_merchants_30d'))}\n"
        "PIPELINE = Pipeline('wrong_types', ('raw.transactions',), (Output('features.user_txn_stats', ('user_txn_stats',)),), build)\n")
    before = state(lk)
    loaded = load_pipeline(str(tmp_path / "wrong_types.py"), [], {}, settings.code.feature_repo)
    plan = plan_pipeline(lk, loaded, catalog="lakefs-iceberg", experiment="bad-types", merge_into="main", tag="never")
    with pytest.raises(ValidationFailed, match=r"txn_count_7d is double, but Feast view 'user_txn_stats' declares INT64.*"
                                               r"stays on branch 'exp-bad-types' for inspection"):
        run_pipeline(spark, tables, lk, loaded, plan)
    assert lk.resolve("main") == before[0] and lk.tags() == before[2]
    assert lk.get_commit("exp-bad-types").metadata["mlv.lifecycle"] == "open", "nothing was committed"
    assert tables.read("features.user_txn_stats", "exp-bad-types").count() > 0, "the data is there to inspect"


def test_delta_tables_read_at_the_tag_give_the_merged_state(spark, settings, lakefs_repo):
    lk = lakefs_repo
    tables = ingest(spark, settings, lk, catalog="delta")
    loaded = features(settings)
    result = run_pipeline(spark, tables, lk, loaded, plan_pipeline(lk, loaded, catalog="lakefs-delta", experiment="d1",
                                                                   merge_into="main", tag="delta-v1", delete_branch=True))
    merged = snapshot(tables.read("features.user_txn_stats", "delta-v1"))
    assert merged(spark).count() == result.written["tables"]["features.user_txn_stats"] > 0
    log1p = features(settings, "log1p")
    run_pipeline(spark, tables, lk, log1p, plan_pipeline(lk, log1p, catalog="lakefs-delta", experiment="d2",
                                                         merge_into="main", delete_branch=True))
    assert not lk.branch_exists("exp-d1") and lk.resolve("main") != lk.resolve("delta-v1")
    assert_df_equality(tables.read("features.user_txn_stats", "delta-v1"), merged(spark), ignore_row_order=True)


def test_bad_input_is_one_error_line_and_changes_nothing(raw_repo, settings):
    lk, _ = raw_repo
    lk.create_branch("exp-taken", "main")  # a branch of that name holding other work
    lk.tag("feature-eng-v9", lk.resolve("main~1"))  # a tag at another commit
    before = state(lk)
    closed = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["--repository", lk.repository, "--pipeline", "no_such_pipeline"], {}, "unknown pipeline 'no_such_pipeline'"),
        (pipeline_args(lk, "--source-ref", "no-such-ref"), {}, "no-such-ref does not exist"),
        (pipeline_args(lk, "--experiment", "has space"), {}, "invalid branch name 'exp-has space'"),
        (pipeline_args(lk, "--experiment", "taken"), {}, "branch 'exp-taken' already exists and holds work not made by this experiment"),
        (pipeline_args(lk, "--merge-into", "main", "--tag", "feature-eng-v9"), {}, "tag 'feature-eng-v9' already points to"),
        (pipeline_args(lk, "--tag", "a/b", "--merge-into", "main"), {}, "invalid tag name 'a/b'"),
        (pipeline_args(lk, "--tag", "t1"), {}, "also give --merge-into"),
        (pipeline_args(lk, "--merge-into", "nope"), {}, "--merge-into 'nope': no such branch"),
        (pipeline_args(lk, "--param", "amount_transform=sqrt"), {}, "amount_transform='sqrt'; use raw or log1p"),
        (pipeline_args(lk, "--param", "unknown=1"), {}, "has no parameter(s) ['unknown']"),
        (pipeline_args(lk), {"MLV_LAKEFS_ENDPOINT": closed}, f"lakeFS at {closed} is unreachable"),
        (pipeline_args(lk), {"MLV_LAKEFS_SECRET_ACCESS_KEY": "wrong-secret"}, "check MLV_LAKEFS_ACCESS_KEY_ID"),
        (["--repository", lk.repository, "--generator", "fraud_features"], {}, "generators read nothing"),
    ]
    for args, env, message in cases:
        job = "ingest" if "--generator" in args else "feature_pipeline"
        result = run_job(job, *args, env=env)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.returncode == 2, (args, result.output[-2000:])
        assert len(errors) == 1 and message in errors[0], (args, errors)
        assert "Traceback" not in result.output, args
        assert state(lk) == before, args
    assert "wrong-secret" not in "".join(run_job("feature_pipeline", *pipeline_args(lk), env={
        "MLV_LAKEFS_SECRET_ACCESS_KEY": "wrong-secret"}).output)


def test_cleanup_deletes_merged_experiment_branches_and_keeps_work_and_tags(raw_repo):
    lk, _ = raw_repo
    lk.create_branch("exp-merged", "main")
    lk.put_object("exp-merged", "notes/m.txt", b"m")
    lk.commit("exp-merged", "m")
    lk.merge("exp-merged", "main")
    lk.create_branch("exp-unmerged", "main")
    lk.put_object("exp-unmerged", "notes/u.txt", b"u")
    lk.commit("exp-unmerged", "u")
    lk.create_branch("exp-dirty", "main")
    lk.put_object("exp-dirty", "notes/d.txt", b"d")  # uncommitted work
    lk.create_branch("keep-me", "main")  # not an experiment branch
    tags = lk.tags()

    dry = run_job("cleanup_branches", "--repository", lk.repository)
    assert dry.returncode == 0, dry.output[-2000:]
    report = {b["branch"]: b for b in json.loads(dry.stdout.strip().splitlines()[-1])["branches"]}
    assert report["exp-merged"]["action"] == "delete" and report["exp-merged"]["merged"]
    assert report["exp-unmerged"]["action"] == report["exp-dirty"]["action"] == "keep"
    assert "keep-me" not in report and "dry run: nothing was deleted" in dry.stdout
    assert {"exp-merged", "exp-unmerged", "exp-dirty", "keep-me"} <= set(lk.branches())

    young = run_job("cleanup_branches", "--repository", lk.repository, "--older-than-days", "1", "--delete")
    assert young.returncode == 0 and lk.branch_exists("exp-merged"), "younger than a day: kept"
    deleted = run_job("cleanup_branches", "--repository", lk.repository, "--delete")
    assert json.loads(deleted.stdout.strip().splitlines()[-1])["deleted"] == ["exp-merged"]
    forced = run_job("cleanup_branches", "--repository", lk.repository, "--delete", "--force")
    assert sorted(json.loads(forced.stdout.strip().splitlines()[-1])["deleted"]) == ["exp-dirty", "exp-unmerged"]
    assert set(lk.branches()) == {"main", "keep-me"} and lk.tags() == tags


def test_doctor_flags_each_anti_pattern_and_passes_a_clean_repository(spark, settings, raw_repo):
    lk, tables = raw_repo
    clean = run_job("doctor", "--repository", lk.repository, "--no-mlflow")
    assert clean.returncode == 0, clean.output[-2000:]
    assert "0 finding(s)" in clean.stdout and "raw/transactions (iceberg)" in clean.stdout

    lk.create_branch("exp-plant", "main")
    for split in ("train", "val", "test"):
        tables.write(spark.range(3), f"features.fraud_{split}", "exp-plant")
    lk.put_object("exp-plant", "pipelines/transform.py", b"print('code in the lake')\n")
    lk.put_object("exp-plant", "training_sets/old/_mlv_training_set.json",
                  json.dumps({"iceberg_snapshot_id": 123, "lakefs_ref": "exp-marker"}).encode())
    lk.commit("exp-plant", "anti-patterns")
    lk.merge("exp-plant", "main")
    lk.delete_branch("exp-plant")
    lk.create_branch("exp-marker", "main")
    lk.put_object("exp-marker", "notes/kept.txt", b"kept as a version")
    lk.commit("exp-marker", "a branch used as a version")

    tracking = MlflowClient(settings.mlflow.tracking_uri)
    experiment = tracking.create_experiment(f"doctor-{lk.repository}")
    planted = tracking.create_run(experiment)  # lineage of someone else's: a snapshot id and a branch, no commit
    for key, value in (("data/lakefs_repository", lk.repository), ("data/lakefs_ref", "exp-marker"),
                       ("iceberg_snapshot_id", "42")):
        tracking.log_param(planted.info.run_id, key, value)

    flagged = run_job("doctor", "--repository", lk.repository, "--stale-days", "0")
    assert flagged.returncode == 3, flagged.output[-2000:]
    findings = json.loads(flagged.stdout.strip().splitlines()[-1])["findings"]
    rules = {(f["rule"], f["subject"].split(" ")[0]) for f in findings}
    assert ("split-tables", "features/fraud_test,") in rules
    assert ("code-in-lakefs", "pipelines/transform.py") in rules
    snapshots = [f["subject"] for f in findings if f["rule"] == "snapshot-lineage"]
    assert any("_mlv_training_set.json" in s for s in snapshots) and f"MLflow run {planted.info.run_id}" in snapshots
    markers = [f["subject"] for f in findings if f["rule"] == "branch-as-version"]
    assert len(markers) == 3  # named by a manifest, named by an MLflow run, old and unmerged
    assert any(m.startswith(f"MLflow run {planted.info.run_id} names branch 'exp-marker'") for m in markers)
    assert "why:" in flagged.stdout and "fix:" in flagged.stdout
