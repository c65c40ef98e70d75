"""Integer arithmetic behind exact splits: ratio parsing, largest-remainder targets, quotas.

Pure Python (no Spark): every number here is an exact integer or Fraction, so a target never
depends on float rounding, partitioning or the machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from mlv_spark.errors import InvalidInputError

#: How far the ratios may sum from 1 before we refuse them; they are then rescaled to sum exactly 1.
RATIO_SUM_TOLERANCE = 1e-6

Ratios = Mapping[str, float] | Sequence[tuple[str, float]]


def parse_ratios(ratios: Ratios) -> tuple[list[str], list[Fraction]]:
    """Validate `ratios` and return split names (in the given order) and exact shares summing to 1.

    A float is read as the decimal the user wrote (0.1 -> 1/10), so 0.8/0.1/0.1 is exactly 8:1:1.
    """
    if isinstance(ratios, Mapping):
        pairs = list(ratios.items())
    elif isinstance(ratios, Sequence) and not isinstance(ratios, (str, bytes)):
        pairs = list(ratios)
        if not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            raise InvalidInputError(
                f"ratios={ratios!r} must be a mapping like {{'train': 0.8, 'test': 0.2}} "
                "or a sequence of (name, ratio) pairs"
            )
    else:
        raise InvalidInputError(
            f"ratios={ratios!r} must be a mapping like {{'train': 0.8, 'test': 0.2}}"
        )
    if not pairs:
        raise InvalidInputError("ratios is empty; give at least one split, e.g. {'train': 1.0}")
    names: list[str] = []
    shares: list[Fraction] = []
    for name, ratio in pairs:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"split name {name!r} must be a non-empty string")
        if name in names:
            raise InvalidInputError(
                f"split name {name!r} appears twice in ratios; give each split once"
            )
        names.append(name)
        shares.append(_exact_ratio(name, ratio))
    total = sum(shares, Fraction(0))
    if abs(float(total) - 1.0) > RATIO_SUM_TOLERANCE:
        raise InvalidInputError(
            f"ratios sum to {float(total):.9g}, not 1 (tolerance {RATIO_SUM_TOLERANCE:g}); "
            f"rescale {dict(pairs)!r} so they sum to 1"
        )
    return names, [s / total for s in shares]


def _exact_ratio(name: str, ratio: object) -> Fraction:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, Fraction, Decimal)):
        raise InvalidInputError(f"ratio of split {name!r} is {ratio!r}; give a number > 0")
    if isinstance(ratio, float):
        if not math.isfinite(ratio):
            raise InvalidInputError(f"ratio of split {name!r} is {ratio!r}; give a finite number > 0")
        value = Fraction(repr(ratio))
    else:
        value = Fraction(ratio)
    if value <= 0:
        raise InvalidInputError(
            f"ratio of split {name!r} is {ratio!r}; every ratio must be > 0 (drop the split instead)"
        )
    return value


def tie_rank(seed: int, stratum_id: int, split: str) -> int:
    """Deterministic, seeded order among splits whose remainders tie in one stratum.

    A fixed order (say, 'first split listed wins') would hand every tied seat of every small
    stratum to the same split; a seeded hash spreads them without favouring any split.
    """
    digest = hashlib.blake2b(f"{seed}|{stratum_id}|{split}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def largest_remainder(total: int, weights: Sequence[Fraction | int], tie_ranks: Sequence[int]) -> list[int]:
    """Apportion `total` seats over `weights` by largest remainder (Hamilton's method).

    Each part gets floor(total * share); the seats left over go to the largest fractional
    remainders, ties broken by the smaller `tie_ranks` value. Parts always sum to `total` and each
    is within 1 of its exact quota.
    """
    # integers over a common denominator: quota_i = total * parts_i / whole, exactly
    denominator = math.lcm(*(Fraction(w).denominator for w in weights))
    parts = [int(Fraction(w) * denominator) for w in weights]
    whole = sum(parts)
    if total == 0 or whole == 0:
        return [0] * len(weights)
    seats = [total * part // whole for part in parts]
    remainders = [total * part % whole for part in parts]  # fractional remainders, times `whole`
    leftover = total - sum(seats)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], tie_ranks[i]))
    for i in order[:leftover]:
        seats[i] += 1
    return seats


def new_entity_quotas(
    total_new: int, old_counts: Sequence[int], targets: Sequence[int], tie_ranks: Sequence[int]
) -> list[int]:
    """How many of `total_new` new entities each split receives, given what it already holds.

    Existing entities never move. Each split's deficit is max(0, target - old); new entities fill
    deficits exactly when they sum to `total_new` (append-only growth), otherwise (a split already
    over target after deletions or stratum changes) in proportion to the deficits by largest
    remainder, so an overfull split receives nothing.
    """
    deficits = [max(0, t - o) for t, o in zip(targets, old_counts, strict=True)]
    if sum(deficits) == total_new:
        return deficits
    return largest_remainder(total_new, deficits, tie_ranks)


def hash_thresholds(shares: Sequence[Fraction]) -> list[int]:
    """Signed 64-bit thresholds cutting the hash range at the cumulative shares (hash mode).

    Entity goes to split j when threshold[j-1] <= hash < threshold[j]; the last split takes the
    rest, so only len(shares) - 1 thresholds are returned.
    """
    thresholds = []
    cumulative = Fraction(0)
    for share in shares[:-1]:
        cumulative += share
        thresholds.append(math.floor(cumulative * 2**64) - 2**63)
    return thresholds
