"""jobs/storage_report.py on real lakeFS: a branch that rewrites exactly one of two tables
stores that table's new files only; everything else is shared with main, and a tag at main's
commit costs nothing."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import one_table_rewritten_on_a_branch, run_job, state

pytestmark = pytest.mark.integration


def test_a_branch_rewriting_one_table_stores_only_that_table_again(spark, settings, lakefs_repo):
    lk = lakefs_repo
    a, b_main, b_exp = one_table_rewritten_on_a_branch(spark, lk)
    assert a and b_main and b_exp

    before = state(lk)
    result = run_job("storage_report", "--repository", lk.repository)  # default refs: main, the tag, exp-*
    assert result.returncode == 0, result.output[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    usage = {r["ref"]: r for r in report["refs"]}
    assert list(usage) == ["main", "tables-v1", "exp-rewrite-b"]
    assert usage["main"]["logical_bytes"] == usage["tables-v1"]["logical_bytes"] == a + b_main
    assert usage["main"]["unique_bytes"] == usage["tables-v1"]["unique_bytes"] == 0, "the tag shares main's commit"
    assert usage["exp-rewrite-b"]["logical_bytes"] == a + b_exp and usage["exp-rewrite-b"]["unique_bytes"] == b_exp
    assert report["shared_bytes"] == a + b_main and report["physical_bytes"] == a + b_main + b_exp
    if settings.services.blockstore == "local":
        assert report["lister"].startswith("lakeFS API listing (the local block store")
    else:  # S3 storage, no metadata client on the class path (test_metadata_client adds it)
        assert report["lister"].startswith("lakeFS API listing (io.treeverse.clients.LakeFSContext is not on the class path")
    assert "storage of" in result.stdout and "exp-rewrite-b" in result.stdout
    assert state(lk) == before, "a report changes nothing"

    # main and the branch alone: main's old b is now unique to main
    pair = run_job("storage_report", "--repository", lk.repository, "--ref", "main", "--ref", "exp-rewrite-b")
    usage = {r["ref"]: r for r in json.loads(pair.stdout.strip().splitlines()[-1])["refs"]}
    assert usage["main"]["unique_bytes"] == b_main and usage["exp-rewrite-b"]["unique_bytes"] == b_exp

