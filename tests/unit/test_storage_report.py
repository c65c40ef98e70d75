"""The storage accounting: logical bytes per ref, shared and unique bytes, from listings."""

from __future__ import annotations

from mlv_spark.workflows.storage_report import StoredObject, account


def obj(path: str, address: str, size: int) -> StoredObject:
    return StoredObject(path, address, size)


def test_a_branch_that_rewrites_one_table_shares_the_rest():
    main = [obj("a/1", "x1", 100), obj("a/2", "x2", 200), obj("b/1", "x3", 300)]
    branch = [obj("a/1", "x1", 100), obj("a/2", "x2", 200), obj("b/1", "y1", 50)]
    report = account("repo", "test", {"main": ("c1", main), "exp-b": ("c2", branch)})
    usage = {r.ref: r for r in report.refs}
    assert (usage["main"].logical_bytes, usage["main"].unique_bytes, usage["main"].objects) == (600, 300, 3)
    assert (usage["exp-b"].logical_bytes, usage["exp-b"].unique_bytes) == (350, 50)
    assert report.physical_bytes == 650 and report.shared_bytes == 300 and report.logical_bytes == 950
    assert "stored once: 650 B for 950 B" in report.render() and "(32% not duplicated)" in report.render()


def test_refs_at_one_commit_share_everything_and_one_object_under_two_paths_is_stored_once():
    objects = [obj("t/1", "x1", 10), obj("t/copy", "x1", 10)]  # lakeFS copies share the address
    report = account("repo", "test", {"main": ("c1", objects), "v1": ("c1", objects)})
    assert [(r.logical_bytes, r.unique_bytes) for r in report.refs] == [(20, 0), (20, 0)]
    assert report.physical_bytes == 10 and report.shared_bytes == 10
    assert report.as_dict()["refs"][1] == {"ref": "v1", "commit": "c1", "objects": 2, "logical_bytes": 20, "unique_bytes": 0}


def test_an_empty_ref_costs_nothing():
    report = account("repo", "test", {"main": ("c1", [])})
    assert report.physical_bytes == report.shared_bytes == report.logical_bytes == 0
    assert "(0% not duplicated)" in report.render()



def test_spark_reads_the_embedded_s3_block_store_with_its_own_bucket_settings_and_nothing_else():
    from pathlib import Path

    from mlv_spark.config import load_settings
    from mlv_spark.workflows.storage_report import block_store_conf

    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    assert block_store_conf(load_settings("local", conf_dir=conf_dir, env={}).services) == {}
    assert block_store_conf(load_settings("emr", conf_dir=conf_dir, env={}).services) == {}  # EMRFS serves s3://
    services = load_settings("local-s3", conf_dir=conf_dir, env={"MLV_SERVICES_S3_PORT": "29333"}).services
    conf = block_store_conf(services)
    assert conf["fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert conf["fs.s3a.bucket.mlv-lakefs.endpoint"] == "http://127.0.0.1:29333"
    assert conf["fs.s3a.bucket.mlv-lakefs.secret.key"] == services.s3_secret_access_key
    assert not [k for k in conf if k.startswith("fs.s3a.") and not k.startswith("fs.s3a.bucket.mlv-lakefs.")], \
        "the gateway's settings (fs.s3a.endpoint, keys) stay as they are for every other bucket"
