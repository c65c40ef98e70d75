"""Where lakeFS keeps the objects our jobs write: the profile's block store, read back there.

Runs on both test profiles: `local` (lakeFS's local block store under the run directory) and
`local-s3` (`make test-s3`: an S3 block store on the SeaweedFS server started beside lakeFS).
Data a Spark job writes through the S3 gateway must be stored there byte for byte, at the
physical address lakeFS reports.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs
import pytest

from tests.integration.helpers import run_job

pytestmark = pytest.mark.integration


def stored_bytes(settings, physical_address: str) -> bytes:
    """The bytes at a physical address, read from the block store itself (not through lakeFS)."""
    services = settings.services
    if services.blockstore == "s3":
        assert physical_address.startswith(f"s3://{services.s3_bucket}/"), physical_address
        s3 = pyarrow.fs.S3FileSystem(access_key=services.s3_access_key_id, secret_key=services.s3_secret_access_key,
                                     endpoint_override=f"127.0.0.1:{services.s3_port}", scheme="http",
                                     region="us-east-1")
        with s3.open_input_stream(physical_address.removeprefix("s3://")) as stream:
            return stream.read()
    assert physical_address.startswith("local://"), physical_address
    return (Path(services.run_dir) / "lakefs" / "data" / physical_address.removeprefix("local://")).read_bytes()


def test_a_jobs_writes_land_in_the_profiles_block_store(settings, lakefs_repo):
    lk = lakefs_repo
    scheme = "s3://" if settings.services.blockstore == "s3" else "local://"
    assert lk.storage_namespace().startswith(scheme)

    ingest = run_job("ingest", "--repository", lk.repository, "--generator", "card_transactions", "--param",
                     "users=40", "--param", "days=20", "--experiment", "ingest", "--merge-into", "main",
                     "--delete-branch")
    assert ingest.returncode == 0, ingest.output[-3000:]

    stored = list(lk.stored_objects("main"))
    data_files = [(path, address, size) for path, address, size in stored if path.endswith(".parquet")]
    assert data_files, [path for path, _, _ in stored]
    for path, address, size in [*data_files[:3], *[s for s in stored if s[0].endswith(".metadata.json")][:2]]:
        in_store = stored_bytes(settings, address)
        assert len(in_store) == size, path
        assert in_store == lk.read_object("main", path), path
