"""The exact method of assign_splits: a histogram pass, a rare boundary pass, one lazy pass.

1. Histogram pass (eager; one scan, plus the shuffle that reduces rows to entities unless the
   caller promises one row per entity): per stratum and hash bucket, the atoms' count and the
   min, max and xor of their salted hashes, plus every data check, collected to the driver.
   The aggregation is the JVM sketch of the scans jar (`HISTOGRAM_CONF`), or Spark's.
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
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from py4j.java_gateway import JavaClass
from py4j.protocol import Py4JError
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlv_spark.errors import InvalidInputError, MlvError
from mlv_spark.jvm import scan_class
from mlv_spark.log import get_logger
from mlv_spark.splits.apportion import largest_remainder, new_entity_quotas, tie_rank
from mlv_spark.splits.cuts import (
    Cut,
    StratumHistogram,
    Unresolved,
    build_histograms,
    circle_cuts,
    cut_from_ranked,
    find_cut,
    merge_partial_histograms,
)
from mlv_spark.splits.spec import (
    PREFIX,
    SPLIT_COLUMN,
    SplitSpec,
    aliases,
    any_null,
    entity_hash,
    entity_tie,
    exclude_future_of_past_entities,
    group_columns,
    group_hash,
    internal,
    key_columns,
    nullable_hash,
    output_columns,
    per_period,
    stratum_columns,
    tie_type,
)
from mlv_spark.sql import column, long_sql, string_sql, to_arrow

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
#: Session setting: how the histogram pass aggregates. `auto` (default): the JVM sketch
#: (`io.mlvspark.splits.HistogramSketch`, in the scans jar) when it is on the class path, else
#: Spark's hash aggregation; `jvm`: the sketch, or an error; `spark`: Spark's aggregation.
HISTOGRAM_CONF = "spark.mlv.splits.histogram"
_SKETCH_CLASS = "io.mlvspark.splits.HistogramSketch"
#: Aggregates the sketch holds in a partition's lists, and again in its arrays, before it emits
#: them: bounds its memory to about 2 * 2**19 * 8 longs (64 MB).
_SKETCH_FLUSH_ROWS = 1 << 19


class StratumIdCollisionError(MlvError):
    """Two different strata got the same 64-bit stratum id (odds ~ strata**2 / 2**65)."""


def assign_exactly(spec: SplitSpec, rows: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Histogram pass (eager), rare boundary pass, then one lazy pass comparing to cut atoms."""
    spark = rows.sparkSession
    histograms, found = _histogram_pass(spec, rows, previous)
    started = time.perf_counter()
    plans, unresolved = _plan_cuts(spec, histograms)
    if unresolved:
        _boundary_pass(spec, rows, previous, histograms, plans, unresolved)
    log.info(
        "assign_splits: cuts: %d settled from the histogram, %d from ranking %d boundary buckets, %.2fs",
        sum(len(c) for _, c in plans.values()) - len(unresolved), len(unresolved),
        len({(sid, u.position) for sid, _, u in unresolved}), time.perf_counter() - started,
    )
    cut_table, ties = _cut_table(spark, spec, plans)
    return _final_pass(spec, rows, previous, F.broadcast(cut_table), found, ties)


# ---- frames: rows -> units (entity, period) -> atoms (unit, or group of units) --------------
#
# Expressions are SQL text over internal names (see spec.py): each step is one select.


_n = internal  # short: the SQL text below names many internal columns
#: A group's tie-break (equal group hashes), of `tie_type` for groups: its id, a second hash.
_GROUP_TIE = f"named_struct('t0', {_n('gid')})"


def _units(
    spec: SplitSpec, rows: DataFrame, previous: DataFrame | None, *, with_values: bool, rows_are_units: bool = False
) -> DataFrame:
    """One row per unit = (entity, period), with stratum id, hashes, tie, previous split, flags.

    With `with_values` (the final pass) the caller's columns are kept: rows are grouped by key,
    period, strata and groups, which the histogram pass has shown to be one group per unit;
    not at all when it has shown each unit to be a single row (`rows_are_units`).
    Without (the histogram pass) only internal columns are kept; the ids are hashed on the rows
    and grouped by key and period with fixed-width aggregates only (Spark's fastest hash
    aggregation, combined before the shuffle); an entity whose rows disagree shows up as
    sid != sid_hi or gid != gid_hi, and `rows` counts the unit's rows.
    """
    keys, period = key_columns(spec), _n("period")
    attributes = [*stratum_columns(spec), *group_columns(spec)]
    if spec.one_row_per_entity or (with_values and rows_are_units):
        source = rows if with_values else rows.select(*keys, period, *attributes)
        columns = ["*", *_ids(spec), f"0 AS {_n('conflict_stratum')}", f"0 AS {_n('conflict_group')}"]
    elif with_values:
        time_aggregate = F.max(column(spec.time_column)).alias(spec.time_column) if spec.time_column else F.count(F.lit(1)).alias(_n("rows"))
        grouped = rows.groupBy(*_columns(spec.keys), period, *_columns([*spec.strata, *spec.groups])).agg(time_aggregate)
        source = grouped.select("*", *aliases(spec))
        columns = ["*", *_ids(spec), f"0 AS {_n('conflict_stratum')}", f"0 AS {_n('conflict_group')}"]
    else:
        hashed = rows.selectExpr(*keys, period, *_ids(spec))
        aggregates = [
            f"min({_n('sid')}) AS {_n('sid')}", f"max({_n('sid')}) AS {_n('sid_hi')}", f"min({_n('chk')}) AS {_n('chk')}",
            f"count(1) AS {_n('rows')}",
        ]  # fmt: skip
        if spec.groups:
            aggregates += [
                f"min({_n('gid')}) AS {_n('gid')}", f"max({_n('gid')}) AS {_n('gid_hi')}",
                f"min({_n('gh')}) AS {_n('gh')}", f"max({_n('null_group')}) AS {_n('null_group')}",
            ]  # fmt: skip
        source = hashed.groupBy(*keys, period).agg(*[F.expr(a) for a in aggregates])
        columns = [
            "*",
            f"CAST({_n('sid')} != {_n('sid_hi')} AS INT) AS {_n('conflict_stratum')}",
            f"CAST({_n('gid')} != {_n('gid_hi')} AS INT) AS {_n('conflict_group')}" if spec.groups else f"0 AS {_n('conflict_group')}",
        ]
        if not spec.groups:
            columns += [f"CAST(0 AS BIGINT) AS {_n(c)}" for c in ("gid", "gh")] + [f"0 AS {_n('null_group')}"]
    if spec.exclude_train_entities and not spec.one_row_per_entity:
        source = exclude_future_of_past_entities(source, keys)
    columns += [
        f"{entity_hash(spec)} AS {_n('h')}",
        f"{entity_tie(spec)} AS {_n('tie')}",
        f"{any_null(keys)} AS {_n('null_key')}",
        f"CAST({period} = -1 AS INT) AS {_n('null_time')}",
    ]
    return _with_previous(spec, source.selectExpr(*columns), previous)


def _ids(spec: SplitSpec) -> list[str]:
    """The stratum id `sid` (a salted hash of period and stratum), its independent check hash
    `chk` (also the stratum's rotation), the group id `gid`, the group hash `gh`."""
    stratum = [_n("period"), *stratum_columns(spec)]
    groups = group_columns(spec)
    return [
        f"{nullable_hash(spec, 'stratum', stratum)} AS {_n('sid')}",
        f"{nullable_hash(spec, 'stratum-check', stratum)} AS {_n('chk')}",
        f"{nullable_hash(spec, 'group-id', groups) if groups else 'CAST(0 AS BIGINT)'} AS {_n('gid')}",
        f"{group_hash(spec) if groups else 'CAST(0 AS BIGINT)'} AS {_n('gh')}",
        f"{any_null(groups)} AS {_n('null_group')}",
    ]


def _with_previous(spec: SplitSpec, units: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Add `prev` (global split index kept from `previous`, else null) and `bad_prev`."""
    if previous is None:
        return units.selectExpr("*", f"CAST(NULL AS INT) AS {_n('prev')}", f"0 AS {_n('bad_prev')}")
    keys = key_columns(spec)
    index_of = f"map({', '.join(f'{string_sql(n)}, {i}' for i, n in enumerate(spec.names))})"
    period_of = f"map({', '.join(f'{string_sql(n)}, {p.index}' for p in spec.periods for n in p.names)})"
    split = _n("split")
    labelled = previous.select(*[column(k).alias(a) for k, a in zip(spec.keys, keys)], F.col(SPLIT_COLUMN).alias(split)).selectExpr(
        *keys, f"element_at({index_of}, {split}) AS i", f"element_at({period_of}, {split}) AS p"
    )
    aggregates = [f"sum(CAST(isnull(p) AS INT)) AS {_n('prev_unknown')}"]
    for p in spec.periods:
        aggregates += [
            f"min(CASE WHEN p = {p.index} THEN i END) AS {_n(f'prev_lo{p.index}')}",
            f"max(CASE WHEN p = {p.index} THEN i END) AS {_n(f'prev_hi{p.index}')}",
        ]
    per_key = labelled.groupBy(*keys).agg(*[F.expr(a) for a in aggregates])
    joined = units.join(per_key, on=keys, how="left")
    period = _n("period")
    lo = per_period(period, {p.index: _n(f"prev_lo{p.index}") for p in spec.periods})
    hi = per_period(period, {p.index: _n(f"prev_hi{p.index}") for p in spec.periods})
    bad = f"coalesce(CAST(coalesce({_n('prev_unknown')}, 0) > 0 OR ({lo}) != ({hi}) AS INT), 0)"
    return joined.select(*_columns(units.columns), F.expr(lo).alias(_n("prev")), F.expr(bad).alias(_n("bad_prev")))


def _atoms(spec: SplitSpec, units: DataFrame) -> DataFrame:
    """What the cuts order: units, or whole groups (weight = units, stratum = the dominant one)."""
    if not spec.groups:
        return units.selectExpr("*", f"CAST(1 AS BIGINT) AS {_n('w')}")
    flags = ["null_key", "null_time", "bad_prev", "null_group", "conflict_stratum", "conflict_group"]
    sums = [f"sum({_n(f)}) AS {_n(f)}" for f in flags]
    if _n("rows") in units.columns:  # the histogram pass's row count of a unit: its groups keep the most
        sums.append(f"max({_n('rows')}) AS {_n('rows')}")
    per_stratum = units.groupBy(_n("period"), _n("gid"), _n("sid")).agg(*[F.expr(a) for a in [
        f"count(1) AS {_n('n')}", f"min({_n('chk')}) AS {_n('chk')}", f"min({_n('gh')}) AS {_n('gh')}",
        f"min({_n('prev')}) AS {_n('prev_lo')}", f"max({_n('prev')}) AS {_n('prev_hi')}", *sums,
    ]])  # fmt: skip
    # the stratum with most units wins; equal counts go to the larger stratum id (deterministic)
    order = f"CAST({_n('n')} AS DECIMAL(38,0)) * CAST({2**64} AS DECIMAL(38,0)) + CAST({_n('sid')} AS DECIMAL(38,0))"
    groups = per_stratum.groupBy(_n("period"), _n("gid")).agg(*[F.expr(a) for a in [
        f"sum({_n('n')}) AS {_n('w')}", f"max_by({_n('sid')}, {order}) AS {_n('sid')}", f"max_by({_n('chk')}, {order}) AS {_n('chk')}",
        f"min({_n('gh')}) AS {_n('h')}", f"min({_n('prev_lo')}) AS {_n('prev')}", f"max({_n('prev_hi')}) AS {_n('prev_hi')}", *sums,
        f"count(1) AS {_n('strata')}",
    ]])  # fmt: skip
    split_inside = f"coalesce(CAST({_n('prev')} != {_n('prev_hi')} AS INT), 0)"
    return groups.selectExpr(
        *[c for c in groups.columns if c != _n("bad_prev")],
        f"{_GROUP_TIE} AS {_n('tie')}",
        f"{_n('bad_prev')} + {split_inside} AS {_n('bad_prev')}",
    )


def _bucket(spec: SplitSpec, atom_hash: str) -> str:
    """Coarse bucket: top bits of the signed hash, shifted to [0, buckets); monotone in the hash."""
    return f"(shiftright({atom_hash}, {64 - spec.bits}) + {2 ** (spec.bits - 1)})"


def _along(spec: SplitSpec, atom_hash: str) -> str:
    """Where the atom's coarse bucket lies on its stratum's circle, in [0, buckets): the bucket
    minus the stratum's rotation (the top bits of its check id `chk`), modulo buckets."""
    return f"(shiftright({atom_hash}, {64 - spec.bits}) - shiftright({_n('chk')}, {64 - spec.bits})) & {2**spec.bits - 1}"


def _with_bucket_key(spec: SplitSpec, frame: DataFrame, atom_hash: str, name: str) -> DataFrame:
    """`frame` with the histogram's bucket `name`, a key sorting in hash order: the coarse
    bucket, except within NEAR_CUT coarse buckets of where a cut is expected, where it is split
    FINE_BITS finer.

    Hashes are uniform, so the arc of split j starts near hash fraction rotation + C_j / total
    (mod 1); the stratum's rotation is its check id `chk` (an independent salted hash). The
    atom's place on the circle is one column of its own, computed once per row: the test
    against the expected cuts reads it several times."""
    size, along = 2**spec.bits, _n("along")
    by_period = {}
    for p in spec.periods:
        near = [f"{along} <= {NEAR_CUT}", f"{along} >= {size - NEAR_CUT}"]
        cumulative = Fraction(0)
        for share in p.shares[:-1]:
            cumulative += share
            expected = int(cumulative * size)
            near.append(f"{along} BETWEEN {expected - NEAR_CUT} AND {expected + NEAR_CUT}")
        by_period[p.index] = " OR ".join(f"({n})" for n in near)
    fine = f"shiftright({atom_hash}, {64 - spec.bits - FINE_BITS}) + {long_sql(2 ** (spec.bits + FINE_BITS - 1))}"
    coarse = f"shiftleft({_bucket(spec, atom_hash)}, {FINE_BITS})"
    key = f"CASE WHEN {per_period(_n('period'), by_period)} THEN {fine} ELSE {coarse} END"
    placed = frame.selectExpr("*", f"{_along(spec, atom_hash)} AS {along}")
    return placed.selectExpr(*frame.columns, f"{key} AS {name}")


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


@dataclass(frozen=True)
class _Found:
    """What the histogram pass learnt about the data's shape, which the final pass exploits."""

    rows_are_units: bool  # every unit (entity, period) is a single row: no reduction needed
    groups_in_one_stratum: bool  # every group lies in one stratum: its atom needs no aggregation


def _histogram_pass(
    spec: SplitSpec, rows: DataFrame, previous: DataFrame | None
) -> tuple[dict[int, StratumHistogram], _Found]:
    """Per stratum and hash bucket: weight, count, min, max and xor of the hashes. Every data
    check runs in the same aggregation: an atom failing one lands in a sentinel bucket, and any
    such bucket is diagnosed and raised here, before any further work. The same aggregation
    finds the largest number of rows in a unit and of strata in a group (`_Found`). It is the
    JVM sketch (`_sketch`) or Spark's hash aggregation, as `HISTOGRAM_CONF` chooses: same rows."""
    units = _units(spec, rows, previous, with_values=False)
    atoms = _with_bucket_key(spec, _atoms(spec, units), _n("h"), _n("bucket"))
    checks = _checks(spec)
    bucket = f"CASE WHEN {_n('prev')} IS NOT NULL THEN -1 - {_n('prev')} ELSE {_n('bucket')} END"
    if checks:  # an atom failing a check lands in one sentinel bucket: no extra column to sum
        failed = f"greatest({', '.join([*[_n(flag) for flag in checks], '0'])}) > 0"
        bucket = f"CASE WHEN {failed} THEN {long_sql(_FAILED_BUCKET)} ELSE {bucket} END"
    keys = [*([f"{_n('period')} AS period"] if spec.out_of_time else []), f"{_n('sid')} AS sid", f"{_n('chk')} AS rotation", f"{bucket} AS bucket"]
    sums = ["w"] if spec.groups else []  # summed per histogram row, `maxes` maxed (they tell `_Found`)
    maxes = ([] if spec.one_row_per_entity else ["rows"]) + (["strata"] if spec.groups else [])
    aggregates = [
        *[f"sum({_n(c)}) AS {c}" for c in sums], "count(1) AS n",
        f"min({_n('h')}) AS hmin", f"max({_n('h')}) AS hmax", f"bit_xor({_n('h')}) AS hxor",
        *[f"max({_n(c)}) AS {c}" for c in maxes],
    ]  # fmt: skip
    started = time.perf_counter()
    sketch = scan_class(rows.sparkSession, HISTOGRAM_CONF, _SKETCH_CLASS, "spark", "Spark's aggregation for the histogram")
    table = None if sketch is None else _sketch(spec, *sketch, atoms, bucket, sums, maxes)
    if table is None:
        table = _collect_columns(atoms.groupBy(*[F.expr(k) for k in keys]).agg(*[F.expr(a) for a in aggregates]))
    collected = time.perf_counter() - started
    if checks and (table["bucket"] == _FAILED_BUCKET).any():
        raise InvalidInputError(_diagnose(spec, units, checks))
    histogram_rows = len(table["n"])
    if histogram_rows == 0:
        raise InvalidInputError(
            "df has no rows to split" + (" outside the gap" if spec.out_of_time else "") + "; check the input and filters"
        )
    found = _Found(
        rows_are_units=not spec.one_row_per_entity and int(table.pop("rows").max()) == 1,
        groups_in_one_stratum=bool(spec.groups) and int(table.pop("strata").max()) == 1,
    )
    table.setdefault("w", table["n"])  # without groups every atom weighs 1
    table.setdefault("period", np.zeros_like(table["n"]))
    _check_stratum_ids(table)
    histograms = build_histograms(table)
    log.info(
        "assign_splits: histogram pass: %d atoms in %d strata, %d histogram rows%s%s (%.2fs on Spark, %.2fs on the driver)",
        int(table["n"].sum()), len(histograms), histogram_rows,
        "; one row per unit" if found.rows_are_units else "", "; every group in one stratum" if found.groups_in_one_stratum else "",
        collected, time.perf_counter() - started - collected,
    )
    return histograms, found


def _collect_columns(frame: DataFrame) -> dict[str, np.ndarray]:
    """A small frame collected through Arrow, as one numpy array per column."""
    arrow = to_arrow(frame)
    return {name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names}


def _sketch(
    spec: SplitSpec, java: JavaClass, strict: bool, atoms: DataFrame, bucket: str, sums: list[str], maxes: list[str]
) -> dict[str, np.ndarray] | None:
    """The histogram by the JVM sketch: per partition, partial aggregates of the same groups,
    merged here. None when the sketch cannot be built and `strict` is off (use Spark's)."""
    frame = atoms.selectExpr(
        f"CAST({_n('period') if spec.out_of_time else 0} AS BIGINT)", _n("sid"), _n("chk"), f"CAST({bucket} AS BIGINT)",
        _n("h"), *[f"CAST({_n(c)} AS BIGINT) AS {c}" for c in [*sums, *maxes]],
    )
    try:
        partial = java.apply(frame._jdf.queryExecution(), spec.bits, FINE_BITS, len(sums), len(maxes),
                             _SKETCH_FLUSH_ROWS)
    except Py4JError as error:  # e.g. a Spark whose internals differ from the pinned one
        if strict:
            raise
        log.warning("assign_splits: the JVM histogram sketch failed (%s); aggregating with Spark", str(error).splitlines()[0])
        return None
    return merge_partial_histograms(_collect_columns(DataFrame(partial, atoms.sparkSession)), sums=sums, maxes=maxes)


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
    counts = atoms.agg(*[F.sum(_n(check)).alias(check) for check in checks]).first()
    assert counts is not None  # a global aggregate always returns one row
    offending = {
        "conflict_stratum": F.col(_n("sid")) != F.col(_n("sid_hi")),
        "conflict_group": F.col(_n("gid")) != F.col(_n("gid_hi")),
        "bad_prev": F.col(_n("bad_prev")) > 0,
    }
    messages = []
    for check in checks:
        if not counts[check]:
            continue
        example = None
        if check in offending:
            example = units.filter(offending[check]).select(*key_columns(spec)).first()
            if example is None and check == "bad_prev" and spec.groups:  # disagreement inside a group
                split_groups = atoms.filter(F.col(_n("bad_prev")) > 0).select(_n("period"), _n("gid"))
                example = units.join(split_groups, on=[_n("period"), _n("gid")]).select(*key_columns(spec)).first()
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
    narrowed = rows.filter(f"{_bucket(spec, atom_hash)} IN ({', '.join(map(str, coarse))})")
    if previous is not None:  # only the few entities in those buckets: no shuffle of previous
        previous = previous.join(F.broadcast(narrowed.select(*_columns(spec.keys)).distinct()), on=spec.keys, how="left_semi")
    atoms = _atoms(spec, _units(spec, narrowed, previous, with_values=False))
    pair_frame = _local_frame(
        spark, pairs, T.StructType([T.StructField(_n("sid"), T.LongType()), T.StructField(_n("bucket"), T.LongType())])
    )
    ranked = (
        _with_bucket_key(spec, atoms.where(f"{_n('prev')} IS NULL"), _n("h"), _n("bucket"))
        .selectExpr(_n("sid"), _n("bucket"), _n("h"), _n("tie"), _n("w"))
        .join(F.broadcast(pair_frame), on=[_n("sid"), _n("bucket")], how="left_semi")
        .selectExpr(
            _n("sid"), _n("bucket"),
            f"row_number() OVER (PARTITION BY {_n('sid')}, {_n('bucket')} ORDER BY {_n('h')}, {_n('tie')}) AS rank",
            _n("h"), _n("tie"), _n("w"),
        )  # fmt: skip
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


def _cut_table(spark, spec: SplitSpec, plans: dict[int, tuple[list[str], list]]) -> tuple[DataFrame, bool]:
    """One small row per stratum: each cut atom's hash (and tie, only when some cut needs one)
    and the global index of the split owning each segment (`o0` before the first cut, `o1`
    after it, ...); a missing cut is +infinity. Returns the table and whether it has ties."""
    count = _cut_count(spec)
    ties = any(isinstance(cut, Cut) and cut.tie is not None for _, cuts in plans.values() for cut in cuts)
    fields = [T.StructField(_n("sid"), T.LongType(), False)]
    fields += [T.StructField(_n(f"o{j}"), T.IntegerType(), False) for j in range(count + 1)]
    for j in range(count):
        fields.append(T.StructField(_n(f"ch{j}"), T.LongType()))
        if ties:
            fields.append(T.StructField(_n(f"ct{j}"), tie_type(spec)))
    records = []
    for sid, (owners, stratum_cuts) in plans.items():
        indexes = [spec.names.index(owner) for owner in owners]
        record: list = [sid, *indexes, *indexes[-1:] * (count + 1 - len(indexes))]
        for cut in list(stratum_cuts) + [Cut(None)] * (count - len(stratum_cuts)):
            assert isinstance(cut, Cut)
            record += [cut.hash, cut.tie] if ties else [cut.hash]
        records.append(tuple(record))
    return _local_frame(spark, records, T.StructType(fields)), ties


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


def _split_from_cuts(spec: SplitSpec, tie: str | None, h: str = _n("h")) -> str:
    """Split of an atom (hash `h`) joined to its stratum's cut row: the owner of the segment it
    falls in, or its split kept from `previous`. `tie` (None when no cut has one) is only
    evaluated for an atom whose hash equals a cut's (Spark's AND short-circuits)."""
    prev = _n("prev")
    cases = [f"WHEN {prev} IS NOT NULL THEN {prev}"]
    for j in range(_cut_count(spec)):
        ch, ct = _n(f"ch{j}"), _n(f"ct{j}")
        before = f"{ch} IS NULL OR {h} < {ch}"
        if tie is not None:
            before += f" OR ({h} = {ch} AND {ct} IS NOT NULL AND {tie} < {ct})"
        cases.append(f"WHEN {before} THEN {_n(f'o{j}')}")
    index = f"CASE {' '.join(cases)} ELSE {_n(f'o{_cut_count(spec)}')} END"
    return f"element_at(array({', '.join(string_sql(n) for n in spec.names)}), {index} + 1)"


# ---- final pass -----------------------------------------------------------------------------


def _final_pass(
    spec: SplitSpec, rows: DataFrame, previous: DataFrame | None, cut_table: DataFrame, found: _Found, ties: bool
) -> DataFrame:
    """Lazy: each atom compared with its stratum's cut atoms; no window, no sort. Rows are
    reduced to units only when the histogram pass found a unit of several rows, and units to
    groups only when it found a group spanning strata or `previous` is given (a group's new
    entities follow its kept ones)."""
    tie = (_n("tie") if spec.groups else entity_tie(spec)) if ties else None
    split = F.expr(_split_from_cuts(spec, tie)).alias(SPLIT_COLUMN)
    simple_rows = spec.per_row and not spec.groups and previous is None and not spec.exclude_train_entities
    if simple_rows:
        # every row of an entity carries the entity's stratum (validated), so rows map directly
        labelled = rows.selectExpr(
            "*", *_ids(spec)[:1], f"{entity_hash(spec)} AS {_n('h')}", f"CAST(NULL AS INT) AS {_n('prev')}",
        ).join(cut_table, on=_n("sid"))
        return labelled.select(*_columns(_caller_columns(rows)), split)
    units = _units(spec, rows, previous, with_values=True, rows_are_units=found.rows_are_units)
    if spec.groups and found.groups_in_one_stratum and previous is None:
        # each unit has its group's stratum, hash (gh) and tie (gid): what the group's atom has
        as_group = _split_from_cuts(spec, _GROUP_TIE if ties else None, h=_n("gh"))
        assigned = units.join(cut_table, on=_n("sid")).select("*", F.expr(as_group).alias(SPLIT_COLUMN))
    elif spec.groups:
        atoms = _atoms(spec, units).join(cut_table, on=_n("sid"))
        group_split = atoms.select(_n("period"), _n("gid"), split)
        assigned = units.join(group_split, on=[_n("period"), _n("gid")])
    else:
        assigned = units.join(cut_table, on=_n("sid")).select("*", split)
    if not spec.per_row:
        return assigned.select(*_columns(output_columns(spec)))
    if found.rows_are_units or spec.one_row_per_entity:  # the units are the rows, with every column
        return assigned.select(*_columns(_caller_columns(rows)), SPLIT_COLUMN)
    unit_key = [*spec.keys, _n("period")]
    joined = rows.join(assigned.select(*_columns(unit_key), SPLIT_COLUMN), on=unit_key)
    return joined.select(*_columns(_caller_columns(rows)), SPLIT_COLUMN)


def _columns(names: list[str]) -> list[Column]:
    """The columns of these names, taken literally (dots, backticks and all)."""
    return [column(name) for name in names]


def _caller_columns(frame: DataFrame) -> list[str]:
    return [c for c in frame.columns if not c.startswith(PREFIX)]
