"""The stack itself: services healthy, one session builder (UTC, jars, catalogs), local-iceberg."""

from __future__ import annotations

import urllib.request

import pytest
from chispa import assert_df_equality

from mlv_spark.catalogs import Tables, load_catalog

pytestmark = pytest.mark.integration


def test_services_answer_on_loopback(services):
    assert services.lakefs.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{services.mlflow}/health", timeout=5) as response:
        assert response.status == 200


def test_session_is_utc_with_iceberg_and_delta_extensions(spark, services):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    extensions = spark.conf.get("spark.sql.extensions")
    assert "IcebergSparkSessionExtensions" in extensions and "DeltaSparkSessionExtension" in extensions


def test_local_iceberg_catalog_round_trip(spark, settings, services, tmp_path):
    catalog = load_catalog("local_t", type="local-iceberg", warehouse=str(tmp_path / "wh")).activate(spark)
    tables = Tables(spark, catalog, None)
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id long, v string")
    tables.write(df, "scratch.t")
    assert_df_equality(tables.read("scratch.t").orderBy("id"), df, ignore_nullable=True)
    assert (tmp_path / "wh" / "scratch" / "t" / "metadata").is_dir()
