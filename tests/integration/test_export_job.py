"""jobs/export.py on real lakeFS and Spark: a tag's tables land as plain Parquet with a manifest,
identical to the tag's rows; a rerun is a no-op; a branch, a lakeFS destination, an unknown table
and a folder holding something else are refused with one line, writing nothing."""

from __future__ import annotations

import json

import pytest
from chispa import assert_df_equality

from tests.integration.helpers import ingest, run_job, state

pytestmark = pytest.mark.integration


def summary(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_tag_is_exported_as_verified_parquet_with_a_manifest(spark, settings, lakefs_repo, tmp_path):
    lk = lakefs_repo
    tables = ingest(spark, settings, lk)  # raw.transactions and raw.fraud_labels, tagged raw-v1
    out = tmp_path / "export"
    first = run_job("export", "--repository", lk.repository, "--ref", "raw-v1", "--to", str(out))
    assert first.returncode == 0, first.output[-3000:]
    result = summary(first)
    assert result["commit"] == lk.resolve("raw-v1") and result["noop"] is False
    assert set(result["tables"]) == {"raw.transactions", "raw.fraud_labels"}
    manifest = json.loads((out / "_mlv_export.json").read_text())
    assert manifest["commit"] == result["commit"] and manifest["tables"] == result["tables"]
    for name in ("raw.transactions", "raw.fraud_labels"):
        namespace, table = name.split(".")
        exported = spark.read.parquet(str(out / namespace / table))
        tagged = tables.read(name, "raw-v1")
        assert_df_equality(exported, tagged, ignore_row_order=True, ignore_nullable=True)
        assert manifest["tables"][name]["rows"] == tagged.count()

    again = run_job("export", "--repository", lk.repository, "--ref", "raw-v1", "--to", str(out))
    assert again.returncode == 0 and summary(again)["noop"] is True

    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("someone else's file")
    before = state(lk)
    for args, message in (
        (["--ref", "main", "--to", str(tmp_path / "b")], "is a branch, and a branch moves"),
        (["--ref", "raw-v1", "--to", f"lakefs://{lk.repository}/main/export"], "is in lakeFS"),
        (["--ref", "raw-v1", "--to", f"s3a://{lk.repository}/main/export"], "is in lakeFS"),
        (["--ref", "raw-v1", "--table", "raw.nope", "--to", str(tmp_path / "c")], "--table raw.nope: not a table (iceberg) at"),
        (["--ref", "raw-v1", "--to", str(other)], "is not empty and holds no export of raw-v1"),
        (["--ref", "no-such-tag", "--to", str(tmp_path / "d")], "no-such-tag does not exist"),
    ):
        bad = run_job("export", "--repository", lk.repository, *args)
        errors = [line for line in bad.output.splitlines() if line.startswith("error:")]
        assert bad.returncode == 2 and len(errors) == 1 and message in errors[0], (args, bad.output[-2000:])
        assert "Traceback" not in bad.output
    assert state(lk) == before
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
