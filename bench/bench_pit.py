"""Benchmark: our point-in-time join vs Feast's SparkOfflineStore vs "the limit".

All contenders run in one SparkSession (local[2], 8 shuffle partitions by default) on the
same parquet data and the same generated Feast repo (SparkSource, `offline_store: spark`);
output is forced with a `noop` write. "The limit" is one union of the same entity and
feature rows, one shuffle by key and one sort by (key, time): no join can do less.

Measurement: the contenders run round-robin (A B C, A B C, ...), first --warmup untimed
rounds, then --runs timed rounds, and medians are reported, so a load change on a shared
machine hits all of them alike. With --blocked each contender instead runs its warm-up and
timed runs back to back, one contender after the other (A A A B B B C C C), so no other
workload runs between two of its runs (a run of our join right after a Feast run is slower
than the ones after it: docs/training-sets.md, Benchmark). Each timed run starts after a
full JVM garbage collection, so no contender pays for the garbage of the one before it. Besides wall time,
the JVM's own CPU time per run (user + system, from /proc) is reported: it is far less
sensitive to other processes.

    .venv/bin/python bench/bench_pit.py                 # reference shape (200k x 2M, 20k keys)
    .venv/bin/python bench/bench_pit.py --scale 0.1     # quick run
    .venv/bin/python bench/bench_pit.py --skip-feast --doubling 3

Rows are checked identical to Feast's (both directions of exceptAll) for each TTL setting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlv_spark.config import load_settings  # noqa: E402
from mlv_spark.jvm import SCANS_JAR  # noqa: E402
from mlv_spark.training import get_historical_features  # noqa: E402
from mlv_spark.training.pit import CARRY_CONF  # noqa: E402

DAYS = 90
BASE_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
FEATURES = ["conv_rate", "acc_rate", "trips"]

REPO = """\
from datetime import timedelta
from feast import Entity, FeatureView, Field, ValueType
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
source = SparkSource(
    name="driver_stats", path={path!r}, file_format="parquet",
    timestamp_field="event_timestamp", created_timestamp_column="created",
)
schema = [Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64),
          Field(name="trips", dtype=Int64)]
stats_7d = FeatureView(name="stats_7d", entities=[driver], ttl=timedelta(days=7), schema=schema, source=source)
stats_all = FeatureView(name="stats_all", entities=[driver], ttl=timedelta(0), schema=schema, source=source)
"""

YAML = """\
project: bench
registry: {root}/registry.db
provider: local
offline_store:
  type: spark
online_store:
  type: sqlite
  path: {root}/online.db
entity_key_serialization_version: 3
"""


@dataclass(frozen=True)
class Shape:
    entity_rows: int
    feature_rows: int
    keys: int

    def scaled(self, factor: float) -> "Shape":
        return Shape(
            int(self.entity_rows * factor), int(self.feature_rows * factor), max(1, int(self.keys * factor))
        )

    def describe(self) -> str:
        return f"{self.entity_rows:,} x {self.feature_rows:,}, {self.keys:,} keys"


REFERENCE = Shape(entity_rows=200_000, feature_rows=2_000_000, keys=20_000)


def session(partitions: int, memory: str, carry: str = "jvm") -> SparkSession:
    """The shared session; ``carry``: our join's carry-forward (the JVM scan needs the
    mlv-spark-scans jar from `make scans-jar`)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    scans_jar = load_settings("local").jar_dir / SCANS_JAR
    if carry == "jvm" and not scans_jar.is_file():
        sys.exit(f"error: {scans_jar} is missing: run `make scans-jar` (or pass --carry window)")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench-pit")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraClassPath", str(scans_jar))
        .config(CARRY_CONF, carry)
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def generate(spark: SparkSession, shape: Shape, where: Path) -> tuple[str, str]:
    """Feature and entity parquet (uniform keys and times over 90 days, second resolution)."""
    seconds = DAYS * 86_400

    def uniform(salt: int, modulus: int):
        return F.pmod(F.xxhash64(F.col("id"), F.lit(salt)), F.lit(modulus))

    features = (
        spark.range(shape.feature_rows, numPartitions=8)
        .select(
            uniform(1, shape.keys).alias("driver_id"),
            F.timestamp_seconds(uniform(2, seconds) + BASE_EPOCH).alias("event_timestamp"),
            F.timestamp_seconds(uniform(2, seconds) + BASE_EPOCH + uniform(3, 7_200)).alias("created"),
            (uniform(4, 10_000) / 10_000).alias("conv_rate"),
            (uniform(5, 10_000) / 10_000).alias("acc_rate"),
            uniform(6, 100).alias("trips"),
        )
        # Feast's Spark store multiplies rows on full ties; keep the data free of them.
        .dropDuplicates(["driver_id", "event_timestamp", "created"])
    )
    entities = spark.range(shape.entity_rows, numPartitions=4).select(
        uniform(11, shape.keys).alias("driver_id"),
        F.timestamp_seconds(uniform(12, seconds) + BASE_EPOCH).alias("event_timestamp"),
        uniform(13, 2).alias("label"),
    )
    feature_path, entity_path = str(where / "features"), str(where / "entities")
    features.write.mode("overwrite").parquet(feature_path)
    entities.write.mode("overwrite").parquet(entity_path)
    return feature_path, entity_path


def write_repo(root: Path, feature_path: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "feature_store.yaml").write_text(YAML.format(root=root))
    (root / "definitions.py").write_text(textwrap.dedent(REPO.format(path=feature_path)))


def noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def jvm_cpu_seconds(spark: SparkSession) -> float:
    """User + system CPU time of the driver JVM (local mode: all executors), or NaN."""
    try:
        pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError):
        return float("nan")


@dataclass
class Timing:
    wall: list[float]
    cpu: list[float]

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def settle(spark: SparkSession) -> None:
    """A full JVM garbage collection (untimed), so no run pays for the previous one's garbage."""
    spark.sparkContext._jvm.java.lang.System.gc()


def measure(
    spark: SparkSession, contenders: dict[str, Callable[[], None]], runs: int, warmup: int, blocked: bool = False
) -> dict[str, Timing]:
    """`warmup` untimed runs, then `runs` timed ones, round-robin (or, ``blocked``, each
    contender's runs back to back); wall and JVM CPU seconds per run, each run starting after
    a full garbage collection."""
    timings = {name: Timing([], []) for name in contenders}

    def timed(name: str) -> None:
        settle(spark)
        cpu, started = jvm_cpu_seconds(spark), time.perf_counter()
        contenders[name]()
        timings[name].wall.append(time.perf_counter() - started)
        timings[name].cpu.append(jvm_cpu_seconds(spark) - cpu)

    if blocked:
        for name, run in contenders.items():
            for _ in range(warmup):
                run()
            for _ in range(runs):
                timed(name)
        return timings
    for _ in range(warmup):
        for run in contenders.values():
            run()
    for _ in range(runs):
        for name in contenders:
            timed(name)
    return timings


def the_limit(spark: SparkSession, feature_path: str, entity_path: str, partitions: int) -> DataFrame:
    entities = spark.read.parquet(entity_path)
    features = spark.read.parquet(feature_path).select("driver_id", "event_timestamp", "created", *FEATURES)
    return (
        entities.unionByName(features, allowMissingColumns=True)
        .repartition(partitions, "driver_id")
        .sortWithinPartitions("driver_id", "event_timestamp")
    )


class Feast:
    """Feast's SparkOfflineStore on the same repo, sharing the session."""

    def __init__(self, spark: SparkSession, root: Path) -> None:
        from feast import FeatureStore
        from mlv_spark.training import load_feature_repo

        self.spark = spark
        self.store = FeatureStore(repo_path=str(root))
        definitions = load_feature_repo(root)
        self.store.apply([*definitions.entities.values(), *definitions.feature_views.values()])

    def frame(self, entity: DataFrame, view: str) -> DataFrame:
        job = self.store.get_historical_features(entity_df=entity, features=[f"{view}:{f}" for f in FEATURES])
        df = job.to_spark_df()
        # Feast switches this on for the whole session; do not let it touch the other runs.
        self.spark.conf.unset("spark.sql.parser.quotedRegexColumnNames")
        return df


def identical(ours: DataFrame, theirs: DataFrame) -> bool:
    theirs = theirs.select(*ours.columns)
    return ours.exceptAll(theirs).isEmpty() and theirs.exceptAll(ours).isEmpty()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the reference shape")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per contender before the timed ones")
    parser.add_argument("--blocked", action="store_true", help="each contender's runs back to back, not round-robin")
    parser.add_argument("--memory", default="6g", help="driver memory")
    parser.add_argument("--skip-feast", action="store_true", help="only ours and the limit")
    parser.add_argument("--doubling", type=int, default=2, help="extra runs of ours at 2x, 4x ... N+M")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and repos")
    parser.add_argument("--carry", choices=["jvm", "window"], default="jvm",
                        help="our join's carry-forward: the JVM scan (default) or the window")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    spark = session(args.partitions, args.memory, args.carry)
    shape = REFERENCE.scaled(args.scale)
    work = Path(tempfile.mkdtemp(prefix="bench-pit-"))
    print(f"shape: {shape.describe()}, local[2], {args.partitions} shuffle partitions, "
          f"warm-up runs: {args.warmup}, median of {args.runs}{' (blocked)' if args.blocked else ''}, "
          f"carry-forward: {args.carry}")

    started = time.perf_counter()
    feature_path, entity_path = generate(spark, shape, work / "data")
    write_repo(work / "repo", feature_path)
    print(f"generated data and repo in {time.perf_counter() - started:.1f}s ({work})")
    entity = spark.read.parquet(entity_path)

    def ours(view: str) -> DataFrame:
        return get_historical_features(
            spark, entity, feature_repo=work / "repo", features=[f"{view}:{f}" for f in FEATURES]
        )

    limit_name = "the limit (union + shuffle + sort)"
    contenders: dict[str, Callable[[], None]] = {
        limit_name: lambda: noop(the_limit(spark, feature_path, entity_path, args.partitions))
    }
    feast = None if args.skip_feast else Feast(spark, work / "repo")
    for view, ttl in (("stats_7d", "7 days"), ("stats_all", "unlimited")):
        contenders[f"ours, TTL {ttl}"] = lambda view=view: noop(ours(view))
        if feast is not None:
            contenders[f"Feast SparkOfflineStore, TTL {ttl}"] = lambda view=view: noop(feast.frame(entity, view))
    if feast is not None:
        for view, ttl in (("stats_7d", "7 days"), ("stats_all", "unlimited")):
            same = identical(ours(view), feast.frame(entity, view))
            print(f"TTL {ttl}: rows identical to Feast: {same}")
            if not same:
                raise SystemExit("results differ from Feast")
    load_before = os.getloadavg()[0]
    timings = measure(spark, contenders, args.runs, args.warmup, args.blocked)
    load_after = os.getloadavg()[0]
    limit = timings[limit_name]

    print()
    protocol = "each contender's runs back to back" if args.blocked else "interleaved"
    print(f"{shape.describe()}; median of {args.runs} runs after warm-up runs: {args.warmup} each, {protocol}; "
          "JVM CPU = user + system seconds")
    print(f"machine load average (1 min) when the timed runs started: {load_before:.1f}, ended: {load_after:.1f} "
          f"({os.cpu_count()} cores)")
    print()
    print("| contender | wall s | vs limit | JVM CPU s | vs limit |")
    print("|---|---|---|---|---|")
    for name, timing in timings.items():
        print(
            f"| {name} | {timing.wall_median:.1f} | {timing.wall_median / limit.wall_median:.2f}x "
            f"| {timing.cpu_median:.1f} | {timing.cpu_median / limit.cpu_median:.2f}x |"
        )
    if feast is not None:
        print()
        print("| TTL | Feast / ours, wall | Feast / ours, JVM CPU |")
        print("|---|---|---|")
        for ttl in ("7 days", "unlimited"):
            ours_t, feast_t = timings[f"ours, TTL {ttl}"], timings[f"Feast SparkOfflineStore, TTL {ttl}"]
            print(
                f"| {ttl} | {feast_t.wall_median / ours_t.wall_median:.1f}x "
                f"| {feast_t.cpu_median / ours_t.cpu_median:.1f}x |"
            )

    if args.doubling:
        print()
        print("| N + M | ours (TTL 7 days) wall s | limit wall s | ours / limit wall | ours JVM CPU s | limit JVM CPU s | ours / limit CPU |")
        print("|---|---|---|---|---|---|---|")
        factor = 1.0
        for step in range(args.doubling + 1):
            sub = shape.scaled(factor)
            if step == 0:
                f_path, e_path, repo = feature_path, entity_path, work / "repo"
            else:
                f_path, e_path = generate(spark, sub, work / f"data{step}")
                repo = work / f"repo{step}"
                write_repo(repo, f_path)
            sub_entity = spark.read.parquet(e_path)
            grown = measure(spark, {
                "ours": lambda: noop(get_historical_features(
                    spark, sub_entity, feature_repo=repo, features=[f"stats_7d:{f}" for f in FEATURES])),
                "limit": lambda: noop(the_limit(spark, f_path, e_path, args.partitions)),
            }, args.runs, args.warmup, args.blocked)
            o, lim = grown["ours"], grown["limit"]
            print(
                f"| {sub.entity_rows + sub.feature_rows:,} | {o.wall_median:.1f} | {lim.wall_median:.1f} "
                f"| {o.wall_median / lim.wall_median:.2f}x | {o.cpu_median:.1f} | {lim.cpu_median:.1f} "
                f"| {o.cpu_median / lim.cpu_median:.2f}x |"
            )
            factor *= 2
    spark.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
