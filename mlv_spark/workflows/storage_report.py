"""What versioning costs in storage, measured: for a set of refs (main, tags, experiment
branches) every object at each ref's commit with its physical address and size; then the
logical bytes each ref reads, the physical bytes the refs share (one stored object seen by two
or more refs) and the bytes unique to each — the seed's "only changed files are duplicated".

Two listers, one result: lakeFS's Spark metadata client (`io.lakefs:lakefs-spark-client`, which
reads the commits' ranges straight from the repository's storage, in Spark, for repositories of
any size) when it is on the class path and the storage is one Hadoop can read (s3://, gs://,
abfs://, …), and otherwise the lakeFS API listing (paged, on the driver). The report names the
lister it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

from mlv_spark.errors import InvalidInputError
from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.storage")

SPARK_CLIENT = "io.treeverse.clients.LakeFSContext"
API_LISTER = "lakeFS API listing"
SPARK_LISTER = "lakeFS Spark metadata client"


@dataclass(frozen=True)
class StoredObject:
    path: str
    address: str  # where the bytes are: two refs sharing an address share the bytes
    size: int


@dataclass(frozen=True)
class RefUsage:
    ref: str
    commit: str
    objects: int
    logical_bytes: int  # what a reader of the ref sees
    unique_bytes: int  # stored for this ref alone (no other listed ref reads them)


@dataclass(frozen=True)
class StorageReport:
    repository: str
    lister: str
    refs: list[RefUsage]
    physical_bytes: int  # each stored object once
    shared_bytes: int  # objects read by two or more of the refs

    @property
    def logical_bytes(self) -> int:
        return sum(r.logical_bytes for r in self.refs)

    def render(self) -> str:
        width = max([len(r.ref) for r in self.refs] + [3])
        lines = [f"storage of {self.repository} at {len(self.refs)} refs ({self.lister})",
                 f"  {'ref':<{width}}  {'commit':<12}  {'objects':>8}  {'logical':>12}  {'unique':>12}"]
        for r in self.refs:
            lines.append(f"  {r.ref:<{width}}  {r.commit[:12]}  {r.objects:>8,d}  {_size(r.logical_bytes):>12}  "
                         f"{_size(r.unique_bytes):>12}")
        saved = 1 - self.physical_bytes / self.logical_bytes if self.logical_bytes else 0.0
        lines.append(f"  stored once: {_size(self.physical_bytes)} for {_size(self.logical_bytes)} read through these refs "
                     f"({saved:.0%} not duplicated); shared by two or more refs: {_size(self.shared_bytes)}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "lister": self.lister, "physical_bytes": self.physical_bytes,
                "shared_bytes": self.shared_bytes, "logical_bytes": self.logical_bytes,
                "refs": [asdict(r) for r in self.refs]}


def account(repository: str, lister: str, listings: Mapping[str, tuple[str, Iterable[StoredObject]]]) -> StorageReport:
    """The report for `listings` (ref -> (commit, its objects)); pure. Refs at one commit share
    all of their objects."""
    owners: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    per_ref: dict[str, list[StoredObject]] = {}
    for ref, (_, objects) in listings.items():
        per_ref[ref] = list(objects)
        for obj in per_ref[ref]:
            owners.setdefault(obj.address, set()).add(ref)
            sizes[obj.address] = obj.size
    refs = []
    for ref, (commit, _) in listings.items():
        mine = {o.address for o in per_ref[ref]}
        refs.append(RefUsage(ref, commit, len(per_ref[ref]), sum(o.size for o in per_ref[ref]),
                             sum(sizes[a] for a in mine if owners[a] == {ref})))
    return StorageReport(repository, lister, refs, sum(sizes.values()),
                         sum(sizes[a] for a, who in owners.items() if len(who) > 1))


def default_refs(lakefs: LakeFS, prefix: str) -> list[str]:
    """The default branch, every tag and every experiment branch (`prefix`)."""
    return [lakefs.default_branch, *sorted(lakefs.tags()), *sorted(lakefs.branches(prefix))]


def block_store_conf(services: Any) -> dict[str, str]:
    """Hadoop settings through which Spark reads the block store itself (the metadata client reads
    the commits' ranges there, not through lakeFS): none where the cluster's own file system
    serves s3:// (EMRFS, Databricks), and for the embedded S3 server of conf/local-s3.toml, s3://
    on S3A with that bucket's own endpoint and keys (the gateway keeps serving every other bucket)."""
    if getattr(services, "blockstore", "local") != "s3":
        return {}
    bucket = f"fs.s3a.bucket.{services.s3_bucket}"
    return {"fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            f"{bucket}.endpoint": f"http://127.0.0.1:{services.s3_port}", f"{bucket}.path.style.access": "true",
            f"{bucket}.connection.ssl.enabled": "false", f"{bucket}.endpoint.region": "us-east-1",
            f"{bucket}.access.key": services.s3_access_key_id, f"{bucket}.secret.key": services.s3_secret_access_key}


def storage_report(lakefs: LakeFS, refs: list[str], *, spark: Callable[[], Any] | None = None,
                   storage_namespace: str = "", storage_conf: Mapping[str, str] | None = None) -> StorageReport:
    """Measure `refs` (each resolved to its commit first, so the listing is of one state).
    `spark` gives a session when the Spark metadata client may be used (see the module doc);
    `storage_conf` (block_store_conf) lets that session read the storage."""
    if not refs:
        raise InvalidInputError("no refs to measure: name them with --ref (repeatable), e.g. --ref main")
    commits = {ref: lakefs.resolve(ref) for ref in dict.fromkeys(refs)}
    listed: dict[str, list[StoredObject]] = {}
    lister = API_LISTER
    use_spark = spark is not None and not storage_namespace.startswith("local://")
    session = spark() if use_spark else None
    why = ""
    if session is not None and not _has_client(session):
        why = f" ({SPARK_CLIENT} is not on the class path: add lakeFS's Spark metadata client to --packages, see docs/storage.md)"
        log.info("storage: %s is not on the class path: listing through the lakeFS API", SPARK_CLIENT)
        session = None
    for commit in dict.fromkeys(commits.values()):
        if session is not None:
            listed[commit] = _spark_listing(session, lakefs, commit, storage_conf or {})
            lister = SPARK_LISTER
        else:
            listed[commit] = [StoredObject(path, address, size) for path, address, size in lakefs.stored_objects(commit)]
        log.info("storage: %s: %d objects (%s)", commit[:12], len(listed[commit]), lister)
    if lister == API_LISTER and storage_namespace.startswith("local://"):
        lister += " (the local block store: the Spark metadata client reads S3, GCS or Azure storage only)"
    elif lister == API_LISTER:
        lister += why
    return account(lakefs.repository, lister, {ref: (c, listed[c]) for ref, c in commits.items()})


def _has_client(spark: Any) -> bool:
    """Whether Spark loaded the client: looked up the way py4j loads classes (the thread's context
    class loader, which sees --packages and --jars; a plain Class.forName sees only the JVM's
    launch class path)."""
    from py4j.java_gateway import JavaClass

    found: Any = spark._jvm
    for part in SPARK_CLIENT.split("."):
        found = getattr(found, part)
    return isinstance(found, JavaClass)


def _spark_listing(spark: Any, lakefs: LakeFS, commit: str, storage_conf: Mapping[str, str]) -> list[StoredObject]:
    """Every entry of `commit` read by the metadata client (its address is relative to the
    storage namespace or full, by `address_type`: either way one address is one stored object)."""
    from pyspark.sql import DataFrame

    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in storage_conf.items():
        conf.set(key, value)
    settings = lakefs.settings
    conf.set("lakefs.api.url", settings.endpoint.rstrip("/") + "/api/v1")
    conf.set("lakefs.api.access_key", settings.access_key_id)
    conf.set("lakefs.api.secret_key", settings.secret_access_key)
    context = getattr(spark._jvm, SPARK_CLIENT)
    frame = DataFrame(context.newDF(spark._jsparkSession, lakefs.repository, commit), spark)
    rows = frame.select("key", "address_type", "address", "size").collect()
    return [StoredObject(r["key"], f"{r['address_type']}:{r['address']}", int(r["size"])) for r in rows]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)
