"""Branch isolation, merge, branch deletion and immutable tags for Iceberg and Delta tables
on a real lakeFS server, written and read by Spark through lakeFS's S3 gateway."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from mlv_spark.catalogs import Tables, profile_catalog
from mlv_spark.errors import MergeConflictError, RefNotFoundError, RefNotWritableError
from mlv_spark.lakefs import LakeFS

pytestmark = pytest.mark.integration
TABLE = "features.users"


def rows(spark: SparkSession, *pairs: tuple[int, str]) -> DataFrame:
    return spark.createDataFrame(list(pairs), "user_id long, segment string")


def assert_rows(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(actual.orderBy("user_id"), expected.orderBy("user_id"), ignore_nullable=True)


@pytest.fixture(params=["lakefs", "delta"], ids=["iceberg", "delta"])
def tables(request, spark, settings, lakefs_repo: LakeFS) -> Tables:
    catalog = profile_catalog(settings, request.param, lakefs_repo.repository).activate(spark)
    return Tables(spark, catalog, lakefs_repo)


def test_branch_merge_delete_and_tag_keep_every_ref_readable(spark, tables: Tables):
    lk = tables.lakefs
    v1 = rows(spark, (1, "a"), (2, "b"))
    tables.write(v1, TABLE, "main")
    lk.commit("main", "v1")

    branch = lk.experiment_branch("experiments/new-segments")
    assert branch == "exp-new-segments"
    lk.create_branch(branch, "main")
    v2 = rows(spark, (1, "a"), (2, "c"), (3, "d"))
    tables.write(v2, TABLE, branch, mode="overwrite")

    # Isolation: main reads the old rows and nothing was written through main's path.
    assert_rows(tables.read(TABLE, "main"), v1)
    assert lk.uncommitted("main") == []
    assert lk.uncommitted(branch) != []
    lk.commit(branch, "v2 on the experiment")

    merged = lk.merge(branch, "main")
    assert_rows(tables.read(TABLE, "main"), v2)

    # No metadata may point at the branch: main still reads every row once it is gone.
    lk.delete_branch(branch)
    assert not lk.branch_exists(branch)
    assert_rows(tables.read(TABLE, "main"), v2)

    # Tags and commit ids are immutable views of that state, after main moves on.
    assert lk.tag("users-v2", merged) == merged
    v3 = rows(spark, (4, "e"))
    tables.write(v3, TABLE, "main", mode="append")
    lk.commit("main", "v3")
    assert_rows(tables.read(TABLE, "main"), v2.unionByName(v3))
    assert_rows(tables.read(TABLE, "users-v2"), v2)
    assert_rows(tables.read(TABLE, merged), v2)


def test_reading_at_a_missing_ref_is_a_clear_error(spark, tables: Tables):
    before = tables.lakefs.resolve("main")
    with pytest.raises(RefNotFoundError, match="no-such-branch"):
        tables.read(TABLE, "no-such-branch")
    assert tables.lakefs.resolve("main") == before


def test_writing_at_a_tag_is_refused_and_changes_nothing(spark, tables: Tables):
    lk = tables.lakefs
    tables.write(rows(spark, (1, "a")), TABLE, "main")
    commit = lk.commit("main", "v1")
    lk.tag("frozen", "main")
    with pytest.raises(RefNotWritableError, match="frozen.*tag"):
        tables.write(rows(spark, (9, "z")), TABLE, "frozen", mode="overwrite")
    with pytest.raises(RefNotWritableError, match="commit"):
        tables.write(rows(spark, (9, "z")), TABLE, commit, mode="overwrite")
    assert lk.resolve("frozen") == commit
    assert lk.uncommitted("main") == []
    assert_rows(tables.read(TABLE, "frozen"), rows(spark, (1, "a")))


def test_merge_conflict_is_a_clear_error_and_leaves_main_unchanged(spark, tables: Tables):
    lk = tables.lakefs
    tables.write(rows(spark, (1, "a")), TABLE, "main")
    lk.commit("main", "v1")
    lk.create_branch("exp-left", "main")
    tables.write(rows(spark, (2, "left")), TABLE, "exp-left", mode="append")
    lk.commit("exp-left", "left change")
    tables.write(rows(spark, (3, "main")), TABLE, "main", mode="append")
    main_head = lk.commit("main", "concurrent change on main")

    with pytest.raises(MergeConflictError, match="exp-left.*main is unchanged"):
        lk.merge("exp-left", "main")
    assert lk.resolve("main") == main_head
    assert_rows(tables.read(TABLE, "main"), rows(spark, (1, "a"), (3, "main")))


def test_tags_never_move_and_diff_shows_what_a_branch_changed(spark, settings, lakefs_repo):
    from mlv_spark.errors import InvalidRefNameError, TagExistsError

    lk = lakefs_repo
    lk.put_object("main", "notes/a.txt", b"one")
    first = lk.commit("main", "a")
    lk.create_branch("exp-notes", "main")
    lk.put_object("exp-notes", "notes/b.txt", b"two")
    second = lk.commit("exp-notes", "b")
    assert [(c.path, c.type) for c in lk.diff("main", "exp-notes")] == [("notes/b.txt", "added")]

    assert lk.tag("notes-v1", first) == first
    assert lk.tag("notes-v1", first) == first  # same commit: a no-op
    with pytest.raises(TagExistsError, match="never moved"):
        lk.tag("notes-v1", second)
    assert lk.resolve("notes-v1") == first
    with pytest.raises(InvalidRefNameError, match="feature-eng-v1"):
        lk.tag("feature-eng/v1", first)
    with pytest.raises(RefNotWritableError, match="default branch"):
        lk.delete_branch("main")


def test_only_a_404_means_not_found_an_outage_or_bad_credentials_are_said_as_such(settings, lakefs_repo):
    from dataclasses import replace

    from mlv_spark.devstack import free_port
    from mlv_spark.errors import LakeFSAuthError, ServiceUnavailableError

    assert lakefs_repo.ref_kind("main") == "branch"
    lakefs_repo.commit("main", "a second commit", {}, allow_empty=True)
    assert lakefs_repo.ref_kind("main~1") == "commit", "an expression names a commit, not an invalid branch"
    with pytest.raises(RefNotFoundError, match="no-such-ref does not exist"):
        lakefs_repo.ref_kind("no-such-ref")
    down = LakeFS(replace(settings.lakefs, endpoint=f"http://127.0.0.1:{free_port()}"), lakefs_repo.repository)
    for lookup in (down.ref_kind, down.branch_exists, down.tag_commit, down.require_branch):
        with pytest.raises(ServiceUnavailableError, match="unreachable"):
            lookup("main")
    wrong = LakeFS(replace(settings.lakefs, secret_access_key="not-the-secret"), lakefs_repo.repository)
    for lookup in (wrong.ref_kind, wrong.branch_exists, wrong.tag_commit, wrong.resolve):
        with pytest.raises(LakeFSAuthError, match="MLV_LAKEFS_SECRET_ACCESS_KEY"):
            lookup("main")
