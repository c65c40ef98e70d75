"""Spark-free reads of our Iceberg tables on lakeFS with pyiceberg: no JVM to start for a
table's schema, snapshot or a small table's rows (the split registry).

Our ref-relative catalog (java/lakefs-iceberg-catalog) writes every location relative to the
ref's root (`ml/t/metadata/00003-….metadata.json`, `ml/t/data/….parquet`) and names the current
metadata file in `<table>/metadata/version-hint.text`. `LakeFSRefFileIO` is pyiceberg's PyArrow
FileIO that resolves such paths against one root, `s3://<repository>/<ref>`, read through
lakeFS's S3 gateway — the Python twin of the Java catalog's `LakeFSRefFileIO`. Read at a commit
id, nothing can move underneath.
"""

from __future__ import annotations

from typing import Any

from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import StaticTable
from pyiceberg.typedef import EMPTY_DICT, Properties

from mlv_spark.errors import RefNotFoundError
from mlv_spark.lakefs import LakeFS

ROOT = "mlv.ref-root"  # the FileIO property naming the ref's root


class LakeFSRefFileIO(PyArrowFileIO):
    """PyArrow FileIO whose relative locations are resolved against the `mlv.ref-root` property."""

    @staticmethod
    def parse_location(location: str, properties: Properties = EMPTY_DICT) -> tuple[str, str, str]:
        root = properties.get(ROOT)
        if root and "://" not in location:
            location = f"{root.rstrip('/')}/{location.lstrip('/')}"
        return PyArrowFileIO.parse_location(location, properties)


def file_io_properties(lakefs: LakeFS, ref: str) -> dict[str, str]:
    """pyiceberg properties reading `ref` of the repository through the S3 gateway."""
    key, secret = lakefs.settings.require_credentials()
    return {
        "py-io-impl": f"{LakeFSRefFileIO.__module__}.{LakeFSRefFileIO.__name__}",
        ROOT: f"s3://{lakefs.repository}/{ref}",
        "s3.endpoint": lakefs.settings.endpoint.rstrip("/"),
        "s3.access-key-id": key,
        "s3.secret-access-key": secret,
        "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "false",
    }


def load_table(lakefs: LakeFS, ref: str, path: str) -> StaticTable | None:
    """The Iceberg table at `path` (e.g. `ml_datasets/split_versions`) of `ref`, None when the
    ref has no such table (no pointer object)."""
    try:
        pointer = lakefs.read_object(ref, f"{path}/metadata/version-hint.text").decode().strip()
    except RefNotFoundError:
        lakefs.resolve(ref)  # an unknown ref is an error (raised here); a missing table is None
        return None
    return StaticTable.from_metadata(pointer, file_io_properties(lakefs, ref))


def read_rows(table: StaticTable, *, row_filter: str | None = None, columns: tuple[str, ...] = ("*",)) -> Any:
    """The rows of `table` as a pyarrow Table (for small tables: they land on the driver)."""
    scan = table.scan(row_filter=row_filter, selected_fields=columns) if row_filter else table.scan(selected_fields=columns)
    return scan.to_arrow()
