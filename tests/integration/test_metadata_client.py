"""lakeFS's Spark metadata client lists what the lakeFS API lists: storage_report with
`--packages` <the client> reads each commit's ranges straight from the S3 block store, in Spark,
and reports the same bytes per ref as the API listing.

The client is published for Scala 2.12 only, so this runs on the Spark 3.5 leg with lakeFS on
S3 storage: `make test-s3 SPARK=3.5` selects it (marker `metadata_client`); `make test` leaves
it out. Anywhere else it fails and says so.
"""

from __future__ import annotations

import json
import tomllib

import pyspark
import pytest

from tests.integration.helpers import REPO_ROOT, one_table_rewritten_on_a_branch, run_job, state

pytestmark = [pytest.mark.integration, pytest.mark.metadata_client]

CLIENT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mlv-spark"]["lakefs-spark-client"]


def report(*args: str, submit_options: tuple[str, ...] = ()) -> dict:
    result = run_job("storage_report", *args, timeout=900, submit_options=submit_options)
    assert result.returncode == 0, result.output[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_spark_metadata_client_reports_the_bytes_the_api_listing_reports(spark, settings, lakefs_repo):
    assert pyspark.__version__.startswith("3.5.") and settings.services.blockstore == "s3", (
        f"the metadata client test needs the Spark 3.5 leg on S3 storage (make test-s3 SPARK=3.5), "
        f"not PySpark {pyspark.__version__} on the {settings.services.blockstore} block store")
    lk = lakefs_repo
    _, _, b_exp = one_table_rewritten_on_a_branch(spark, lk)
    before = state(lk)

    by_api = report("--repository", lk.repository, "--lister", "api")
    by_client = report("--repository", lk.repository, submit_options=(
        "--packages", CLIENT, "--conf", f"spark.jars.ivy={REPO_ROOT / '.cache' / 'ivy'}"))
    assert by_api["lister"].startswith("lakeFS API listing")
    assert by_client["lister"] == "lakeFS Spark metadata client", by_client["lister"]
    numbers = ("ref", "commit", "objects", "logical_bytes", "unique_bytes")
    assert [[r[k] for k in numbers] for r in by_client["refs"]] == [[r[k] for k in numbers] for r in by_api["refs"]]
    assert {k: by_client[k] for k in ("physical_bytes", "shared_bytes")} == \
        {k: by_api[k] for k in ("physical_bytes", "shared_bytes")}
    assert {r["ref"]: r["unique_bytes"] for r in by_client["refs"]}["exp-rewrite-b"] == b_exp
    assert state(lk) == before, "a report changes nothing"
