"""Nothing lost: split versions immutable by their data (and under concurrent writers), and a
sweep of bad input over every job's command line and environment — each one `error:` line, exit
2, no traceback, and nothing changed: main's head, the branches, the tags and the MLflow runs.
The cases are listed in docs/reliability.md."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta

import pytest
from mlflow.tracking import MlflowClient

from mlv_spark.devstack import free_port
from mlv_spark.errors import SplitVersionError
from mlv_spark.splits import SplitParams
from mlv_spark.splits.index import SPLITS_TABLE, VERSIONS_TABLE, SplitVersion
from mlv_spark.workflows.registry import SplitRegistry
from mlv_spark.workflows.split_version import compute_split_version

from tests.integration.helpers import REPO_ROOT, run_job, state

pytestmark = pytest.mark.integration
T0 = datetime(2024, 1, 1)
ENTITIES = "features.events"


@pytest.fixture()
def events_repo(spark, settings, lakefs_repo):
    """Entities on main: 200 users with a label, one with a null key in another table."""
    from mlv_spark.catalogs import Tables, profile_catalog

    tables = Tables(spark, profile_catalog(settings, "lakefs", lakefs_repo.repository).activate(spark), lakefs_repo)
    rows = [(u, T0 + timedelta(days=u % 20), u % 7 == 0, float(u)) for u in range(200)]
    tables.write(spark.createDataFrame(rows, "user_id long, event_timestamp timestamp, label boolean, amount double"),
                 ENTITIES, "main")
    tables.write(spark.createDataFrame([(None, T0, True), (1, T0, False)], "user_id long, event_timestamp timestamp, label boolean"),
                 "features.with_null_keys", "main")
    tables.write(spark.createDataFrame([(1.5, T0)], "user_id double, event_timestamp timestamp"), "features.float_keys", "main")
    lakefs_repo.commit("main", "entities")
    lakefs_repo.protect_branch("main")
    return tables


def splits_args(lk, version: str, *extra: str, seed: str = "1", ratios: str = "train=0.8,test=0.2",
                table: str = ENTITIES, stratify: str | None = "label") -> list[str]:
    return ["--repository", lk.repository, "--entity-table", table, "--entity-key", "user_id",
            *(["--stratify-by", stratify] if stratify else []), "--ratios", ratios, "--seed", seed,
            "--split-version", version, "--merge-into", "main", "--delete-branch", *extra]


def test_two_runs_of_one_new_split_version_at_once_leave_exactly_one_copy(spark, events_repo):
    tables = events_repo
    lk = tables.lakefs

    def launch(*args: str) -> subprocess.Popen:
        return subprocess.Popen([str(REPO_ROOT / "spark-submit.sh"), "jobs/compute_splits.py", *args], cwd=REPO_ROOT,
                                env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # the same new version under one name, other parameters: one wins, the other is refused;
    # the same parameters: one copy whoever finishes; two versions at once: both published
    for versions, seeds in ((("v_race", "v_race"), ("1", "2")), (("v_same", "v_same"), ("3", "3")),
                            (("v_a", "v_b"), ("4", "5"))):
        procs = [launch(*splits_args(lk, version, seed=seed)) for version, seed in zip(versions, seeds)]
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        codes = [p.returncode for p in procs]
        for code, output in zip(codes, outputs):
            assert code in (0, 2) and "Traceback" not in output, output[-2000:]
            if code == 2:  # the loser says why, in one line
                errors = [line for line in output.splitlines() if line.startswith("error:")]
                assert len(errors) == 1, output[-2000:]
                assert versions[0] in errors[0] or "another run is working on branch" in errors[0], errors
        if versions[0] != versions[1]:
            assert codes == [0, 0], outputs  # the second merge conflicted and was published again on the new head
        elif seeds[0] != seeds[1]:
            assert sorted(codes) == [0, 2], "two different versions under one name: one wins, the other is refused"
        else:
            assert 0 in codes, outputs
        for version in set(versions):
            registry = tables.read(VERSIONS_TABLE, "main").where(f"split_version = '{version}'")
            assert registry.count() == 1
            index = tables.read(SPLITS_TABLE, "main").where(f"split_version = '{version}'")
            assert index.count() == index.select("entity_key").distinct().count() == 200, "exactly one copy"
            seed = int(registry.first()["params_json"].split('"seed":')[1].split(",")[0])
            assert index.select("split_seed").distinct().collect()[0][0] == seed
    assert set(lk.branches()) == {"main"}


def test_a_split_version_changed_after_publication_is_refused_by_its_readers(spark, events_repo):
    tables = events_repo
    lk = tables.lakefs
    params = SplitParams.of(entity_key="user_id", ratios={"train": 0.8, "test": 0.2}, seed=5, stratify_by="label",
                            time_column="event_timestamp")
    compute_split_version(spark, tables, lk, SplitVersion("v1", ENTITIES, "main", params), merge_into="main",
                          delete_branch=True)
    SplitRegistry(tables, "main").entity_rows("v1", ["train"])  # published rows read fine
    # a second writer, outside the split job, moves rows of the published version and merges it
    lk.create_branch("exp-rewrite", "main")
    spark.sql(f"UPDATE {tables.catalog.name}.`exp-rewrite`.ml_datasets.splits SET split = 'test' "
              "WHERE split_version = 'v1' AND split = 'train' AND entity_key IN ('1', '2', '3')")
    lk.commit("exp-rewrite", "rewrite v1")
    lk.merge("exp-rewrite", "main")
    with pytest.raises(SplitVersionError, match="'v1' at .* was changed after it was published"):
        SplitRegistry(tables, "main").entity_rows("v1", ["train"])


def test_bad_input_over_every_job_is_one_error_line_and_changes_nothing(settings, events_repo, tmp_path):
    lk = events_repo.lakefs
    tracking = MlflowClient(settings.mlflow.tracking_uri)
    broken_repo = tmp_path / "broken_repo"
    broken_repo.mkdir()
    (broken_repo / "feature_store.yaml").write_text("project: broken\nregistry: r.db\nprovider: local\n")
    (broken_repo / "defs.py").write_text("this is not python\n")
    closed = f"http://127.0.0.1:{free_port()}"
    experiment, model = f"sweep-{lk.repository}", f"model-{lk.repository}"
    repo, feature_repo = ["--repository", lk.repository], str(REPO_ROOT / "examples" / "feature_repo")
    training = [*repo, "--feature-service", "fraud_model", "--ref", "main", "--split-version", "v1"]
    cases = [
        # compute_splits: ratios, seeds, names, refs, tables, columns, key types, null and empty input, time options
        ("compute_splits", splits_args(lk, "v1", ratios="train=0.8,test=0.1"), {}, "sum to 0.9"),
        ("compute_splits", splits_args(lk, "v1", ratios="train=eight"), {}, "--ratios 'train=eight'"),
        ("compute_splits", splits_args(lk, "v1", seed="one"), {}, "--seed: invalid int value: 'one'"),
        ("compute_splits", splits_args(lk, "v 1"), {}, "split version 'v 1' must be"),
        ("compute_splits", splits_args(lk, "v1", "--source-ref", "no-such-ref"), {}, "no-such-ref does not exist"),
        ("compute_splits", splits_args(lk, "v1", table="features.nope"), {}, "does not exist"),
        ("compute_splits", splits_args(lk, "v1", table="features/x.y"), {}, "table name 'features/x.y'"),
        ("compute_splits", splits_args(lk, "v1", stratify="colour"), {}, "['colour']"),
        ("compute_splits", splits_args(lk, "v1", table="features.float_keys", stratify=None), {}, "has type double"),
        ("compute_splits", splits_args(lk, "v1", "--method", "hash", table="features.with_null_keys"), {},
         "entity_key column 'user_id' is null"),
        ("compute_splits", splits_args(lk, "v1", "--cutoff", "2024-01-10", "--gap-days", "nan"), {}, "--gap-days nan"),
        ("compute_splits", splits_args(lk, "v1", "--cutoff", "2024-01-10", "--gap-days", "1e20"), {}, "--gap-days 1e+20"),
        ("compute_splits", splits_args(lk, "v1", "--cutoff", "not a date"), {}, "cutoff='not a date' is not a valid timestamp"),
        ("compute_splits", splits_args(lk, "v1", "--cutoff", "2024-01-10", "--future-splits", "train,test"), {},
         "must name some but not all"),
        ("compute_splits", splits_args(lk, "v1", "--experiment", "has space"), {}, "invalid branch name"),
        ("compute_splits", splits_args(lk, "v1", "--tag", "bad tag"), {}, "invalid tag name 'bad tag'"),
        # build_training_set: Feast repos missing / broken, unknown services and references, outputs, formats
        ("build_training_set", [*training, "--feature-repo", str(tmp_path / "missing"), "--output", str(tmp_path / "o")], {},
         "does not exist; pass --feature-repo"),
        ("build_training_set", [*training, "--feature-repo", str(broken_repo), "--output", str(tmp_path / "o")], {},
         "cannot load the feature definitions"),
        ("build_training_set", [*repo, "--feature-repo", feature_repo, "--feature-service", "nope", "--ref", "main",
                                "--split-version", "v1", "--output", str(tmp_path / "o")], {}, "unknown feature service 'nope'"),
        ("build_training_set", [*repo, "--feature-repo", feature_repo, "--features", "user_txn_stats:nope", "--ref", "main",
                                "--split-version", "v1", "--output", str(tmp_path / "o")], {}, "has no feature 'nope'"),
        ("build_training_set", [*training, "--feature-repo", feature_repo, "--output", str(tmp_path / "o"),
                                "--format", "csv"], {}, "invalid choice: 'csv'"),
        ("build_training_set", [*training, "--feature-repo", feature_repo, "--output", "lakefs://other-repo/main/x"], {},
         "is in repository 'other-repo'"),
        ("build_training_set", [*training, "--feature-repo", feature_repo, "--output", f"lakefs://{lk.repository}/main/"],
         {}, "is the root of main"),
        # train, promote, reproduce, lineage
        ("train", [*training, "--feature-repo", feature_repo], {}, "exactly one --label"),
        ("train", [*training, "--feature-repo", feature_repo, "--label", "label", "--trainer", "nope"], {}, "--trainer 'nope'"),
        ("train", [*training, "--feature-repo", feature_repo, "--label", "label"], {"MLV_MLFLOW_TRACKING_URI": closed},
         f"MLflow at {closed} does not answer"),
        ("promote", ["--run-id", "f" * 32, "--tag", "t1", "--model-name", model], {}, "not found"),
        ("promote", ["--run-id", "f" * 32, "--tag", "t1", "--model-name", "bad name"], {}, "--model-name 'bad name'"),
        ("reproduce", ["--model-name", "no-such-model", "--alias", "champion"], {}, "has no alias 'champion'"),
        ("lineage", ["--run-id", "f" * 32], {}, "not found"),
        # pipelines, hygiene, doctor
        ("feature_pipeline", [*repo, "--pipeline", "fraud_features"], {}, "do not exist at main"),
        ("cleanup_branches", [*repo, "--older-than-days", "-1"], {}, "--older-than-days -1.0 must be a number of days >= 0"),
        ("cleanup_branches", [*repo, "--older-than-days", "nan"], {}, "--older-than-days nan must be a number of days"),
        ("doctor", [*repo, "--ref", "no-such-ref"], {}, "no-such-ref does not exist"),
        ("storage_report", [*repo, "--ref", "no-such-ref"], {}, "no-such-ref does not exist"),
        ("storage_report", [*repo, "--lister", "spark"], {}, "invalid choice: 'spark'"),
        ("demo", [*repo, "--users", "0"], {}, "--users 0"),
        # environment: unreachable services, wrong credentials, bad settings, missing jars
        ("compute_splits", splits_args(lk, "v1"), {"MLV_LAKEFS_ENDPOINT": closed}, f"lakeFS at {closed} is unreachable"),
        ("compute_splits", splits_args(lk, "v1"), {"MLV_LAKEFS_SECRET_ACCESS_KEY": "wrong"}, "check MLV_LAKEFS_ACCESS_KEY_ID"),
        ("compute_splits", splits_args(lk, "v1"), {"MLV_SERVICES_LAKEFS_PORT": "http"}, "services.lakefs_port is 'http'"),
        ("compute_splits", splits_args(lk, "v1"), {"MLV_PROFILE": "nope"}, "unknown profile 'nope'"),
        ("compute_splits", splits_args(lk, "v1"), {"MLV_PACKAGE": "egg"}, "unknown package mode 'egg'"),
        ("compute_splits", splits_args(lk, "v1"), {"MLV_PACKAGE": "env", "MLV_ENV_ARCHIVE": str(tmp_path / "env.tar.gz")},
         f"no packed environment at {tmp_path / 'env.tar.gz'}"),
        ("compute_splits", splits_args(lk, "v1"), {"MLV_JAR_DIR": str(tmp_path / "no-jars")}, "run `make bootstrap`"),
    ]
    assert len(cases) >= 30

    def snapshot() -> tuple:
        """lakeFS state; the runs of this sweep's MLflow experiment; models named for this test (the
        services may be shared with other sessions, so MLflow is looked at where the jobs would write)."""
        found = tracking.get_experiment_by_name(experiment)
        runs = len(tracking.search_runs([found.experiment_id], max_results=1000)) if found else 0
        return state(lk), runs, [m.name for m in tracking.search_registered_models(f"name LIKE '{model}%'")]

    before = snapshot()
    for job, args, env, message in cases:
        result = run_job(job, *args, env={"MLV_MLFLOW_EXPERIMENT": experiment, **env})
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.returncode == 2, (job, args, env, result.output[-2500:])
        assert len(errors) == 1 and message in errors[0], (job, args, env, errors)
        assert "Traceback" not in result.output, (job, args)
        assert not any(value in result.output for key, value in env.items() if "SECRET" in key), "no credential"
    assert snapshot() == before


def test_the_doctor_guards_the_data_of_promoted_models_against_garbage_collection(spark, settings, events_repo):
    tables = events_repo
    lk = tables.lakefs
    tag = "model-guard-data"
    commit = lk.tag(tag, "main")
    tracking = MlflowClient(settings.mlflow.tracking_uri)
    model = f"guard-{lk.repository}"
    tracking.create_registered_model(model)
    tracking.create_model_version(model, source="s3://models/guard", tags={
        "data/lakefs_repository": lk.repository, "data/lakefs_tag": tag, "data/lakefs_commit": commit})

    def retention() -> list[dict]:
        result = run_job("doctor", "--repository", lk.repository, "--stale-days", "1000")
        assert result.returncode in (0, 3), result.output[-2000:]
        return [f for f in json.loads(result.stdout.strip().splitlines()[-1])["findings"] if f["rule"] == "retention"]

    # main replaces the tagged table's current state (Iceberg overwrite: a new pointer object)
    lk.create_branch("exp-rewrite", "main")
    tables.write(tables.read(ENTITIES, "main").limit(10), ENTITIES, "exp-rewrite", mode="overwrite")
    lk.commit("exp-rewrite", "rewrite")
    lk.merge("exp-rewrite", "main")
    lk.delete_branch("exp-rewrite")
    assert retention() == [], "without garbage-collection rules lakeFS keeps every committed object"
    lk.set_gc_rules(7, {"main": 14})
    found = retention()
    assert len(found) == 1 and found[0]["subject"].startswith(f"model {model} version 1: tag '{tag}'")
    assert "14 day(s)" in found[0]["explanation"]  # main's rule: main replaced the object and f"retain-{tag}" in found[0]["fix"]
    lk.create_branch(f"retain-{tag}", commit)  # the fix: a branch at the commit pins its objects
    assert retention() == []


def test_a_live_run_holds_its_branch_and_a_dead_ones_lease_is_taken_over(events_repo, settings):
    """Two runs of the same work must not write one branch at once: the lease on the branch."""
    import socket
    import sys

    from mlv_spark import lifecycle
    from mlv_spark.lifecycle.lease import LEASE_PATH, BranchBusy

    lk = events_repo.lakefs

    def write(branch):
        lk.put_object(branch, f"leased/{branch}.txt", branch.encode())
        return {f"leased/{branch}.txt": 1}

    plan = lifecycle.plan(lk, experiment="leased", owner="test", params={"n": 1}, merge_into="main", delete_branch=True)
    first = lifecycle.run(lk, plan, write, message="one object")  # opens, merges, deletes the branch
    assert first.branch_deleted
    lk.create_branch("exp-leased2", "main")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lk.commit("exp-leased2", "open experiment leased2", {"mlv.lifecycle": "open", "mlv.owner": "test",
                  "mlv.params_hash": lifecycle.params_hash("test", {"n": 2}), "mlv.source_ref": "main",
                  "mlv.source_commit": lk.resolve("main")}, allow_empty=True)
        # another run of the same work, alive on this host, holds the branch
        lk.put_object("exp-leased2", LEASE_PATH, json.dumps({"run": "other", "host": socket.gethostname(),
                                                              "pid": sleeper.pid, "seen": 0}).encode())
        plan2 = lifecycle.plan(lk, experiment="leased2", owner="test", params={"n": 2})
        assert plan2.resume
        with pytest.raises(BranchBusy, match=f"another run is working on branch 'exp-leased2' .*pid {sleeper.pid}"):
            lifecycle.run(lk, plan2, write, message="x")
        assert lk.object_exists("exp-leased2", LEASE_PATH) and not lk.object_exists("exp-leased2", "leased/exp-leased2.txt")
    finally:
        sleeper.kill()
        sleeper.wait()
    done = lifecycle.run(lk, plan2, write, message="x")  # the holder is gone: taken over
    assert done.commit and not lk.object_exists(done.commit, LEASE_PATH), "the lease is never committed"
