"""Pure parts of the foundation: settings, catalog plugins, lakeFS name rules, session conf."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlv_spark.catalogs import CATALOG_TYPES, load_catalog, profile_catalog
from mlv_spark.config import load_settings
from mlv_spark.errors import CatalogError, ConfigError, InvalidInputError, InvalidRefNameError
from mlv_spark.lakefs import LakeFSLocation, pin_path, validate_branch_name, validate_tag_name
from mlv_spark.session import lakefs_s3a_conf

REPO = Path(__file__).resolve().parents[2]


def test_local_profile_loads_with_env_overrides():
    env = {"MLV_LAKEFS_REPOSITORY": "other-repo", "MLV_SERVICES_LAKEFS_PORT": "29999"}
    settings = load_settings("local", conf_dir=REPO / "conf", env=env)
    assert settings.lakefs.repository == "other-repo"
    assert settings.lakefs.endpoint == "http://127.0.0.1:29999"
    assert settings.mlflow.tracking_uri == "http://127.0.0.1:25000"
    assert set(settings.catalogs) == {"lakefs", "delta", "local"}


def test_secrets_come_from_env_and_never_appear_in_repr():
    env = {"MLV_LAKEFS_ACCESS_KEY_ID": "AKIAFROMENV", "MLV_LAKEFS_SECRET_ACCESS_KEY": "s3cr3t-from-env"}
    settings = load_settings("emr", conf_dir=REPO / "conf", env=env)
    assert settings.lakefs.require_credentials() == ("AKIAFROMENV", "s3cr3t-from-env")
    assert "s3cr3t" not in repr(settings) and "AKIAFROMENV" not in repr(settings)


def test_missing_credentials_say_which_variables_to_set():
    settings = load_settings("emr", conf_dir=REPO / "conf", env={})
    with pytest.raises(ConfigError, match="MLV_LAKEFS_ACCESS_KEY_ID"):
        settings.lakefs.require_credentials()


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*databricks, databricks-16\.4, emr, emr7, local"):
        load_settings("nope", conf_dir=REPO / "conf", env={})


@pytest.mark.parametrize("name", ["exp-123-new-embeddings", "main", "_x", "a_b-c"])
def test_valid_branch_names(name):
    assert validate_branch_name(name) == name


@pytest.mark.parametrize("name", ["experiments/exp-123", "-lead", "has space", ""])
def test_invalid_branch_names_suggest_a_fix(name):
    with pytest.raises(InvalidRefNameError, match="invalid branch name"):
        validate_branch_name(name)


@pytest.mark.parametrize("name", ["model-v2.3.0-data", "feature-eng-v1"])
def test_valid_tag_names(name):
    assert validate_tag_name(name) == name


@pytest.mark.parametrize("name", ["feature-eng/v1", "v1.", "a..b", "x.lock", "a b"])
def test_invalid_tag_names(name):
    with pytest.raises(InvalidRefNameError, match="invalid tag name"):
        validate_tag_name(name)


def test_catalog_plugins_turn_refs_into_identifiers_and_paths():
    settings = load_settings("local", conf_dir=REPO / "conf", env={})
    assert set(CATALOG_TYPES) == {"lakefs-iceberg", "lakefs-delta", "local-iceberg"}
    iceberg = profile_catalog(settings, "lakefs")
    assert iceberg.table("ml_datasets.splits", "exp-1").identifier == "`lakefs`.`exp-1`.`ml_datasets`.`splits`"
    assert iceberg.spark_conf()["spark.sql.catalog.lakefs.catalog-impl"] == "io.mlvspark.iceberg.LakeFSRefCatalog"
    delta = profile_catalog(settings, "delta")
    assert delta.table("features.users", "main").path == "s3a://ml-data/main/features/users"
    local = profile_catalog(settings, "local")
    assert local.table("a.b").identifier == "`local`.`a`.`b`"
    bound = iceberg.for_repository("other-repo")
    assert bound.name == "lakefs__other_repo"
    assert bound.spark_conf()["spark.sql.catalog.lakefs__other_repo.lakefs.repository"] == "other-repo"


def test_catalog_errors_name_the_problem():
    settings = load_settings("local", conf_dir=REPO / "conf", env={})
    with pytest.raises(CatalogError, match="unknown catalog 'hive'"):
        profile_catalog(settings, "hive")
    with pytest.raises(CatalogError, match="needs a lakeFS ref"):
        profile_catalog(settings, "lakefs").table("a.b")
    with pytest.raises(CatalogError, match="'<namespace>.<table>'"):
        profile_catalog(settings, "lakefs").table("justtable", "main")
    with pytest.raises(CatalogError, match="not on lakeFS"):
        profile_catalog(settings, "local").table("a.b", "main")
    with pytest.raises(CatalogError, match="unknown type 'hive'"):
        load_catalog("h", type="hive")
    with pytest.raises(CatalogError, match="needs a 'repository' property"):
        load_catalog("x", type="lakefs-iceberg")


def test_catalogs_load_pyiceberg_style_from_a_flat_property_map_and_import_their_plugin_lazily():
    import subprocess
    import sys

    catalog = load_catalog("lk", type="lakefs-iceberg", repository="repo-a", prefix="warehouse")
    assert catalog.table("ns.t", "main").identifier == "`lk`.`main`.`ns`.`t`"
    assert catalog.spark_conf()["spark.sql.catalog.lk.lakefs.prefix"] == "warehouse"
    assert catalog.table_path("ns.t") == "warehouse/ns/t"
    probe = ("import sys, mlv_spark.catalogs as c; assert 'mlv_spark.catalogs.delta' not in sys.modules; "
             "c.load_catalog('d', type='lakefs-delta', repository='r'); assert 'mlv_spark.catalogs.delta' in sys.modules")
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


@pytest.mark.parametrize("name", ["a/b.c", "features.user stats", "features.a-b", "../x.y", "ns..t", "ns.1t"])
def test_table_names_are_plain_identifiers_so_they_never_become_nested_paths(name):
    catalog = load_catalog("lk", type="lakefs-iceberg", repository="repo-a")
    with pytest.raises(CatalogError, match=r"table name"):
        catalog.table(name, "main")


def test_lakefs_locations_parse_from_every_scheme_and_pin_to_a_commit():
    commit = "c" * 64
    for text in ("lakefs://repo/main/a/b", "s3a://repo/main/a/b/", "s3://repo/main//a/b"):
        assert LakeFSLocation.parse(text) == LakeFSLocation("repo", "main", "a/b")
    assert LakeFSLocation.parse("lakefs://repo/main") == LakeFSLocation("repo", "main", "")
    assert LakeFSLocation.parse("/tmp/x") is None and LakeFSLocation.parse("file:///tmp/x") is None
    assert pin_path("lakefs://repo/exp-1/features/x", "repo", commit) == f"s3a://repo/{commit}/features/x"
    assert pin_path("s3a://other/main/x", "repo", commit) == "s3a://other/main/x"
    location = LakeFSLocation("repo", "main", "training_sets/a")
    assert location.overlaps("training_sets") and location.overlaps("training_sets/a/b")
    assert not location.overlaps("training_sets/ab") and not location.overlaps("ml_datasets")
    with pytest.raises(InvalidInputError, match="needs a repository and a ref"):
        LakeFSLocation.parse("lakefs://repo")
    with pytest.raises(InvalidInputError, match=r"'\.\.'"):
        LakeFSLocation.parse("lakefs://repo/main/a/../ml_datasets")


@pytest.mark.parametrize("port", ["abc", "0", "70000", "-1", ""])
def test_a_bad_service_port_is_a_config_error_naming_the_variable(port):
    with pytest.raises(ConfigError, match=r"MLV_SERVICES_LAKEFS_PORT"):
        load_settings("local", conf_dir=REPO / "conf", env={"MLV_SERVICES_LAKEFS_PORT": port})


def test_s3a_conf_targets_the_lakefs_gateway_path_style():
    settings = load_settings("local", conf_dir=REPO / "conf", env={})
    conf = lakefs_s3a_conf(settings)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == settings.lakefs.endpoint
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"]


def test_missing_jars_or_lakefs_binary_fail_with_the_fix(tmp_path, monkeypatch):
    from mlv_spark.errors import ServiceUnavailableError
    from mlv_spark.jvm import local_jars
    from mlv_spark.devstack import lakefs_binary

    monkeypatch.setenv("MLV_JAR_DIR", str(tmp_path))
    monkeypatch.setenv("MLV_LAKEFS_BINARY", str(tmp_path / "lakefs"))
    settings = load_settings("local", conf_dir=REPO / "conf", env={})
    with pytest.raises(ServiceUnavailableError, match="make bootstrap"):
        local_jars(settings)
    with pytest.raises(ServiceUnavailableError, match="make bootstrap"):
        lakefs_binary(settings)


def test_only_our_marked_data_checks_become_input_errors():
    from mlv_spark.errors import DATA_ERROR_PREFIX, data_error

    spark_said = (f"[USER_RAISED_EXCEPTION] {DATA_ERROR_PREFIX}entity_key column 'k' is null in a row; drop or fill "
                  "those rows SQLSTATE: P0001\n\tat org.apache.spark...")
    assert str(data_error(RuntimeError(spark_said))) == "entity_key column 'k' is null in a row; drop or fill those rows"
    assert data_error(RuntimeError("ValueError: InvalidInputError: from some other library")) is None
    assert data_error(RuntimeError(f"{DATA_ERROR_PREFIX} SQLSTATE: P0001")) is None, "an empty message is no error"


def test_on_a_cluster_the_package_works_from_its_zip_with_the_files_shipped_beside_it(tmp_path):
    """spark-submit --py-files mlv_spark.zip --files emr.toml,pyproject.toml: the container's
    working directory holds the profile and the pins, the package is only in the zip."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    import zipfile

    work = tmp_path / "container"
    work.mkdir()
    with zipfile.ZipFile(work / "mlv_spark.zip", "w") as z:
        for path in sorted((REPO / "mlv_spark").rglob("*.py")):
            z.write(path, path.relative_to(REPO).as_posix())
    for name in ("conf/emr.toml", "pyproject.toml"):
        shutil.copy(REPO / name, work / Path(name).name)
    probe = ("import json, mlv_spark; from mlv_spark.config import load_settings; from mlv_spark.jvm import pins;"
             "s = load_settings('emr', env={'MLV_PROFILE': 'emr'});"
             "print(json.dumps([mlv_spark.__file__, str(s.root), [str(p) for p in s.code.pipelines], pins()['scala']]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(work / "mlv_spark.zip"), "MLV_CONF_DIR": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    source, root, pipelines, scala = json.loads(done.stdout.strip().splitlines()[-1])
    assert source.startswith(str(work / "mlv_spark.zip")), "the package came from the zip alone"
    assert root == str(work.resolve()) and pipelines[0] == str(work.resolve() / "examples" / "pipelines")
    assert scala == "2.13"


def test_the_s3_profile_hands_lakefs_its_keys_through_the_environment_only(tmp_path, monkeypatch):
    from mlv_spark.devstack import LocalServices, seaweedfs_binary
    from mlv_spark.errors import ServiceUnavailableError

    settings = load_settings("local-s3", conf_dir=REPO / "conf", env={"MLV_SERVICES_S3_PORT": "29333"})
    services = settings.services
    assert (services.blockstore, services.s3_port, services.s3_bucket) == ("s3", 29333, "mlv-lakefs")
    assert settings.lakefs.storage_namespace.startswith(f"s3://{services.s3_bucket}/")
    assert services.s3_secret_access_key not in repr(settings)
    stack = LocalServices(settings)
    config = "\n".join(stack._blockstore_config(tmp_path))
    assert "type: s3" in config and "endpoint: \"http://127.0.0.1:29333\"" in config and "force_path_style: true" in config
    assert services.s3_access_key_id not in config and services.s3_secret_access_key not in config
    assert stack._blockstore_env() == {"LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID": services.s3_access_key_id,
                                       "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY": services.s3_secret_access_key}
    local = LocalServices(load_settings("local", conf_dir=REPO / "conf", env={}))
    assert "type: local" in "\n".join(local._blockstore_config(tmp_path)) and local._blockstore_env() == {}
    assert local.blockstore_healthy()  # the local block store needs no server

    monkeypatch.setenv("MLV_SEAWEEDFS_BINARY", str(tmp_path / "weed"))
    with pytest.raises(ServiceUnavailableError, match="make seaweedfs"):
        seaweedfs_binary(settings)


def test_an_unknown_block_store_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"services.blockstore is 'gcs': use local or s3 \(MLV_SERVICES_BLOCKSTORE\)"):
        load_settings("local", conf_dir=REPO / "conf", env={"MLV_SERVICES_BLOCKSTORE": "gcs"})
