"""Benchmark assign_splits against a plain hash-threshold pass and the usual alternatives.

One run, one Spark session (local[2], driver memory 8g): synthetic entities are written to
parquet in a temporary directory (one 95 % stratum, hundreds of rare strata, households of 4),
then each method reads that parquet and is fully evaluated with `write.format("noop")`. The exact
method's histogram is aggregated by the JVM sketch of the scans jar (`make scans-jar`), and once
more by Spark's hash aggregation as a control (`spark.mlv.splits.histogram=spark`).
Reported per method: median wall time, ratio to the baseline measured in the same run, worst
per-stratum deviation from a largest-remainder count, entities moved after a 10 % append, and
group (household) leaks. Two rows time the floor of any exact method that reads the data twice
(a count per stratum, then a labelling pass with no lookup), in the same rounds, and a third the
shuffle that a single-read one would need; the two-read sum is printed against the baseline.
Not part of the test suite.

  .venv/bin/python bench/bench_splits.py                      # 5,000,000 entities
  .venv/bin/python bench/bench_splits.py --entities 200000 --rare-strata 40   # quick run
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mlv_spark.config import load_settings
from mlv_spark.jvm import SCANS_JAR
from mlv_spark.splits.apportion import hash_thresholds
from mlv_spark.splits.exact import HISTOGRAM_CONF
from mlv_spark.splits import assign_splits

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
SHARES = {"train": Fraction(8, 10), "val": Fraction(1, 10), "test": Fraction(1, 10)}
SEED = 42
RARE_SHARE = 0.05
SMALLEST_RARE = 25  # expected size of the smallest rare stratum (sklearn needs >= 2 per class twice)


# ---- data -----------------------------------------------------------------------------------


def generate(spark: SparkSession, entities: int, rare_strata: int, path: str, sized_for: int | None = None) -> None:
    """`entities` rows: entity_id, household_id (4 consecutive ids), stratum ("common" for 95 %,
    else one of `rare_strata` geometrically sized ones for `sized_for` entities), drawn per
    household, so a household never spans strata. A stratum depends on the id alone, so a
    bigger run is an append-only growth of a smaller one."""
    ratio = _geometric_ratio((sized_for or entities) * RARE_SHARE, rare_strata, SMALLEST_RARE)
    household = (F.col("id") / 4).cast("long")
    u = F.xxhash64(F.lit(20240101).cast("long"), household).cast("double") / float(2**64) + 0.5  # uniform [0, 1)
    rare_u = u / RARE_SHARE
    index = F.floor(F.log(1 + rare_u * (ratio**rare_strata - 1)) / math.log(ratio))
    stratum = F.when(u < RARE_SHARE, F.format_string("rare_%03d", F.least(index, F.lit(rare_strata - 1)).cast("int"))).otherwise(
        F.lit("common")
    )
    (
        spark.range(0, entities, numPartitions=8)
        .select(F.col("id").alias("entity_id"), stratum.alias("stratum"), household.alias("household_id"))
        .write.mode("overwrite")
        .parquet(path)
    )


def _geometric_ratio(total: float, count: int, smallest: float) -> float:
    """r such that `count` strata of sizes smallest * r**i add up to `total`."""
    low, high = 1.0 + 1e-9, 2.0
    for _ in range(200):
        mid = (low + high) / 2
        if smallest * (mid**count - 1) / (mid - 1) > total:
            high = mid
        else:
            low = mid
    return low


# ---- methods --------------------------------------------------------------------------------


def _salted_hash() -> F.Column:
    return F.xxhash64(F.lit(SEED).cast("long"), "entity_id")


def baseline(df: DataFrame) -> DataFrame:
    """A plain hash-threshold pass: one scan, each entity by its hash, no strata, no sizes."""
    low, high = hash_thresholds(list(SHARES.values()))
    h = _salted_hash()
    split = F.when(h < low, "train").when(h < high, "val").otherwise("test")
    return df.select("entity_id", "stratum", "household_id", split.alias("split"))


def ours(histogram: str = "jvm", **options) -> Callable[[DataFrame], DataFrame]:
    """assign_splits with these options; `histogram`: how its histogram pass aggregates."""

    def run(df: DataFrame, previous: DataFrame | None = None) -> DataFrame:
        df.sparkSession.conf.set(HISTOGRAM_CONF, histogram)
        try:
            return assign_splits(df, entity_key="entity_id", ratios=RATIOS, seed=SEED, stratify_by="stratum", previous=previous, **options)
        finally:
            df.sparkSession.conf.set(HISTOGRAM_CONF, "jvm")

    return run


def naive_window(df: DataFrame) -> DataFrame:
    """The textbook exact split: number entities within their stratum by hash, cut at the targets.
    Every stratum goes through one task (the 95 % one included)."""
    by_stratum = Window.partitionBy("stratum")
    ranked = df.select(
        "*",
        F.row_number().over(by_stratum.orderBy(_salted_hash(), "entity_id")).alias("rank"),
        F.count(F.lit(1)).over(by_stratum).alias("size"),
    )
    train_end = F.round(F.col("size") * 0.8)
    val_end = F.round(F.col("size") * 0.9)
    split = F.when(F.col("rank") <= train_end, "train").when(F.col("rank") <= val_end, "val").otherwise("test")
    return ranked.select("entity_id", "stratum", "household_id", split.alias("split"))


# ---- floor: what any exact method must do at least, measured in the same rounds -------------
#
# An exact split must count every stratum before it places anyone (the targets depend on the
# counts), and must then read the data again to label it: a single read would have to carry
# every row through a shuffle to wait for the counts (row C times that shuffle alone). Pass A
# is that count at its cheapest (no buckets, no checks, nothing sent to the driver but one row
# per stratum); pass B is a labelling pass at its cheapest (no lookup of the stratum's cuts: the
# entity hash against the stratum's own hash). A + B bounds from below every two-read exact
# method on the same data and machine.

FLOOR_A = "floor A: counts per stratum (read, entity and stratum hashes, aggregate)"
FLOOR_B = "floor B: labelling pass without a cut lookup (read, both hashes, compare)"
ONE_READ = "floor C: one read with every row shuffled (read, both hashes, repartition by them)"


def _stratum_hash() -> F.Column:
    return F.xxhash64(F.lit(SEED).cast("long"), "stratum")


def floor_count(df: DataFrame) -> None:
    df.groupBy(_stratum_hash().alias("sid")).agg(F.count(F.lit(1)), F.bit_xor(_salted_hash())).collect()


def floor_label(df: DataFrame) -> DataFrame:
    split = F.when(_salted_hash() < _stratum_hash(), "train").otherwise("test")
    return df.select("entity_id", "stratum", split.alias("split"))


def one_read_shuffled(df: DataFrame) -> DataFrame:
    hashed = df.select("entity_id", "stratum", _stratum_hash().alias("sid"), _salted_hash().alias("h"))
    return hashed.repartition("sid", "h")


def random_split(df: DataFrame) -> DataFrame:
    parts = df.randomSplit([0.8, 0.1, 0.1], seed=SEED)
    labelled = [part.withColumn("split", F.lit(name)) for part, name in zip(parts, RATIOS)]
    return labelled[0].unionByName(labelled[1]).unionByName(labelled[2])


def sklearn_split(pdf):
    """scikit-learn's stratified train_test_split, twice (train vs rest, then val vs test)."""
    from sklearn.model_selection import train_test_split

    train, rest = train_test_split(pdf, test_size=0.2, stratify=pdf["stratum"], random_state=SEED)
    val, test = train_test_split(rest, test_size=0.5, stratify=rest["stratum"], random_state=SEED)
    return train.assign(split="train"), val.assign(split="val"), test.assign(split="test")


# ---- measures -------------------------------------------------------------------------------


def worst_deviation(counts: dict[str, dict[str, int]]) -> int:
    """How far any split's count lies outside [floor(n*r), ceil(n*r)], the counts a
    largest-remainder apportionment of its stratum can give (0 = exact)."""
    worst = 0
    for per_split in counts.values():
        size = sum(per_split.values())
        for split, share in SHARES.items():
            quota = size * share
            count = per_split.get(split, 0)
            worst = max(worst, math.floor(quota) - count, count - math.ceil(quota))
    return worst


def spark_counts(result: DataFrame) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in result.groupBy("stratum", "split").count().collect():
        counts[row.stratum][row.split] = row["count"]
    return counts


def spark_leaks(result: DataFrame) -> int:
    return result.groupBy("household_id").agg(F.countDistinct("split").alias("k")).filter("k > 1").count()


def spark_moved(before: DataFrame, after: DataFrame) -> int:
    joined = before.select("entity_id", F.col("split").alias("was")).join(after.select("entity_id", "split"), "entity_id")
    return joined.filter(F.col("was") != F.col("split")).count()


@dataclass
class Row:
    method: str
    times: list[float] = field(default_factory=list)
    deviation: int | None = None
    moved: int | None = None
    leaks: int | None = None
    note: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def noop(frame: DataFrame) -> None:
    frame.write.format("noop").mode("overwrite").save()


# ---- main -----------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=5_000_000)
    parser.add_argument("--rare-strata", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument("--sklearn-max", type=int, default=5_000_000, help="subsample above this many entities")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the slow per-stratum window")
    parser.add_argument("--workdir", default=None, help="where the parquet goes (default: a temp dir, removed)")
    args = parser.parse_args(argv)

    scans_jar = load_settings("local").jar_dir / SCANS_JAR
    if not scans_jar.is_file():
        sys.exit(f"error: {scans_jar} is missing: run `make scans-jar`")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_splits_"))
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench_splits")
        .config("spark.driver.memory", "8g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.local.dir", str(workdir / "spark-local"))
        .config("spark.driver.extraClassPath", str(scans_jar))
        .config(HISTOGRAM_CONF, "jvm")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        return _bench(spark, args, workdir)
    finally:
        spark.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _bench(spark: SparkSession, args: argparse.Namespace, workdir: Path) -> int:
    n = args.entities
    base_path, grown_path = str(workdir / "entities"), str(workdir / "entities_plus_10pct")
    print(f"generating {n:,} entities (+10 % append) with {args.rare_strata} rare strata in {workdir}", flush=True)
    generate(spark, n, args.rare_strata, base_path)
    generate(spark, n + n // 10, args.rare_strata, grown_path, sized_for=n)
    df = spark.read.parquet(base_path)
    grown = spark.read.parquet(grown_path)
    strata = df.select("stratum").distinct().count()
    common = df.filter(F.col("stratum") == "common").count()
    smallest = df.groupBy("stratum").count().agg(F.min("count")).first()[0]
    print(f"{strata} strata; the common one holds {common / n:.1%}; the smallest {smallest} entities", flush=True)
    load_before = os.getloadavg()[0]

    eager: dict[str, list[float]] = defaultdict(list)  # seconds until assign_splits returned
    final: dict[str, list[float]] = defaultdict(list)  # seconds writing its result

    def split_then_write(name: str, method: Callable[[DataFrame], DataFrame]) -> Callable[[], None]:
        def action() -> None:
            started = time.perf_counter()
            frame = method(df)
            returned = time.perf_counter()
            noop(frame)
            eager[name].append(returned - started)
            final[name].append(time.perf_counter() - returned)

        return action

    ours_exact = {
        "ours, exact": ours(one_row_per_entity=True),
        "ours, exact, histogram by Spark's aggregation (control)": ours("spark", one_row_per_entity=True),
        "ours, exact, per_row (rows reduced for the histogram only)": ours(per_row=True),
        "ours, exact, default (rows reduced to entities in the histogram pass)": ours(),
        "ours, exact, group_by household": ours(one_row_per_entity=True, group_by="household_id"),
    }
    methods: dict[str, Callable[[], None]] = {
        "baseline: hash threshold (1 scan)": lambda: noop(baseline(df)),
        "ours, hash": lambda: noop(ours(method="hash", one_row_per_entity=True)(df)),
        **{name: split_then_write(name, method) for name, method in ours_exact.items()},
        "randomSplit": lambda: noop(random_split(df)),
        FLOOR_A: lambda: floor_count(df),
        FLOOR_B: lambda: noop(floor_label(df)),
        ONE_READ: lambda: noop(one_read_shuffled(df)),
    }
    if not args.skip_naive:
        methods["naive per-stratum row_number window"] = lambda: noop(naive_window(df))
    rows = {name: Row(name) for name in methods}

    print("warming up (one untimed run of each)", flush=True)
    for action in methods.values():
        action()
    for repeat in range(args.repeats):  # interleaved, so a noisy moment hits every method alike
        for name, action in methods.items():
            rows[name].times.append(timed(action))
            print(f"  run {repeat + 1}: {name}: {rows[name].times[-1]:.2f}s", flush=True)

    load_after = os.getloadavg()[0]
    print("measuring exactness, stickiness and leaks (untimed)", flush=True)
    outputs = {
        "baseline: hash threshold (1 scan)": (baseline, False),
        "ours, hash": (ours(method="hash", one_row_per_entity=True), False),
        "ours, exact": (ours(one_row_per_entity=True), True),
        "ours, exact, histogram by Spark's aggregation (control)": (ours("spark", one_row_per_entity=True), True),
        "ours, exact, per_row (rows reduced for the histogram only)": (ours(per_row=True), True),
        "ours, exact, default (rows reduced to entities in the histogram pass)": (ours(), True),
        "ours, exact, group_by household": (ours(one_row_per_entity=True, group_by="household_id"), True),
        "randomSplit": (random_split, False),
        "naive per-stratum row_number window": (naive_window, False),
    }
    for name, (method, sticky) in outputs.items():
        if name not in rows:
            continue
        before_path, after_path = str(workdir / "out_before"), str(workdir / "out_after")
        method(df).write.mode("overwrite").parquet(before_path)
        before = spark.read.parquet(before_path)
        after = method(grown, previous=before) if sticky else method(grown)
        after.write.mode("overwrite").parquet(after_path)
        after = spark.read.parquet(after_path)
        rows[name].deviation = worst_deviation(spark_counts(before))
        rows[name].leaks = spark_leaks(before.join(df.select("entity_id", "household_id"), "entity_id") if "household_id" not in before.columns else before)
        rows[name].moved = spark_moved(before, after)
        if sticky:
            rows[name].note = f"after the append (previous=): worst deviation {worst_deviation(spark_counts(after))}"
        if eager.get(name):  # medians of the timed runs (the warm-up is the first of each list)
            passes, written = statistics.median(eager[name][1:]), statistics.median(final[name][1:])
            rows[name].note += f"; eager passes {passes:.2f}s + final pass {written:.2f}s"

    for name in (FLOOR_A, FLOOR_B, ONE_READ):
        rows[name].note = "a lower bound, not a split"
    try:
        rows["scikit-learn train_test_split (pandas)"] = _sklearn_row(spark, df, grown, args.sklearn_max, args.repeats)
    except ValueError as refused:  # a stratum too small for its two stratified splits (small --entities)
        rows["scikit-learn train_test_split (pandas)"] = Row("scikit-learn train_test_split (pandas)", note=f"refused: {refused}")
    baseline_seconds = rows["baseline: hash threshold (1 scan)"].seconds
    _print_table(list(rows.values()), baseline_seconds, n, strata)
    floor = rows[FLOOR_A].seconds + rows[FLOOR_B].seconds
    print(f"floor of any two-read exact method (A + B): {floor:.2f}s, {floor / baseline_seconds:.2f}x the baseline; "
          f"ours, exact: {rows['ours, exact'].seconds / floor:.2f}x that floor")
    print(f"machine load average (1 min) when the timed runs started: {load_before:.1f}, ended: {load_after:.1f} "
          f"({os.cpu_count()} cores)")
    return 0


def _sklearn_row(spark: SparkSession, df: DataFrame, grown: DataFrame, limit: int, repeats: int) -> Row:
    row = Row("scikit-learn train_test_split (pandas)")
    n = df.count()
    source, grown_source = df, grown
    if n > limit:
        fraction = limit / n
        source = df.filter(F.xxhash64(F.lit(7).cast("long"), "entity_id") % 1000 < fraction * 1000)
        grown_source = grown.filter(F.xxhash64(F.lit(7).cast("long"), "entity_id") % 1000 < fraction * 1000)
        row.note = f"on a {fraction:.0%} subsample; "
    collect_started = time.perf_counter()
    pdf = source.toPandas()
    collect_seconds = time.perf_counter() - collect_started
    for _ in range(repeats):
        row.times.append(timed(lambda: sklearn_split(pdf)))
    parts = sklearn_split(pdf)
    import pandas as pd

    before = pd.concat(parts)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for (stratum, split), count in before.groupby(["stratum", "split"]).size().items():
        counts[stratum][split] = int(count)
    row.deviation = worst_deviation(counts)
    row.leaks = int((before.groupby("household_id")["split"].nunique() > 1).sum())
    after = pd.concat(sklearn_split(grown_source.toPandas()))
    merged = before[["entity_id", "split"]].merge(after[["entity_id", "split"]], on="entity_id", suffixes=("_was", ""))
    row.moved = int((merged["split_was"] != merged["split"]).sum())
    row.note += f"time excludes toPandas ({collect_seconds:.1f}s for {len(pdf):,} rows)"
    return row


def _print_table(rows: list[Row], baseline_seconds: float, n: int, strata: int) -> None:
    print()
    print(f"{n:,} entities, {strata} strata, local[2], median of the timed runs")
    header = "| method | time (s) | × baseline | worst deviation from LR count | moved after +10 % | household leaks | notes |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|---|")

    def count(value: int | None) -> str:
        return "–" if value is None else f"{value:,}"

    for row in rows:
        timing = f"{row.seconds:.2f} | {row.seconds / baseline_seconds:.2f}" if row.times else "– | –"
        print(
            f"| {row.method} | {timing} | {count(row.deviation)} | "
            f"{count(row.moved)} | {count(row.leaks)} | {row.note} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    sys.exit(main(sys.argv[1:]))
