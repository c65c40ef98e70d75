"""The ref-relative Iceberg catalog (java/lakefs-iceberg-catalog) on a file-backed root.

`LakeFSRefCatalog` resolves every path against the root of a ref, `<root-uri-template>` with
`{repo}` and `{ref}` filled in. Here the template is ``file://<tmp>/{repo}/{ref}``, so a ref is
just a directory: these tests check what the catalog itself does — create, write, row-level
operations, namespaces, maintenance procedures, optimistic concurrency, a path prefix — and
that nothing it records names the ref or the root. What happens across lakeFS branches, merges
and tags is tested against a real lakeFS in tests/integration/test_ref_catalog_on_lakefs.py.
The catalogs `reflocal` and `reflocal_pfx` are registered on the shared test session, whose
class path must hold the Iceberg Spark runtime and the catalog jar from `make bootstrap`.
"""

from __future__ import annotations

import os
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from py4j.java_gateway import JavaClass
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from mlv_spark.config import load_settings
from mlv_spark.jvm import line_pins

pytestmark = [pytest.mark.usefixtures("ref_catalogs")]

ROOT = Path(__file__).resolve().parents[2]
CATALOG_JAR_NAME = "mlv-lakefs-iceberg-0.1.0.jar"
CATALOG, PREFIXED = "reflocal", "reflocal_pfx"  # catalog names used by this module only
REPO = "mlvrepo"
SCHEMA = "id INT, label STRING"


def _iceberg_runtime_jar() -> Path:
    """The Iceberg Spark runtime of the Spark line that runs, in its jar cache."""
    settings = load_settings("local")
    for coordinate in line_pins(settings.spark.effective_line)["jvm"]["jars"]:
        group, artifact, version = coordinate.split(":")
        if group == "org.apache.iceberg" and artifact.startswith("iceberg-spark-runtime"):
            return settings.jar_dir / f"{artifact}-{version}.jar"
    raise AssertionError("no iceberg-spark-runtime among the jars of pyproject.toml's [tool.mlv-spark] pins")


class Refs:
    """The file-backed root: one directory per ref of one repository."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ref_dir(self, ref: str) -> Path:
        return self.root / REPO / ref

    def files(self, ref: str, sub: str = "") -> list[Path]:
        return sorted(p for p in (self.ref_dir(ref) / sub).rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# decoding what Iceberg recorded (manifests are deflate-compressed Avro, so a plain grep on the
# raw bytes would see nothing)


def _avro_long(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def avro_payload(path: Path) -> bytes:
    """Header metadata plus all decompressed data blocks of an Avro object container file."""
    data = path.read_bytes()
    assert data[:4] == b"Obj\x01", f"{path} is not an Avro container file"
    pos, meta = 4, {}
    while True:
        count, pos = _avro_long(data, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = _avro_long(data, pos)
        for _ in range(count):
            size, pos = _avro_long(data, pos)
            key = data[pos : pos + size].decode()
            pos += size
            size, pos = _avro_long(data, pos)
            meta[key] = data[pos : pos + size]
            pos += size
    sync = data[pos : pos + 16]
    pos += 16
    codec = meta.get("avro.codec", b"null").decode()
    parts = list(meta.values())
    while pos < len(data):
        _, pos = _avro_long(data, pos)
        size, pos = _avro_long(data, pos)
        block = data[pos : pos + size]
        pos += size
        assert data[pos : pos + 16] == sync, f"{path}: bad Avro sync marker"
        pos += 16
        if codec == "deflate":
            block = zlib.decompress(block, -15)
        elif codec != "null":
            raise AssertionError(f"{path}: Avro codec {codec} not handled by this test")
        parts.append(block)
    return b"".join(parts)


def recorded_content(path: Path) -> bytes:
    """What Iceberg recorded in one file, as searchable bytes (b'' for plain data files)."""
    name = path.name
    if name.endswith(".crc"):
        return b""
    if name.endswith(".avro"):
        return avro_payload(path)
    if name.endswith("-deletes.parquet"):
        return "\n".join(pq.read_table(path, columns=["file_path"]).column(0).to_pylist()).encode()
    if name.endswith(".parquet"):
        return b""
    return path.read_bytes()  # metadata JSON, version-hint.text


# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Refs:
    return Refs(tmp_path_factory.mktemp("refs"))


@pytest.fixture(scope="module")
def ref_catalogs(spark: SparkSession, lake: Refs):
    """Registers the file-backed ref catalogs on the shared session (the JVM and its class path
    are shared by the whole pytest process; Spark accepts new catalogs at runtime)."""
    if not isinstance(spark._jvm.io.mlvspark.iceberg.LakeFSRefCatalog, JavaClass) or not isinstance(
        spark._jvm.org.apache.iceberg.spark.SparkCatalog, JavaClass
    ):
        pytest.fail(
            f"io.mlvspark.iceberg.LakeFSRefCatalog or the Iceberg Spark runtime is not on the Spark class"
            f" path ({CATALOG_JAR_NAME}, {_iceberg_runtime_jar()}): run `make bootstrap`"
            " (fetches the pinned jars and builds java/lakefs-iceberg-catalog with Maven)",
            pytrace=False,
        )
    if "IcebergSparkSessionExtensions" not in spark.conf.get("spark.sql.extensions", ""):
        pytest.fail("the Spark session lacks IcebergSparkSessionExtensions: run `make bootstrap`", pytrace=False)
    root = f"file://{lake.root}/{{repo}}/{{ref}}"
    for name, prefix in ((CATALOG, None), (PREFIXED, "warehouse/iceberg")):
        key = f"spark.sql.catalog.{name}"
        spark.conf.set(key, "org.apache.iceberg.spark.SparkCatalog")
        spark.conf.set(f"{key}.catalog-impl", "io.mlvspark.iceberg.LakeFSRefCatalog")
        spark.conf.set(f"{key}.lakefs.repository", REPO)
        spark.conf.set(f"{key}.lakefs.root-uri-template", root)
        # branches change outside this session (merges, other writers): no stale cached tables
        spark.conf.set(f"{key}.cache-enabled", "false")
        if prefix:
            spark.conf.set(f"{key}.lakefs.prefix", prefix)
    partitions = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "1")  # tiny tables: fewer tasks, faster MERGE
    yield
    spark.conf.set("spark.sql.shuffle.partitions", partitions)


def values_query(data: list[tuple[int, str]]) -> str:
    values = ", ".join(f"({i}, '{label}')" for i, label in data)
    return f"SELECT CAST(id AS INT) id, CAST(label AS STRING) label FROM VALUES {values} AS v(id, label)"


def rows(spark: SparkSession, data: list[tuple[int, str]]) -> DataFrame:
    """A DataFrame of (id, label) rows built in the JVM (no Python worker start-up)."""
    return spark.sql(values_query(data))


def assert_rows(spark: SparkSession, table: str, expected: list[tuple[int, str]]) -> None:
    assert_df_equality(
        spark.table(table).select("id", "label"),
        rows(spark, expected),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def create_table(spark: SparkSession, table: str, data: list[tuple[int, str]], props: str = "") -> None:
    """CREATE TABLE … AS SELECT: one job, one commit."""
    tblprops = f" TBLPROPERTIES ({props})" if props else ""
    spark.sql(f"CREATE TABLE {table} USING iceberg{tblprops} AS {values_query(data)}")


BASE = [(1, "cat"), (2, "dog"), (3, "eel")]


# --------------------------------------------------------------------------------------------
# tests


def test_create_insert_read_on_a_ref(spark: SparkSession, lake: Refs) -> None:
    create_table(spark, "reflocal.main.ml.t1", BASE)
    spark.sql("INSERT INTO reflocal.main.ml.t1 VALUES (4, 'fox')")

    assert_rows(spark, "reflocal.main.ml.t1", [*BASE, (4, "fox")])
    table_dir = lake.ref_dir("main") / "ml" / "t1"
    pointer = (table_dir / "metadata" / "version-hint.text").read_text()
    assert pointer.startswith("ml/t1/metadata/") and pointer.endswith(".metadata.json")
    assert (lake.ref_dir("main") / pointer).is_file()
    assert list((table_dir / "data").glob("*.parquet"))
    location = spark.sql("DESCRIBE TABLE EXTENDED reflocal.main.ml.t1").where("col_name = 'Location'")
    assert location.first()["data_type"] == "ml/t1"


def test_refs_are_separate_roots(spark: SparkSession, lake: Refs) -> None:
    create_table(spark, "reflocal.main.ml.t2", BASE)
    create_table(spark, "reflocal.other2.ml.t2", [(20, "only")])
    assert_rows(spark, "reflocal.main.ml.t2", BASE)
    assert_rows(spark, "reflocal.other2.ml.t2", [(20, "only")])
    assert any(p.name.endswith(".parquet") for p in lake.files("other2", "ml/t2/data"))


def test_recorded_paths_never_name_the_ref_or_the_root(spark: SparkSession, lake: Refs) -> None:
    mor = "'format-version'='2', 'write.delete.mode'='merge-on-read'"
    create_table(spark, "reflocal.exp3.ml.t3", BASE, mor)
    spark.sql("INSERT INTO reflocal.exp3.ml.t3 VALUES (30, 'x'), (31, 'y')")
    spark.sql("DELETE FROM reflocal.exp3.ml.t3 WHERE id IN (2, 30)")  # position deletes
    assert_rows(spark, "reflocal.exp3.ml.t3", [(1, "cat"), (3, "eel"), (31, "y")])

    seen = {"metadata.json": 0, "manifest list": 0, "manifest": 0, "position deletes": 0}
    for path in lake.files("exp3"):
        content = recorded_content(path)
        for forbidden in (b"/exp3/", b"exp3", b"file:/", str(lake.root).encode()):
            assert forbidden not in content, f"{path} records {forbidden!r}"
        if path.name.endswith(".metadata.json"):
            seen["metadata.json"] += b'"location" : "ml/t3"' in content or b'"location":"ml/t3"' in content
        elif path.name.startswith("snap-") and path.name.endswith(".avro"):
            seen["manifest list"] += b"ml/t3/metadata/" in content
        elif path.name.endswith(".avro"):
            seen["manifest"] += b"ml/t3/data/" in content
        elif path.name.endswith("-deletes.parquet"):
            referenced = content.decode().split("\n")
            assert all(p.startswith("ml/t3/data/") and p.endswith(".parquet") for p in referenced)
            seen["position deletes"] += 1
    # positive control: the decoding really sees the recorded paths
    assert all(count > 0 for count in seen.values()), seen


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_row_level_operations(spark: SparkSession, lake: Refs, mode: str) -> None:
    suffix = mode.split("-")[0]
    table = f"reflocal.exp5{suffix}.ml.t5"
    props = ", ".join(
        [f"'write.{op}.mode'='{mode}'" for op in ("delete", "update", "merge")] + ["'format-version'='2'"]
    )
    create_table(spark, table, BASE, props)
    spark.sql(f"DELETE FROM {table} WHERE id = 2")
    rows(spark, [(1, "CAT"), (3, "EEL"), (7, "yak")]).createOrReplaceTempView("changes")
    spark.sql(
        f"""MERGE INTO {table} t USING changes s ON t.id = s.id
            WHEN MATCHED THEN UPDATE SET t.label = s.label
            WHEN NOT MATCHED THEN INSERT *"""
    )
    assert_rows(spark, table, [(1, "CAT"), (3, "EEL"), (7, "yak")])
    delete_files = spark.table(f"{table}.delete_files").select("file_path").collect()
    if mode == "merge-on-read":
        assert delete_files, "merge-on-read should have written position delete files"
        assert all(r.file_path.startswith("ml/t5/data/") for r in delete_files)
    else:
        assert not delete_files
    assert spark.table(table).where("id = 2").count() == 0

def test_namespaces_listing_and_missing_tables(spark: SparkSession, lake: Refs) -> None:
    create_table(spark, "reflocal.main.ml.t6a", BASE[:1])
    create_table(spark, "reflocal.main.ml.t6b", BASE[:1])

    tables = {r.tableName for r in spark.sql("SHOW TABLES IN reflocal.main.ml").collect()}
    assert {"t6a", "t6b"} <= tables
    assert not {"data", "metadata"} & tables

    spark.sql("CREATE NAMESPACE reflocal.main.newns")
    assert (lake.ref_dir("main") / "newns" / ".iceberg-namespace.properties").is_file()
    namespaces = {r.namespace for r in spark.sql("SHOW NAMESPACES IN reflocal.main").collect()}
    assert {"main.ml", "main.newns"} <= namespaces
    assert not {n for n in namespaces if n.startswith("main.ml.")}, "tables are not namespaces"
    assert spark.sql("SHOW TABLES IN reflocal.main.newns").count() == 0
    with pytest.raises(AnalysisException, match="(?i)already exists"):
        spark.sql("CREATE NAMESPACE reflocal.main.newns")
    spark.sql("CREATE NAMESPACE IF NOT EXISTS reflocal.main.newns")
    with pytest.raises(Exception, match="Namespace 'ml' at lakeFS ref 'main' .* is not empty"):
        spark.sql("DROP NAMESPACE reflocal.main.ml")
    spark.sql("DROP NAMESPACE reflocal.main.newns")
    assert "main.newns" not in {r.namespace for r in spark.sql("SHOW NAMESPACES IN reflocal.main").collect()}

    with pytest.raises(AnalysisException, match=r"main.*ml.*missing_table"):
        spark.table("reflocal.main.ml.missing_table").collect()
    with pytest.raises(AnalysisException, match=r"no_such_ref.*ml.*t6a"):
        spark.table("reflocal.no_such_ref.ml.t6a").collect()
    with pytest.raises(Exception, match="at least one more namespace level"):
        spark.sql(f"CREATE TABLE reflocal.main.no_namespace ({SCHEMA}) USING iceberg")

    # DROP TABLE removes the pointer only; the files stay and the table can be registered again
    t6a = lake.ref_dir("main") / "ml" / "t6a"
    last_metadata = (t6a / "metadata" / "version-hint.text").read_text()
    spark.sql("DROP TABLE reflocal.main.ml.t6a")
    assert "t6a" not in {r.tableName for r in spark.sql("SHOW TABLES IN reflocal.main.ml").collect()}
    assert list((t6a / "data").glob("*.parquet"))
    spark.sql(f"CALL reflocal.system.register_table(table => 'main.ml.t6a', metadata_file => '{last_metadata}')")
    assert_rows(spark, "reflocal.main.ml.t6a", BASE[:1])
    # DROP TABLE ... PURGE deletes every file through the FileIO (relative paths resolved)
    spark.sql("DROP TABLE reflocal.main.ml.t6b PURGE")
    assert not [p for p in (lake.ref_dir("main") / "ml" / "t6b").rglob("*") if p.is_file()]
    assert "t6b" not in {r.tableName for r in spark.sql("SHOW TABLES IN reflocal.main.ml").collect()}


def test_time_travel_within_a_ref(spark: SparkSession, lake: Refs) -> None:
    create_table(spark, "reflocal.exp7.ml.t7", BASE)
    first = spark.sql("SELECT snapshot_id FROM reflocal.exp7.ml.t7.snapshots").first().snapshot_id
    spark.sql("INSERT INTO reflocal.exp7.ml.t7 VALUES (70, 'later')")
    assert_rows(spark, "reflocal.exp7.ml.t7", [*BASE, (70, "later")])
    assert_df_equality(
        spark.sql(f"SELECT id, label FROM reflocal.exp7.ml.t7 VERSION AS OF {first}"),
        rows(spark, BASE),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert spark.sql("SELECT * FROM reflocal.exp7.ml.t7.history").count() == 2


def test_maintenance_procedures(spark: SparkSession, lake: Refs) -> None:
    create_table(spark, "reflocal.main.ml.t8", BASE)
    spark.sql("INSERT OVERWRITE reflocal.main.ml.t8 VALUES (80, 'a'), (81, 'b')")
    data_dir = lake.ref_dir("main") / "ml" / "t8" / "data"
    old_files = {p.name for p in data_dir.glob("*.parquet")}
    future = (datetime.now(timezone.utc) + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")

    expired = spark.sql(
        f"CALL reflocal.system.expire_snapshots(table => 'main.ml.t8', older_than => TIMESTAMP '{future}',"
        " retain_last => 1)"
    ).first()
    assert expired.deleted_data_files_count > 0
    assert len(list(data_dir.glob("*.parquet"))) < len(old_files)
    assert_rows(spark, "reflocal.main.ml.t8", [(80, "a"), (81, "b")])

    # remove_orphan_files works with prefix listing (paths come back ref-relative)
    orphan = data_dir / "orphan-00000.parquet"
    orphan.write_bytes(b"not referenced")
    os.utime(orphan, (946684800, 946684800))  # 2000-01-01: older than the procedure's 24 h minimum
    found = spark.sql(
        "CALL reflocal.system.remove_orphan_files(table => 'main.ml.t8', older_than => TIMESTAMP '2001-01-01',"
        " prefix_listing => true, dry_run => true)"
    ).collect()
    assert [r.orphan_file_location for r in found] == ["ml/t8/data/orphan-00000.parquet"]


def test_optimistic_concurrency(spark: SparkSession) -> None:
    """A commit based on stale metadata fails (CommitFailedException); Iceberg's retry succeeds."""
    create_table(spark, "reflocal.main.ml.t9", BASE[:1])
    jvm, jss = spark._jvm, spark._jsparkSession
    load = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable
    writer_a, writer_b = load(jss, "reflocal.main.ml.t9"), load(jss, "reflocal.main.ml.t9")
    ops_b = writer_b.operations()
    base_b = ops_b.current()

    writer_a.updateProperties().set("writer.a", "1").commit()
    stale = jvm.org.apache.iceberg.TableMetadata.buildFrom(base_b).setProperties({"writer.b": "1"}).build()
    with pytest.raises(Exception, match=r"CommitFailedException.*'ml.t9' at lakeFS ref 'main'"):
        ops_b.commit(base_b, stale)

    writer_b.updateProperties().set("writer.b", "2").commit()  # refreshes and retries
    props = dict(spark.sql("SHOW TBLPROPERTIES reflocal.main.ml.t9").collect())
    assert props["writer.a"] == "1" and props["writer.b"] == "2"
    with pytest.raises(AnalysisException, match="(?i)already exists"):
        spark.sql(f"CREATE TABLE reflocal.main.ml.t9 ({SCHEMA}) USING iceberg")


def test_path_prefix_inside_the_ref(spark: SparkSession, lake: Refs) -> None:
    create_table(spark, "reflocal_pfx.exp10.ml.t10", BASE[:2])
    table_dir = lake.ref_dir("exp10") / "warehouse" / "iceberg" / "ml" / "t10"
    assert (table_dir / "metadata" / "version-hint.text").read_text().startswith("warehouse/iceberg/ml/t10/metadata/")
    assert [r.tableName for r in spark.sql("SHOW TABLES IN reflocal_pfx.exp10.ml").collect()] == ["t10"]
    assert_rows(spark, "reflocal_pfx.exp10.ml.t10", BASE[:2])
    # paths are relative to the ref root, so the prefix-less catalog reaches the same table
    assert_rows(spark, "reflocal.exp10.warehouse.iceberg.ml.t10", BASE[:2])


def test_the_pyiceberg_file_io_resolves_relative_paths_against_the_ref_root():
    from mlv_spark.catalogs.pyiceberg_ref import ROOT, LakeFSRefFileIO

    root = {ROOT: "s3://repo/4f0c2a"}
    assert LakeFSRefFileIO.parse_location("ml/t/metadata/v3.metadata.json", root) == \
        ("s3", "repo", "repo/4f0c2a/ml/t/metadata/v3.metadata.json")
    assert LakeFSRefFileIO.parse_location("/ml/t/data/a.parquet", root)[2] == "repo/4f0c2a/ml/t/data/a.parquet"
    assert LakeFSRefFileIO.parse_location("s3://other/main/x.parquet", root) == ("s3", "other", "other/main/x.parquet")
