"""`SplitParams`: everything that decides a split assignment besides the data — the one form in
which split parameters travel from a job's command line through the workflow to the algorithm.

Building one validates every argument that needs no data (ratios, seed, method, column names,
the out-of-time options); `SplitSpec.build` adds the checks against a DataFrame's schema. Its
canonical JSON is what the split registry stores and what a version's parameter hash covers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from mlv_spark.errors import InvalidInputError
from mlv_spark.splits.apportion import Ratios, parse_ratios

Method = Literal["exact", "hash"]
Columns = str | Sequence[str]


@dataclass(frozen=True)
class SplitParams:
    """Validated split parameters (see `assign_splits` for what each one means)."""

    entity_key: tuple[str, ...]
    ratios: tuple[tuple[str, float], ...]
    seed: int
    stratify_by: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    time_column: str | None = None
    cutoff: datetime | date | str | None = None
    gap: timedelta | None = None
    future_splits: tuple[str, ...] | None = None
    exclude_train_entities: bool = False
    method: Method = "exact"

    @staticmethod
    def of(
        *,
        entity_key: Columns,
        ratios: Ratios,
        seed: int,
        stratify_by: Columns | None = None,
        group_by: Columns | None = None,
        time_column: str | None = None,
        cutoff: datetime | date | str | None = None,
        gap: timedelta | None = None,
        future_splits: Sequence[str] | None = None,
        exclude_train_entities: bool = False,
        method: Method = "exact",
    ) -> SplitParams:
        """Parameters from `assign_splits`-style arguments; raises InvalidInputError on any bad one."""
        names, _ = parse_ratios(ratios)
        pairs = list(ratios.items()) if isinstance(ratios, Mapping) else list(ratios)
        if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
            raise InvalidInputError(f"seed={seed!r} must be an int that fits in 64 bits")
        if method not in ("exact", "hash"):
            raise InvalidInputError(f"method={method!r} is unknown; use 'exact' or 'hash'")
        if time_column is not None and (not isinstance(time_column, str) or not time_column):
            raise InvalidInputError(f"time_column={time_column!r} must be a column name")
        future = None if future_splits is None else tuple(column_list(future_splits, "future_splits"))
        _check_out_of_time(names, time_column, cutoff, gap, future)
        if exclude_train_entities and cutoff is None:
            raise InvalidInputError(
                "exclude_train_entities=True needs the out-of-time mode; also give time_column and cutoff"
            )
        return SplitParams(
            entity_key=tuple(column_list(entity_key, "entity_key", required=True)),
            ratios=tuple((str(n), float(v)) for n, v in pairs),
            seed=seed,
            stratify_by=tuple(column_list(stratify_by, "stratify_by")),
            group_by=tuple(column_list(group_by, "group_by")),
            time_column=time_column,
            cutoff=cutoff,
            gap=gap,
            future_splits=future,
            exclude_train_entities=bool(exclude_train_entities),
            method=method,
        )

    @property
    def split_names(self) -> list[str]:
        return [name for name, _ in self.ratios]

    @property
    def out_of_time(self) -> bool:
        return self.cutoff is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: ratios as [name, ratio] pairs (their order matters, and canonical
        JSON sorts object keys), the gap in seconds, the cutoff as text."""
        cutoff = self.cutoff.isoformat(sep=" ") if isinstance(self.cutoff, datetime) else (
            self.cutoff.isoformat() if isinstance(self.cutoff, date) else self.cutoff)
        return {
            "entity_key": list(self.entity_key),
            "ratios": [[name, ratio] for name, ratio in self.ratios],
            "seed": self.seed,
            "stratify_by": list(self.stratify_by),
            "group_by": list(self.group_by),
            "time_column": self.time_column,
            "cutoff": cutoff,
            "gap_seconds": None if self.gap is None else self.gap.total_seconds(),
            "future_splits": None if self.future_splits is None else list(self.future_splits),
            "exclude_train_entities": self.exclude_train_entities,
            "method": self.method,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> SplitParams:
        """The inverse of `to_dict` (validated again)."""
        gap = data.get("gap_seconds")
        return SplitParams.of(
            entity_key=data["entity_key"], ratios=[(str(n), float(r)) for n, r in data["ratios"]], seed=data["seed"],
            stratify_by=data.get("stratify_by") or None, group_by=data.get("group_by") or None,
            time_column=data.get("time_column"), cutoff=data.get("cutoff"),
            gap=None if gap is None else timedelta(seconds=gap), future_splits=data.get("future_splits"),
            exclude_train_entities=bool(data.get("exclude_train_entities")), method=data.get("method", "exact"),
        )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _check_out_of_time(
    names: list[str], time_column: str | None, cutoff: object, gap: object, future: tuple[str, ...] | None
) -> None:
    """The out-of-time options that need no data: a cutoff with a time column, a gap >= 0, and
    future splits that are some but not all of the splits."""
    if cutoff is None:
        if gap is not None or future is not None:
            raise InvalidInputError("gap and future_splits need a cutoff (the out-of-time mode)")
        return
    if time_column is None:
        raise InvalidInputError("cutoff needs time_column, the event time of each row")
    if not isinstance(cutoff, (str, datetime, date)):
        raise InvalidInputError(f"cutoff={cutoff!r} must be a datetime, date or timestamp string")
    if gap is not None and (not isinstance(gap, timedelta) or gap < timedelta(0)):
        raise InvalidInputError(f"gap={gap!r} must be a timedelta >= 0")
    if isinstance(gap, timedelta) and not math.isfinite(gap.total_seconds()):
        raise InvalidInputError(f"gap={gap!r} must be finite")
    chosen = list(names[1:]) if future is None else list(future)
    unknown = [f for f in chosen if f not in names]
    if unknown or not chosen or len(set(chosen)) == len(names):
        raise InvalidInputError(f"future_splits={chosen!r} must name some but not all of the splits {names}")


def column_list(value: object, what: str, *, required: bool = False) -> list[str]:
    """A column argument (a name or a sequence of names) as a list of distinct names."""
    if value is None:
        columns: list = []
    elif isinstance(value, str):
        columns = [value]
    elif isinstance(value, Sequence):
        columns = list(value)
    else:
        raise InvalidInputError(f"{what}={value!r} must be a column name or a list of them")
    if not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
        raise InvalidInputError(f"{what}={value!r} must be distinct, non-empty column names")
    if required and not columns:
        raise InvalidInputError(f"{what} is empty; name the column(s) identifying an entity")
    return columns
