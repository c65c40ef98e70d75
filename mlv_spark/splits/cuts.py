"""Driver-side cut finding for exact splits: from a per-stratum histogram of hash buckets to cuts.

Within a stratum, atoms (entities, or groups of entities) are ordered by (salted hash, tie key)
and closed into a circle. Atom i, starting at cumulative weight c_i and weighing w_i, belongs to
the split whose arc contains its midpoint c_i + w_i/2 (`circle_cuts`). A *cut* is the first
atom at or past an arc's start; with unit weights each split receives exactly its quota.

The histogram gives, per bucket of hash values, the atoms' total weight, count, and the min,
max and xor of their hashes; buckets are coarse, except near where a cut is expected, where they
are fine enough to hold an atom or two. That settles almost every cut without looking at atoms;
a cut falling strictly inside a bucket of 4+ atoms is *unresolved* and needs that one bucket's
atoms ranked (`cut_from_ranked`). Pure Python/numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Cut:
    """First atom past a cut: (hash, tie). hash None means +infinity (no atom is past the cut);
    tie None means -infinity (every atom with this hash is past it)."""

    hash: int | None
    tie: tuple | None = None


@dataclass(frozen=True)
class Unresolved:
    """The cut lies strictly inside the bucket at `position`; its atoms must be ranked."""

    position: int
    quota: int


@dataclass
class StratumHistogram:
    """What the driver knows about one stratum: its non-empty buckets in hash order (new atoms
    only) and the weight per split kept from a previous assignment."""

    stratum_id: int
    period: int
    buckets: np.ndarray  # bucket keys, ascending = hash order
    weights: np.ndarray
    counts: np.ndarray
    hmin: np.ndarray
    hmax: np.ndarray
    hxor: np.ndarray  # xor of the bucket's hashes: with min and max it names the middle of three
    rotation: int = 0  # seeded, unsigned 64-bit: where the stratum's circle of arcs starts
    old_weights: dict[int, int] = field(default_factory=dict)  # global split index -> weight
    old_count: int = 0
    targets: list[int] = field(default_factory=list)  # per split of the period, all atoms
    quotas: list[int] = field(default_factory=list)  # per split of the period, new atoms only

    def __post_init__(self) -> None:
        self.ends = np.cumsum(self.weights)

    @property
    def new_weight(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def start(self, position: int) -> int:
        return int(self.ends[position] - self.weights[position])


def build_histograms(table: dict[str, np.ndarray]) -> dict[int, StratumHistogram]:
    """Assemble per-stratum histograms from the histogram pass's rows, one per (stratum, bucket).

    `table` columns: sid, period, rotation, bucket (negative: -1 - split index of atoms kept from
    a previous assignment), w, n, hmin, hmax, hxor.
    """
    sid, bucket = table["sid"], table["bucket"]
    old = bucket < 0
    histograms: dict[int, StratumHistogram] = {}
    new = np.flatnonzero(~old)
    new = new[np.lexsort((bucket[new], sid[new]))]
    if len(new):
        cols = {name: column[new] for name, column in table.items()}
        starts = np.flatnonzero(np.r_[True, cols["sid"][1:] != cols["sid"][:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(new)], strict=True):
            stratum = int(cols["sid"][lo])
            histograms[stratum] = StratumHistogram(
                stratum, int(cols["period"][lo]), cols["bucket"][lo:hi], cols["w"][lo:hi], cols["n"][lo:hi],
                cols["hmin"][lo:hi], cols["hmax"][lo:hi], cols["hxor"][lo:hi], _unsigned(cols["rotation"][lo]),
            )  # fmt: skip
    empty = np.array([], dtype=np.int64)
    for i in np.flatnonzero(old):
        stratum = int(sid[i])
        hist = histograms.get(stratum)
        if hist is None:
            hist = histograms[stratum] = StratumHistogram(
                stratum, int(table["period"][i]), empty, empty, empty, empty, empty, empty, _unsigned(table["rotation"][i])
            )
        split = -1 - int(bucket[i])
        hist.old_weights[split] = hist.old_weights.get(split, 0) + int(table["w"][i])
        hist.old_count += int(table["n"][i])
    return histograms


def merge_partial_histograms(table: dict[str, np.ndarray], *, sums: list[str], maxes: list[str]) -> dict[str, np.ndarray]:
    """One row per (period, sid, rotation, bucket) from partial aggregates of them (the JVM
    sketch emits one per partition, or more): counts and `sums` added, min, max and `maxes`
    maxed, xors xored. Rows come out sorted by period, sid, rotation and bucket."""
    keys = ("period", "sid", "rotation", "bucket")
    varying = [k for k in keys if len(table[k]) and (table[k] != table[k][0]).any()]  # period rarely does
    order = np.lexsort(tuple(table[k] for k in reversed(varying))) if varying else np.arange(len(table["n"]))
    rows = {name: column[order] for name, column in table.items()}
    if not len(order):
        return rows
    changed = np.zeros(len(order), dtype=bool)
    changed[0] = True
    for k in keys:
        changed[1:] |= rows[k][1:] != rows[k][:-1]
    starts = np.flatnonzero(changed)
    merged = {k: rows[k][starts] for k in keys}
    for name in ["n", *sums]:
        merged[name] = np.add.reduceat(rows[name], starts)
    merged["hmin"] = np.minimum.reduceat(rows["hmin"], starts)
    merged["hmax"] = np.maximum.reduceat(rows["hmax"], starts)
    merged["hxor"] = np.bitwise_xor.reduceat(rows["hxor"], starts)
    for name in maxes:
        merged[name] = np.maximum.reduceat(rows[name], starts)
    return merged


def _unsigned(value: np.integer) -> int:
    return int(value) + 2**63


def circle_cuts(total: int, quotas: list[int], rotation: int) -> tuple[list[int], list[int]]:
    """Where the splits' arcs start on a stratum's circle of `total` weight, and who owns what.

    Split j owns the arc [offset + C_j, offset + C_j+1) (mod total), C_j the cumulative quotas,
    offset = floor(rotation / 2**64 * total) for a seeded unsigned 64-bit `rotation`. Returns
    the arc starts inside (0, total), ascending, and the split index owning each segment
    [0, p1), [p1, p2), ... A seeded rotation instead of starting every stratum at 0 keeps the
    expected size of every split exactly proportional when atoms are groups of several entities
    (on a line the first and last splits would lose at the ends); with single entities the
    counts are exact either way.
    """
    starts = [sum(quotas[:j]) for j in range(len(quotas))]
    owners = [j for j, q in enumerate(quotas) if q > 0]
    if total == 0 or not owners:
        return [], [owners[0] if owners else 0]
    offset = (rotation * total) >> 64
    positions = sorted({(offset + starts[j]) % total for j in owners} - {0})

    def owner(position: int) -> int:
        along = (position - offset) % total
        return next(j for j in owners if starts[j] <= along < starts[j] + quotas[j])

    return positions, [owner(p) for p in [0, *positions]]


def find_cut(hist: StratumHistogram, quota: int) -> Cut | Unresolved:
    """The first atom whose midpoint is >= `quota`, decided from the histogram when possible."""
    position = int(np.searchsorted(hist.ends, quota, side="right"))  # first bucket ending past it
    if position == len(hist.ends):
        return Cut(None)
    start, weight, count = hist.start(position), int(hist.weights[position]), int(hist.counts[position])
    low, high = int(hist.hmin[position]), int(hist.hmax[position])
    if start >= quota:
        return Cut(low)
    if count == 1:
        return Cut(low) if 2 * start + weight >= 2 * quota else _next_first(hist, position)
    if count == 2 and weight == 2 and low != high:
        return Cut(high)  # unit atoms at start and start+1; quota == start + 1
    if count == 3 and weight == 3:  # unit atoms at start, start+1, start+2
        middle = int(hist.hxor[position] ^ hist.hmin[position] ^ hist.hmax[position])
        if low < middle < high:
            return Cut(middle if quota == start + 1 else high)
    return Unresolved(position, quota)


def _next_first(hist: StratumHistogram, position: int) -> Cut:
    return Cut(int(hist.hmin[position + 1])) if position + 1 < len(hist.ends) else Cut(None)


def cut_from_ranked(hist: StratumHistogram, unresolved: Unresolved, atoms: list[tuple[int, tuple, int]]) -> Cut:
    """Settle an unresolved cut from its bucket's atoms as (hash, tie, weight), in Spark's order."""
    position = hist.start(unresolved.position)
    before = None  # the previous atom's hash: the tie matters only when it is the same
    for atom_hash, tie, weight in atoms:
        if 2 * position + weight >= 2 * unresolved.quota:
            return Cut(atom_hash, tie if atom_hash == before else None)
        position += weight
        before = atom_hash
    return _next_first(hist, unresolved.position)
