"""The integer arithmetic behind exact splits: no Spark, every rule on small numbers."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mlv_spark.errors import InvalidInputError
from mlv_spark.splits.apportion import (
    hash_thresholds,
    largest_remainder,
    new_entity_quotas,
    parse_ratios,
    tie_rank,
)
from mlv_spark.splits.cuts import (
    Cut,
    StratumHistogram,
    Unresolved,
    circle_cuts,
    cut_from_ranked,
    find_cut,
    merge_partial_histograms,
)

# ---- ratios ---------------------------------------------------------------------------------


def test_ratios_are_read_as_the_decimals_written_and_keep_their_order() -> None:
    names, shares = parse_ratios({"train": 0.8, "val": 0.1, "test": 0.1})
    assert names == ["train", "val", "test"]
    assert shares == [Fraction(4, 5), Fraction(1, 10), Fraction(1, 10)]


def test_ratios_within_the_tolerance_are_rescaled_to_sum_exactly_one() -> None:
    _, shares = parse_ratios([("a", 0.3333333), ("b", 0.3333333), ("c", 0.3333333)])
    assert sum(shares) == 1 and len(set(shares)) == 1


@pytest.mark.parametrize(
    "ratios, message",
    [
        ({"a": 0.5, "b": 0.4}, "sum to 0.9"),
        ({"a": 1.5, "b": -0.5}, "must be > 0"),
        ({}, "empty"),
        ([("a", 0.5), ("a", 0.5)], "appears twice"),
        ({"a": True}, "give a number"),
        ("train", "must be a mapping"),
    ],
)
def test_bad_ratios_are_refused(ratios, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_ratios(ratios)


# ---- largest remainder ----------------------------------------------------------------------


@pytest.mark.parametrize("total", [0, 1, 2, 3, 7, 10, 49, 50, 1001])
def test_largest_remainder_sums_to_the_total_and_stays_within_one_of_each_quota(total: int) -> None:
    shares = [Fraction(8, 10), Fraction(1, 10), Fraction(1, 10)]
    seats = largest_remainder(total, shares, [3, 1, 2])
    assert sum(seats) == total
    assert all(abs(s - total * q) < 1 for s, q in zip(seats, shares))


def test_largest_remainder_matches_the_textbook_rule_in_exact_fractions() -> None:
    """Integer arithmetic over a common denominator gives what Fractions give, ties included."""
    rng = np.random.default_rng(5)
    for _ in range(2_000):
        k = int(rng.integers(1, 6))
        weights = [Fraction(int(rng.integers(0, 12)), int(rng.integers(1, 12))) for _ in range(k)]
        weights[0] += Fraction(1, 7) if sum(weights) == 0 else 0
        total, ranks = int(rng.integers(0, 60)), [int(r) for r in rng.permutation(k)]
        quotas = [Fraction(total) * w / sum(weights) for w in weights]
        expected = [q.numerator // q.denominator for q in quotas]
        order = sorted(range(k), key=lambda i: (-(quotas[i] - expected[i]), ranks[i]))
        for i in order[: total - sum(expected)]:
            expected[i] += 1
        assert largest_remainder(total, weights, ranks) == expected


def test_equal_remainders_go_to_the_smaller_tie_rank_not_to_the_first_split() -> None:
    thirds = [Fraction(1, 3)] * 3
    assert largest_remainder(4, thirds, [5, 9, 1]) == [1, 1, 2]
    assert largest_remainder(4, thirds, [1, 9, 5]) == [2, 1, 1]


def test_tie_ranks_are_deterministic_and_differ_by_seed_stratum_and_split() -> None:
    assert tie_rank(7, 123, "val") == tie_rank(7, 123, "val")
    assert len({tie_rank(7, 123, "val"), tie_rank(8, 123, "val"), tie_rank(7, 124, "val"), tie_rank(7, 123, "test")}) == 4


def test_largest_remainder_is_not_monotone_in_the_total_which_sticky_growth_must_absorb() -> None:
    """The Alabama paradox: one more seat can cost a part a seat. With previous assignments that
    part may then be one over its new target; new entities fill the other deficits."""
    weights = [Fraction(6), Fraction(6), Fraction(2)]
    assert largest_remainder(10, weights, [1, 2, 3]) == [4, 4, 2]
    assert largest_remainder(11, weights, [1, 2, 3]) == [5, 5, 1]
    assert new_entity_quotas(1, old_counts=[4, 4, 2], targets=[5, 5, 1], tie_ranks=[1, 2, 3]) == [1, 0, 0]


def test_new_entities_fill_deficits_exactly_on_append_only_growth() -> None:
    assert new_entity_quotas(12, old_counts=[80, 10, 10], targets=[90, 11, 11], tie_ranks=[1, 2, 3]) == [10, 1, 1]


def test_an_overfull_split_receives_no_new_entities() -> None:
    quotas = new_entity_quotas(10, old_counts=[40, 10, 30], targets=[64, 8, 8], tie_ranks=[1, 2, 3])
    assert quotas[2] == 0 and sum(quotas) == 10


def test_hash_thresholds_cut_the_signed_64_bit_range_at_the_cumulative_shares() -> None:
    assert hash_thresholds([Fraction(1, 2), Fraction(1, 2)]) == [0]
    low, high = hash_thresholds([Fraction(8, 10), Fraction(1, 10), Fraction(1, 10)])
    assert low == (2**64 * 8) // 10 - 2**63 and high == (2**64 * 9) // 10 - 2**63


# ---- circles and cuts -----------------------------------------------------------------------


@pytest.mark.parametrize("rotation", [0, 2**62, 2**63 + 12345, 2**64 - 1])
def test_each_split_owns_one_arc_as_long_as_its_quota(rotation: int) -> None:
    total, quotas = 20, [16, 0, 2, 2]
    positions, owners = circle_cuts(total, quotas, rotation)
    bounds = [0, *positions, total]
    owned = [0] * len(quotas)
    for owner, start, end in zip(owners, bounds, bounds[1:]):
        owned[owner] += end - start
    assert owned == quotas
    assert 1 not in owners  # an empty split owns nothing


def test_without_rotation_the_arcs_start_at_the_cumulative_quotas() -> None:
    assert circle_cuts(10, [8, 1, 1], 0) == ([8, 9], [0, 1, 2])


def _histogram(buckets: list[tuple[int, ...]]) -> StratumHistogram:
    """Buckets as (weight, count, hmin, hmax[, xor of all hashes]) in hash order."""
    columns = np.array([b if len(b) == 5 else (*b, 0) for b in buckets], dtype=np.int64).T
    return StratumHistogram(1, 0, np.arange(len(buckets)), *columns)


def test_a_cut_on_a_bucket_edge_is_the_next_buckets_first_atom() -> None:
    hist = _histogram([(3, 3, 10, 30), (2, 2, 40, 50)])
    assert find_cut(hist, 3) == Cut(40)
    assert find_cut(hist, 0) == Cut(10)
    assert find_cut(hist, 5) == Cut(None)  # nothing is past the end


def test_a_cut_inside_a_two_atom_bucket_is_its_second_atom() -> None:
    assert find_cut(_histogram([(1, 1, 5, 5), (2, 2, 40, 50)]), 2) == Cut(50)


def test_the_middle_of_three_atoms_is_known_from_min_max_and_xor() -> None:
    hist = _histogram([(3, 3, 10, 40, 10 ^ 25 ^ 40)])
    assert find_cut(hist, 1) == Cut(25)
    assert find_cut(hist, 2) == Cut(40)


def test_a_cut_inside_a_bucket_of_four_atoms_needs_them_ranked() -> None:
    hist = _histogram([(4, 4, 10, 40)])
    assert find_cut(hist, 2) == Unresolved(0, 2)
    ranked = [(10, ("a",), 1), (20, ("b",), 1), (30, ("c",), 1), (40, ("d",), 1)]
    assert cut_from_ranked(hist, Unresolved(0, 2), ranked) == Cut(30)  # hashes differ: the key is not needed


def test_a_hash_collision_among_three_atoms_needs_them_ranked() -> None:
    hist = _histogram([(3, 3, 10, 30, 10 ^ 10 ^ 30)])  # two atoms share hash 10: ties decide
    assert find_cut(hist, 1) == Unresolved(0, 1)
    assert cut_from_ranked(hist, Unresolved(0, 1), [(10, ("a",), 1), (10, ("b",), 1), (30, ("c",), 1)]) == Cut(10, ("b",))


def test_weighted_atoms_go_where_their_midpoint_falls() -> None:
    groups = _histogram([(5, 1, 10, 10), (1, 1, 20, 20), (4, 1, 30, 30)])  # spans [0,5) [5,6) [6,10)
    assert find_cut(groups, 2) == Cut(10)  # midpoint 2.5 >= 2
    assert find_cut(groups, 3) == Cut(20)  # midpoint 2.5 < 3: the 5-group stays before the cut
    assert find_cut(groups, 8) == Cut(30)  # midpoint 8 >= 8


# ---- stratum ids ----------------------------------------------------------------------------


def test_a_stratum_id_standing_for_two_strata_is_refused() -> None:
    from mlv_spark.splits.exact import StratumIdCollisionError, _check_stratum_ids

    one_each = {"sid": np.array([7, 7, -3, 7]), "rotation": np.array([11, 11, 5, 11])}
    _check_stratum_ids(one_each)  # repeated rows of the same stratum are fine
    clashing = {"sid": np.array([7, -3, 7, 9]), "rotation": np.array([11, 5, 12, 1])}
    with pytest.raises(StratumIdCollisionError, match=r"stratum id\(s\) \[7\]"):
        _check_stratum_ids(clashing)


# ---- partial histograms ---------------------------------------------------------------------


def test_partial_histograms_merge_into_one_row_per_stratum_and_bucket() -> None:
    """The JVM sketch emits partial aggregates (per partition, or per flush): counts and sums
    add up, min, max and maxed columns take the extremes, xors combine."""
    column = lambda *values: np.array(values, dtype=np.int64)  # noqa: E731
    partial = {
        "period": column(0, 0, 0, 0, 0),
        "sid": column(9, -4, 9, 9, -4),
        "rotation": column(1, 2, 1, 1, 2),
        "bucket": column(5, 5, 3, 5, -1),
        "n": column(2, 1, 1, 3, 4),
        "hmin": column(10, 7, 1, 4, 8),
        "hmax": column(20, 7, 1, 30, 9),
        "hxor": column(6, 7, 1, 3, 12),
        "w": column(5, 1, 1, 3, 4),
        "rows": column(1, 2, 1, 3, 1),
    }
    merged = merge_partial_histograms(partial, sums=["w"], maxes=["rows"])
    assert {k: v.tolist() for k, v in merged.items()} == {
        "period": [0, 0, 0, 0],
        "sid": [-4, -4, 9, 9],
        "rotation": [2, 2, 1, 1],
        "bucket": [-1, 5, 3, 5],
        "n": [4, 1, 1, 5],
        "w": [4, 1, 1, 8],
        "hmin": [8, 7, 1, 4],
        "hmax": [9, 7, 1, 30],
        "hxor": [12, 7, 1, 6 ^ 3],
        "rows": [1, 2, 1, 3],
    }
    empty = {name: values[:0] for name, values in partial.items()}
    assert all(len(v) == 0 for v in merge_partial_histograms(empty, sums=["w"], maxes=["rows"]).values())
