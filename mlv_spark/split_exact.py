"""The exact method of assign_splits: a histogram pass, a rare boundary pass, one lazy pass.

1. Histogram pass (eager; one scan, plus the shuffle that reduces rows to entities unless the
   caller promises one row per entity): per stratum and hash bucket, the atoms' count and the
   min, max and xor of their salted hashes, plus every data check, collected to the driver.
2. On the driver (split_apportion, split_cuts): largest-remainder targets, quotas for new
   atoms, the arcs of the stratum's seeded circle, and the atom where each arc starts.
3. Boundary pass, only when a cut falls inside a bucket of 4+ atoms: those buckets' atoms are
   ranked (a window over a few rows, never over a stratum).
4. Final pass (lazy): every atom is compared with its stratum's cut atoms, joined from a small
   broadcast table. No window, no sort, no shuffle beyond the entity reduction.
"""

from __future__ import annotations

import base64
import json
import time
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.errors import InvalidInputError, MlvError
from mlv_spark.log import get_logger
from mlv_spark.split_apportion import largest_remainder, new_entity_quotas, tie_rank
from mlv_spark.split_cuts import (
    Cut,
    StratumHistogram,
    Unresolved,
    build_histograms,
    circle_cuts,
    cut_from_ranked,
    find_cut,
)
from mlv_spark.split_spec import (
    PREFIX,
    SPLIT_COLUMN,
    SplitSpec,
    any_null,
    per_period,
    entity_hash,
    entity_tie,
    exclude_future_of_past_entities,
    group_hash,
    internal,
    nullable_hash,
    output_columns,
    tie_type,
)

log = get_logger("mlv_spark.splits")

#: Coarse buckets either side of each cut's expected position that the histogram splits
#: 2**FINE_BITS times finer, so that a big stratum's cut lands in a bucket of at most three atoms
#: and is settled without a second look at the data. Covers 4.7 standard deviations of the cut's
#: position for strata of 5M atoms with the default buckets (the deviation shrinks as 1/sqrt(n)).
NEAR_CUT = 16
FINE_BITS = 16
#: Histogram bucket of the atoms failing a data check (below every real key: those are
#: > -2**62 for atoms kept from `previous`, and >= 0 otherwise).
_FAILED_BUCKET = -(2**62)


class StratumIdCollisionError(MlvError):
    """Two different strata got the same 64-bit stratum id (odds ~ strata**2 / 2**65)."""


def assign_exactly(spec: SplitSpec, rows: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Histogram pass (eager), rare boundary pass, then one lazy pass comparing to cut atoms."""
    spark = rows.sparkSession
    histograms = _histogram_pass(spec, rows, previous)
    started = time.perf_counter()
    plans, unresolved = _plan_cuts(spec, histograms)
    if unresolved:
        _boundary_pass(spec, rows, previous, histograms, plans, unresolved)
    log.info(
        "assign_splits: cuts: %d settled from the histogram, %d from ranking %d boundary buckets, %.2fs",
        sum(len(c) for _, c in plans.values()) - len(unresolved), len(unresolved),
        len({(sid, u.position) for sid, _, u in unresolved}), time.perf_counter() - started,
    )
    cut_table = F.broadcast(_cut_table(spark, spec, plans))
    return _final_pass(spec, rows, previous, cut_table)


# ---- frames: rows -> units (entity, period) -> atoms (unit, or group of units) --------------


def _units(spec: SplitSpec, rows: DataFrame, previous: DataFrame | None, *, with_values: bool) -> DataFrame:
    """One row per unit = (entity, period), with stratum id, hashes, tie, previous split, flags.

    With `with_values` (the final pass) the stratum, group and time values are kept: rows are
    grouped by key, period, strata and groups, which the histogram pass has shown to be one
    group per unit. Without (the histogram pass) the ids are hashed on the rows and grouped by
    key and period with fixed-width aggregates only (Spark's fastest hash aggregation, combined
    before the shuffle); an entity whose rows disagree shows up as sid != sid_hi or gid != gid_hi.
    """
    if spec.one_row_per_entity:
        units = _with_ids(spec, rows if with_values else rows.select(*spec.keys, *spec.strata, *spec.groups, internal("period")))
        units = units.select("*", F.col(internal("sid")).alias(internal("sid_hi")), F.col(internal("gid")).alias(internal("gid_hi")))
    elif with_values:
        time_aggregate = F.max(spec.time_column).alias(spec.time_column) if spec.time_column else F.count(F.lit(1)).alias(internal("rows"))
        units = _with_ids(spec, rows.groupBy(*spec.keys, internal("period"), *spec.strata, *spec.groups).agg(time_aggregate))
        units = units.select("*", F.col(internal("sid")).alias(internal("sid_hi")), F.col(internal("gid")).alias(internal("gid_hi")))
    else:
        hashed = _with_ids(spec, rows.select(*spec.keys, internal("period"), *spec.strata, *spec.groups))
        aggregates = [
            F.min(internal("sid")).alias(internal("sid")), F.max(internal("sid")).alias(internal("sid_hi")),
            F.min(internal("chk")).alias(internal("chk")),
        ]  # fmt: skip
        if spec.groups:
            aggregates += [
                F.min(internal("gid")).alias(internal("gid")), F.max(internal("gid")).alias(internal("gid_hi")),
                F.min(internal("gh")).alias(internal("gh")), F.max(internal("null_group")).alias(internal("null_group")),
            ]  # fmt: skip
        units = hashed.groupBy(*spec.keys, internal("period")).agg(*aggregates)
        if not spec.groups:
            units = units.select("*", *[F.lit(0).cast("long").alias(internal(c)) for c in ("gid", "gid_hi", "gh")], F.lit(0).alias(internal("null_group")))
    if spec.exclude_train_entities and not spec.one_row_per_entity:
        units = exclude_future_of_past_entities(spec, units)
    extra = [
        entity_hash(spec).alias(internal("h")),
        entity_tie(spec).alias(internal("tie")),
        any_null([F.col(k) for k in spec.keys]).alias(internal("null_key")),
        (F.col(internal("period")) == -1).cast("int").alias(internal("null_time")),
    ]
    return _with_previous(spec, units.select("*", *extra), previous)


def _with_ids(spec: SplitSpec, units: DataFrame) -> DataFrame:
    """Add the stratum id `sid` (a salted hash of period and stratum), its independent check
    hash `chk` (also the stratum's rotation), the group id `gid`, the group hash `gh`."""
    period = F.col(internal("period"))
    stratum = [F.col(s) for s in spec.strata]
    group = [F.col(g) for g in spec.groups]
    return units.select(
        "*",
        nullable_hash(spec, "stratum", [period, *stratum]).alias(internal("sid")),
        nullable_hash(spec, "stratum-check", [period, *stratum]).alias(internal("chk")),
        (nullable_hash(spec, "group-id", group) if group else F.lit(0).cast("long")).alias(internal("gid")),
        (group_hash(spec) if group else F.lit(0).cast("long")).alias(internal("gh")),
        any_null(group).alias(internal("null_group")),
    )


def _with_previous(spec: SplitSpec, units: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Add `prev` (global split index kept from `previous`, else null) and `bad_prev`."""
    if previous is None:
        return units.select("*", F.lit(None).cast("int").alias(internal("prev")), F.lit(0).alias(internal("bad_prev")))
    split = F.col(SPLIT_COLUMN)
    index_of = F.create_map(*[F.lit(x) for i, n in enumerate(spec.names) for x in (n, i)])
    period_of = F.create_map(*[F.lit(x) for p in spec.periods for n in p.names for x in (n, p.index)])
    index, period_of = F.element_at(index_of, split), F.element_at(period_of, split)
    labelled = previous.select(*spec.keys, index.alias("i"), period_of.alias("p"))
    aggregations = [F.sum(F.col("p").isNull().cast("int")).alias(internal("prev_unknown"))]
    for p in spec.periods:
        in_period = F.col("p") == p.index
        aggregations += [
            F.min(F.when(in_period, F.col("i"))).alias(internal(f"prev_lo{p.index}")),
            F.max(F.when(in_period, F.col("i"))).alias(internal(f"prev_hi{p.index}")),
        ]
    per_key = labelled.groupBy(*spec.keys).agg(*aggregations)
    joined = units.join(per_key, on=spec.keys, how="left")
    period = F.col(internal("period"))
    lo = per_period(period, {p.index: F.col(internal(f"prev_lo{p.index}")) for p in spec.periods})
    hi = per_period(period, {p.index: F.col(internal(f"prev_hi{p.index}")) for p in spec.periods})
    bad = (F.coalesce(F.col(internal("prev_unknown")), F.lit(0)) > 0) | (lo != hi)
    return joined.select(
        *units.columns, lo.alias(internal("prev")), F.coalesce(bad.cast("int"), F.lit(0)).alias(internal("bad_prev"))
    )


def _atoms(spec: SplitSpec, units: DataFrame) -> DataFrame:
    """What the cuts order: units, or whole groups (weight = units, stratum = the dominant one)."""
    flags = ["null_key", "null_time", "bad_prev", "null_group", "conflict_stratum", "conflict_group"]
    units = units.select(
        "*",
        (F.col(internal("sid")) != F.col(internal("sid_hi"))).cast("int").alias(internal("conflict_stratum")),
        (F.col(internal("gid")) != F.col(internal("gid_hi"))).cast("int").alias(internal("conflict_group")),
        F.lit(1).cast("long").alias(internal("w")),
    )
    if not spec.groups:
        return units
    per_stratum = units.groupBy(internal("period"), internal("gid"), internal("sid")).agg(
        F.count(F.lit(1)).alias(internal("n")), F.min(internal("chk")).alias(internal("chk")), F.min(internal("gh")).alias(internal("gh")),
        F.min(internal("prev")).alias(internal("prev_lo")), F.max(internal("prev")).alias(internal("prev_hi")),
        *[F.sum(internal(f)).alias(internal(f)) for f in flags],
    )  # fmt: skip
    # the stratum with most units wins; equal counts go to the larger stratum id (deterministic)
    order = F.col(internal("n")).cast("decimal(38,0)") * F.lit(Decimal(2**64)) + F.col(internal("sid")).cast("decimal(38,0)")
    groups = per_stratum.groupBy(internal("period"), internal("gid")).agg(
        F.sum(internal("n")).alias(internal("w")), F.max_by(internal("sid"), order).alias(internal("sid")), F.max_by(internal("chk"), order).alias(internal("chk")),
        F.min(internal("gh")).alias(internal("h")), F.min(internal("prev_lo")).alias(internal("prev")), F.max(internal("prev_hi")).alias(internal("prev_hi")),
        *[F.sum(internal(f)).alias(internal(f)) for f in flags],
    )  # fmt: skip
    split_inside = F.coalesce((F.col(internal("prev")) != F.col(internal("prev_hi"))).cast("int"), F.lit(0))
    return groups.select(
        *[c for c in groups.columns if c != internal("bad_prev")],
        F.struct(F.col(internal("gid")).alias("t0")).alias(internal("tie")),
        (F.col(internal("bad_prev")) + split_inside).alias(internal("bad_prev")),
    )


def _bucket(spec: SplitSpec, atom_hash: Column) -> Column:
    """Coarse bucket: top bits of the signed hash, shifted to [0, buckets); monotone in the hash."""
    return (F.shiftright(atom_hash, 64 - spec.bits) + F.lit(2 ** (spec.bits - 1))).cast("int")


def _bucket_key(spec: SplitSpec, atom_hash: Column) -> Column:
    """The histogram's bucket, as a key sorting in hash order: the coarse bucket, except within
    NEAR_CUT coarse buckets of where a cut is expected, where it is split FINE_BITS finer.

    Hashes are uniform, so the arc of split j starts near hash fraction rotation + C_j / total
    (mod 1); the stratum's rotation is its check id `chk` (an independent salted hash)."""
    size = 2**spec.bits
    coarse = _bucket(spec, atom_hash)
    rotated = F.shiftright(F.col(internal("chk")), 64 - spec.bits) + F.lit(size // 2)  # in [0, size)
    along = F.pmod(coarse - rotated, F.lit(size))  # the bucket's place on the stratum's circle
    by_period = {}
    for p in spec.periods:
        near = (along <= NEAR_CUT) | (along >= size - NEAR_CUT)
        cumulative = Fraction(0)
        for share in p.shares[:-1]:
            cumulative += share
            expected = int(cumulative * size)
            near = near | along.between(expected - NEAR_CUT, expected + NEAR_CUT)
        by_period[p.index] = near
    fine = F.shiftright(atom_hash, 64 - spec.bits - FINE_BITS) + F.lit(2 ** (spec.bits + FINE_BITS - 1))
    return F.when(per_period(F.col(internal("period")), by_period), fine).otherwise(F.shiftleft(coarse.cast("long"), FINE_BITS))


# ---- pass 1: histogram ----------------------------------------------------------------------

_FLAG_MESSAGES = {
    "null_key": "entity_key column(s) {keys} are null in {n} unit(s); drop or fill those rows",
    "null_time": "time_column {time!r} is null in {n} unit(s); drop those rows or fill the time",
    "null_group": "group_by column(s) {groups} are null in {n} unit(s); fill them (e.g. with the entity key)",
    "conflict_stratum": "stratify_by column(s) {strata} differ between rows of {n} entit(ies), e.g. {example}; "
    "derive one stratum per entity (e.g. from its latest row) before splitting",
    "conflict_group": "group_by column(s) {groups} differ between rows of {n} entit(ies), e.g. {example}; "
    "an entity must belong to one group",
    "bad_prev": "previous gives {n} unit(s) a split that is unknown, ambiguous or split inside a group, "
    "e.g. {example}; previous must hold one known split (one of {names}) per key",
}


def _histogram_pass(spec: SplitSpec, rows: DataFrame, previous: DataFrame | None) -> dict[int, StratumHistogram]:
    """Per stratum and hash bucket: weight, count, min, max and xor of the hashes. Every data
    check runs in the same aggregation: an atom failing one lands in a sentinel bucket, and any
    such bucket is diagnosed and raised here, before any further work."""
    units = _units(spec, rows, previous, with_values=False)
    atoms = _atoms(spec, units)
    checks = _checks(spec)
    bucket = F.when(F.col(internal("prev")).isNotNull(), -1 - F.col(internal("prev"))).otherwise(_bucket_key(spec, F.col(internal("h"))))
    if checks:  # an atom failing a check lands in one sentinel bucket: no extra column to sum
        failed = F.greatest(*[F.col(internal(flag)) for flag in checks], F.lit(0)) > 0
        bucket = F.when(failed, F.lit(_FAILED_BUCKET)).otherwise(bucket)
    weight = [F.sum(internal("w")).alias("w")] if spec.groups else []
    period = [F.col(internal("period")).alias("period")] if spec.out_of_time else []
    started = time.perf_counter()
    arrow = (
        atoms.groupBy(*period, F.col(internal("sid")).alias("sid"), F.col(internal("chk")).alias("rotation"), bucket.alias("bucket"))
        .agg(
            *weight, F.count(F.lit(1)).alias("n"),
            F.min(internal("h")).alias("hmin"), F.max(internal("h")).alias("hmax"), F.bit_xor(internal("h")).alias("hxor"),
        )  # fmt: skip
        .toArrow()
    )
    collected = time.perf_counter() - started
    if checks and pc.any(pc.equal(arrow.column("bucket"), _FAILED_BUCKET)).as_py():
        raise InvalidInputError(_diagnose(spec, units, checks))
    if arrow.num_rows == 0:
        raise InvalidInputError(
            "df has no rows to split" + (" outside the gap" if spec.out_of_time else "") + "; check the input and filters"
        )
    table = {name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names}
    table.setdefault("w", table["n"])  # without groups every atom weighs 1
    table.setdefault("period", np.zeros_like(table["n"]))
    _check_stratum_ids(table)
    histograms = build_histograms(table)
    log.info(
        "assign_splits: histogram pass: %d atoms in %d strata, %d histogram rows (%.2fs on Spark, %.2fs on the driver)",
        int(table["n"].sum()), len(histograms), arrow.num_rows, collected, time.perf_counter() - started - collected,
    )
    return histograms


def _check_stratum_ids(table: dict) -> None:
    """Each stratum id must stand for one stratum: its second, independent hash never varies."""
    order = np.lexsort((table["rotation"], table["sid"]))
    sid, rotation = table["sid"][order], table["rotation"][order]
    clash = (sid[1:] == sid[:-1]) & (rotation[1:] != rotation[:-1])
    if clash.any():
        raise StratumIdCollisionError(
            f"strata share the 64-bit stratum id(s) {np.unique(sid[1:][clash])[:3].tolist()}; run again with another seed"
        )


def _checks(spec: SplitSpec) -> list[str]:
    """The data checks that can fail for these arguments (each a 0/1 column of the atoms)."""
    checks = ["null_key"]
    if spec.out_of_time:
        checks.append("null_time")
    if spec.groups:
        checks.append("null_group")
    if spec.strata and not spec.one_row_per_entity:
        checks.append("conflict_stratum")
    if spec.groups and not spec.one_row_per_entity:
        checks.append("conflict_group")
    if spec.sticky:
        checks.append("bad_prev")
    return checks


def _diagnose(spec: SplitSpec, units: DataFrame, checks: list[str]) -> str:
    """Error text for failed data checks: counts per check and one offending key (error path only)."""
    atoms = _atoms(spec, units)
    counts = atoms.agg(*[F.sum(internal(check)).alias(check) for check in checks]).first()
    assert counts is not None  # a global aggregate always returns one row
    offending = {
        "conflict_stratum": F.col(internal("sid")) != F.col(internal("sid_hi")),
        "conflict_group": F.col(internal("gid")) != F.col(internal("gid_hi")),
        "bad_prev": F.col(internal("bad_prev")) > 0,
    }
    messages = []
    for check in checks:
        if not counts[check]:
            continue
        example = None
        if check in offending:
            example = units.filter(offending[check]).select(*spec.keys).first()
            if example is None and check == "bad_prev" and spec.groups:  # disagreement inside a group
                split_groups = atoms.filter(F.col(internal("bad_prev")) > 0).select(internal("period"), internal("gid"))
                example = units.join(split_groups, on=[internal("period"), internal("gid")]).select(*spec.keys).first()
        messages.append(_FLAG_MESSAGES[check].format(
            keys=spec.keys, time=spec.time_column, groups=spec.groups, strata=spec.strata, n=counts[check],
            example=repr(tuple(example)) if example is not None else "?", names=spec.names,
        ))  # fmt: skip
    return "; and ".join(messages)


# ---- cuts -----------------------------------------------------------------------------------


def _plan_cuts(
    spec: SplitSpec, histograms: dict[int, StratumHistogram]
) -> tuple[dict[int, tuple[list[str], list[Cut | Unresolved]]], list[tuple[int, int, Unresolved]]]:
    """Per stratum: targets by largest remainder, quotas for its new atoms, the arcs those
    quotas take on the stratum's seeded circle, and the cut atoms where the arcs start."""
    plans: dict[int, tuple[list[str], list[Cut | Unresolved]]] = {}
    unresolved: list[tuple[int, int, Unresolved]] = []
    for sid, hist in histograms.items():
        period = spec.periods[hist.period]
        ranks = [tie_rank(spec.seed, sid, name) for name in period.names]
        old = [hist.old_weights.get(spec.names.index(name), 0) for name in period.names]
        new_total = hist.new_weight
        targets = largest_remainder(new_total + sum(old), period.shares, ranks)
        quotas = new_entity_quotas(new_total, old, targets, ranks) if sum(old) else targets
        hist.targets, hist.quotas = targets, quotas
        positions, owners = circle_cuts(new_total, quotas, hist.rotation)
        stratum_cuts: list[Cut | Unresolved] = []
        for j, position in enumerate(positions):
            cut = find_cut(hist, position)
            if isinstance(cut, Unresolved):
                unresolved.append((sid, j, cut))
            stratum_cuts.append(cut)
        plans[sid] = ([period.names[o] for o in owners], stratum_cuts)
    return plans, unresolved


def _boundary_pass(
    spec: SplitSpec,
    rows: DataFrame,
    previous: DataFrame | None,
    histograms: dict[int, StratumHistogram],
    plans: dict[int, tuple[list[str], list[Cut | Unresolved]]],
    unresolved: list[tuple[int, int, Unresolved]],
) -> None:
    """Rank the atoms of the few buckets holding an unsettled cut (only those rows are shuffled)."""
    spark = rows.sparkSession
    pairs = sorted({(sid, int(histograms[sid].buckets[u.position])) for sid, _, u in unresolved})
    coarse = sorted({key >> FINE_BITS for _, key in pairs})  # the coarse buckets holding them
    atom_hash = group_hash(spec) if spec.groups else entity_hash(spec)
    narrowed = rows.filter(_bucket(spec, atom_hash).isin(coarse))
    if previous is not None:  # only the few entities in those buckets: no shuffle of previous
        previous = previous.join(F.broadcast(narrowed.select(*spec.keys).distinct()), on=spec.keys, how="left_semi")
    atoms = _atoms(spec, _units(spec, narrowed, previous, with_values=False))
    atoms = atoms.filter(F.col(internal("prev")).isNull()).select("*", _bucket_key(spec, F.col(internal("h"))).alias(internal("bucket")))
    pair_frame = _local_frame(
        spark, pairs, T.StructType([T.StructField(internal("sid"), T.LongType()), T.StructField(internal("bucket"), T.LongType())])
    )
    ranked = (
        atoms.join(F.broadcast(pair_frame), on=[internal("sid"), internal("bucket")], how="left_semi")
        .withColumn("rank", F.row_number().over(Window.partitionBy(internal("sid"), internal("bucket")).orderBy(internal("h"), internal("tie"))))
        .select(internal("sid"), internal("bucket"), "rank", internal("h"), internal("tie"), internal("w"))
        .collect()
    )
    members: dict[tuple[int, int], list[tuple[int, tuple, int]]] = {}
    for row in sorted(ranked, key=lambda r: (r[0], r[1], r[2])):
        members.setdefault((row[0], row[1]), []).append((row[3], tuple(row[4]), row[5]))
    for sid, j, cut in unresolved:
        bucket_index = int(histograms[sid].buckets[cut.position])
        plans[sid][1][j] = cut_from_ranked(histograms[sid], cut, members.get((sid, bucket_index), []))
    log.info("assign_splits: boundary pass ranked %d atoms in %d buckets", len(ranked), len(pairs))


def _cut_count(spec: SplitSpec) -> int:
    """Cuts per stratum in the cut table: at most one per split (where its arc starts)."""
    return max(len(p.names) for p in spec.periods)


def _cut_table(spark, spec: SplitSpec, plans: dict[int, tuple[list[str], list]]) -> DataFrame:
    """One small row per stratum: each cut atom's (hash, tie) and the split owning each segment
    (`o0` before the first cut, `o1` after it, ...); a missing cut is +infinity."""
    count = _cut_count(spec)
    fields = [T.StructField(internal("sid"), T.LongType(), False)]
    fields += [T.StructField(internal(f"o{j}"), T.StringType()) for j in range(count + 1)]
    for j in range(count):
        fields += [T.StructField(internal(f"ch{j}"), T.LongType()), T.StructField(internal(f"ct{j}"), tie_type(spec))]
    records = []
    for sid, (owners, stratum_cuts) in plans.items():
        record: list = [sid, *owners, *owners[-1:] * (count + 1 - len(owners))]
        for cut in list(stratum_cuts) + [Cut(None)] * (count - len(stratum_cuts)):
            assert isinstance(cut, Cut)
            record += [cut.hash, cut.tie]
        records.append(tuple(record))
    return _local_frame(spark, records, T.StructType(fields))


def _local_frame(spark, records: list[tuple], schema: T.StructType) -> DataFrame:
    """A small frame from Python values, built in the JVM from one JSON literal: a single call
    (a literal per value would cost a py4j round trip each) and no Python RDD (createDataFrame on
    a list makes one, and every use of it would start Python workers). Exact for longs, strings,
    decimals (sent as text), booleans and binary (base64)."""
    payload = json.dumps([_jsonable(record, schema) for record in records])
    parsed = F.from_json(F.lit(payload), T.ArrayType(schema), {"mode": "FAILFAST"})
    return spark.range(1).select(F.inline(parsed))


def _jsonable(value: object, dtype: T.DataType) -> object:
    if value is None:
        return None
    if isinstance(dtype, T.StructType):
        return {f.name: _jsonable(v, f.dataType) for v, f in zip(value, dtype.fields, strict=True)}  # type: ignore[call-overload]
    if isinstance(dtype, T.ArrayType):
        return [_jsonable(v, dtype.elementType) for v in value]  # type: ignore[attr-defined]
    if isinstance(dtype, T.DecimalType):
        return str(value)
    if isinstance(dtype, T.BinaryType):
        return base64.b64encode(bytes(value)).decode("ascii")  # type: ignore[call-overload]
    return value


def _split_from_cuts(spec: SplitSpec, h: Column, tie: Column) -> Column:
    """Split of an atom joined to its stratum's cut row: the owner of the segment it falls in.
    `tie` is only evaluated for an atom whose hash equals a cut's (Spark's OR short-circuits)."""
    expression = None
    for j in range(_cut_count(spec)):
        ch, ct = F.col(internal(f"ch{j}")), F.col(internal(f"ct{j}"))
        before = ch.isNull() | (h < ch) | ((h == ch) & ct.isNotNull() & (tie < ct))
        owner = F.col(internal(f"o{j}"))
        expression = F.when(before, owner) if expression is None else expression.when(before, owner)
    last = F.col(internal(f"o{_cut_count(spec)}"))
    new_split = last if expression is None else expression.otherwise(last)
    kept = F.element_at(F.array(*[F.lit(n) for n in spec.names]), F.col(internal("prev")) + 1)
    return F.when(F.col(internal("prev")).isNotNull(), kept).otherwise(new_split)


# ---- final pass -----------------------------------------------------------------------------


def _final_pass(spec: SplitSpec, rows: DataFrame, previous: DataFrame | None, cut_table: DataFrame) -> DataFrame:
    """Lazy: each atom compared with its stratum's cut atoms; no window, no sort."""
    simple_rows = spec.per_row and not spec.groups and previous is None and not spec.exclude_train_entities
    if simple_rows:
        # every row of an entity carries the entity's stratum (validated), so rows map directly
        labelled = _with_ids(spec, rows).select(
            "*", entity_hash(spec).alias(internal("h")), F.lit(None).cast("int").alias(internal("prev"))
        )
        labelled = labelled.join(cut_table, on=internal("sid"))
        split = _split_from_cuts(spec, F.col(internal("h")), entity_tie(spec))
        return labelled.select(*_caller_columns(rows), split.alias(SPLIT_COLUMN))
    units = _units(spec, rows, previous, with_values=True)
    if spec.groups:
        atoms = _atoms(spec, units).join(cut_table, on=internal("sid"))
        split = _split_from_cuts(spec, F.col(internal("h")), F.col(internal("tie")))
        group_split = atoms.select(internal("period"), internal("gid"), split.alias(SPLIT_COLUMN))
        assigned = units.join(group_split, on=[internal("period"), internal("gid")])
    else:
        split = _split_from_cuts(spec, F.col(internal("h")), entity_tie(spec))
        assigned = units.join(cut_table, on=internal("sid")).select("*", split.alias(SPLIT_COLUMN))
    if not spec.per_row:
        return assigned.select(*output_columns(spec))
    unit_key = [*spec.keys, internal("period")]
    return rows.join(assigned.select(*unit_key, SPLIT_COLUMN), on=unit_key).select(*_caller_columns(rows), SPLIT_COLUMN)


def _caller_columns(frame: DataFrame) -> list[str]:
    return [c for c in frame.columns if not c.startswith(PREFIX)]
