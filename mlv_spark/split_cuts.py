"""Driver-side cut finding for exact splits: from a per-stratum histogram of hash buckets to cuts.

Within a stratum, atoms (entities, or groups of entities) are ordered by (salted hash, tie key).
Atom i, starting at cumulative weight c_i and weighing w_i, belongs to split j when its midpoint
c_i + w_i/2 lies in [Q_j-1, Q_j), the cumulative quotas. A *cut* is the first atom at or past Q_j;
every atom ordered at or after it is past that cut. With unit weights this places exactly the
quota in each split.

The histogram (weight, count, min and max hash per bucket of the hash's top bits, plus the
individual hashes of a few "candidate" buckets) settles almost every cut without looking at
atoms; a cut falling strictly inside a bucket of 3+ atoms that was not a candidate is
*unresolved* and needs that one bucket's atoms ranked (`cut_from_ranked`). Pure Python/numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Member:
    """One distinct hash value inside a candidate bucket (count > 1 only on a hash collision)."""

    hash: int
    count: int
    weight: int


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
    """What the driver knows about one stratum: its non-empty buckets in hash order (new atoms),
    the weight per split kept from a previous assignment, and the listed candidate buckets."""

    stratum_id: int
    period: int
    buckets: np.ndarray  # bucket index, ascending
    weights: np.ndarray
    counts: np.ndarray
    hmin: np.ndarray
    hmax: np.ndarray
    members: dict[int, list[Member]]  # bucket position -> distinct hashes, for candidate buckets
    rotation: int = 0  # seeded, unsigned 64-bit: where the circle of arcs starts
    old_weights: dict[int, int] = field(default_factory=dict)  # global split index -> weight
    old_count: int = 0
    targets: list[int] = field(default_factory=list)  # per split of the period, all atoms
    quotas: list[int] = field(default_factory=list)  # per split of the period, new atoms only

    def __post_init__(self) -> None:
        self.ends = np.cumsum(self.weights)

    @property
    def new_weight(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    @property
    def new_count(self) -> int:
        return int(self.counts.sum())

    def start(self, position: int) -> int:
        return int(self.ends[position] - self.weights[position])


def build_histograms(table: dict[str, np.ndarray]) -> dict[int, StratumHistogram]:
    """Assemble per-stratum histograms from the histogram pass's rows.

    `table` columns: sid, period, bucket (negative: -1 - split index of atoms kept from a
    previous assignment), cand (atom hash for candidate rows, else null -> `cand_valid` False),
    w, n, hmin, hmax, rotation (signed). Several rows of one bucket (one per candidate hash) are merged.
    """
    sid, bucket = table["sid"], table["bucket"]
    old = bucket < 0
    histograms: dict[int, StratumHistogram] = {}

    new = ~old
    order = np.lexsort((np.where(table["cand_valid"], table["cand"], 0)[new], bucket[new], sid[new]))
    cols = {k: v[new][order] for k, v in table.items()}
    if len(order):
        boundary = np.r_[True, (cols["sid"][1:] != cols["sid"][:-1]) | (cols["bucket"][1:] != cols["bucket"][:-1])]
        starts = np.flatnonzero(boundary)
        merged = {
            "sid": cols["sid"][starts],
            "period": cols["period"][starts],
            "bucket": cols["bucket"][starts],
            "w": np.add.reduceat(cols["w"], starts),
            "n": np.add.reduceat(cols["n"], starts),
            "hmin": np.minimum.reduceat(cols["hmin"], starts),
            "hmax": np.maximum.reduceat(cols["hmax"], starts),
            "rotation": cols["rotation"][starts],
        }
        stops = np.r_[starts[1:], len(order)]
        stratum_starts = np.flatnonzero(np.r_[True, merged["sid"][1:] != merged["sid"][:-1]])
        stratum_stops = np.r_[stratum_starts[1:], len(starts)]
        listed = cols["cand_valid"][starts]
        for lo, hi in zip(stratum_starts, stratum_stops, strict=True):
            members = {}
            for position in np.flatnonzero(listed[lo:hi]):
                rows = slice(starts[lo + position], stops[lo + position])
                members[int(position)] = [
                    Member(int(h), int(n), int(w))
                    for h, n, w in zip(cols["cand"][rows], cols["n"][rows], cols["w"][rows], strict=True)
                ]
            stratum = int(merged["sid"][lo])
            histograms[stratum] = StratumHistogram(
                stratum, int(merged["period"][lo]), merged["bucket"][lo:hi], merged["w"][lo:hi],
                merged["n"][lo:hi], merged["hmin"][lo:hi], merged["hmax"][lo:hi], members,
                int(merged["rotation"][lo]) + 2**63,
            )  # fmt: skip
    for i in np.flatnonzero(old):
        stratum = int(sid[i])
        hist = histograms.get(stratum)
        if hist is None:
            empty = np.array([], dtype=np.int64)
            hist = histograms[stratum] = StratumHistogram(
                stratum, int(table["period"][i]), empty, empty, empty, empty, empty, {}, int(table["rotation"][i]) + 2**63
            )
        split = -1 - int(bucket[i])
        hist.old_weights[split] = hist.old_weights.get(split, 0) + int(table["w"][i])
        hist.old_count += int(table["n"][i])
    return histograms


def find_cut(hist: StratumHistogram, quota: int) -> Cut | Unresolved:
    """The first atom whose midpoint is >= `quota`, decided from the histogram when possible."""
    position = int(np.searchsorted(hist.ends, quota, side="right"))  # first bucket ending past it
    if position == len(hist.ends):
        return Cut(None)
    start, weight, count = hist.start(position), int(hist.weights[position]), int(hist.counts[position])
    if start >= quota:
        return Cut(int(hist.hmin[position]))
    if count == 1:
        return Cut(int(hist.hmin[position])) if 2 * start + weight >= 2 * quota else _next_first(hist, position)
    if count == 2 and weight == 2 and hist.hmin[position] != hist.hmax[position]:
        return Cut(int(hist.hmax[position]))  # unit atoms at start and start+1; quota == start + 1
    members = hist.members.get(position)
    if members is not None:
        walked = _walk_members(members, start, quota)
        if walked is not None:
            return walked if walked.hash is not None else _next_first(hist, position)
    return Unresolved(position, quota)


def _walk_members(members: list[Member], start: int, quota: int) -> Cut | None:
    """Walk distinct hashes of a candidate bucket; None when a hash collision hides the cut."""
    position = start
    for member in members:
        if member.count == 1:
            if 2 * position + member.weight >= 2 * quota:
                return Cut(member.hash)
        elif position >= quota:
            return Cut(member.hash)
        elif position + member.weight > quota:
            return None
        position += member.weight
    return Cut(None)  # every atom of the bucket is before the cut: it is the next bucket's first


def _next_first(hist: StratumHistogram, position: int) -> Cut:
    return Cut(int(hist.hmin[position + 1])) if position + 1 < len(hist.ends) else Cut(None)


def cut_from_ranked(hist: StratumHistogram, unresolved: Unresolved, atoms: list[tuple[int, tuple, int]]) -> Cut:
    """Settle an unresolved cut from its bucket's atoms as (hash, tie, weight), in Spark's order."""
    position = hist.start(unresolved.position)
    for atom_hash, tie, weight in atoms:
        if 2 * position + weight >= 2 * unresolved.quota:
            return Cut(atom_hash, tie)
        position += weight
    return _next_first(hist, unresolved.position)


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
