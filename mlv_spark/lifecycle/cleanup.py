"""Branch hygiene: experiment branches are for experiments, deleted after their merge.

`plan_cleanup` lists the branches starting with a prefix and decides, for each, whether it may be
deleted: never the default branch or a protected one; merged branches (no commits or uncommitted
changes that the target lacks) older than a minimum age; unmerged work only when forced. Tags
are never touched. `apply_cleanup` deletes what the plan allows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.lifecycle")


@dataclass(frozen=True)
class BranchReport:
    branch: str
    head: str
    age_days: float
    merged: bool
    action: str  # "delete" or "keep"
    reason: str

    def row(self) -> str:
        state = "merged" if self.merged else "UNMERGED"
        return f"{self.branch:<40} {self.head[:12]}  {self.age_days:7.1f} d  {state:<9} {self.action:<6} {self.reason}"


def plan_cleanup(lakefs: LakeFS, *, prefix: str, target: str, older_than_days: float = 0.0,
                 force: bool = False, now: float | None = None) -> list[BranchReport]:
    """What cleaning up the branches starting with `prefix` would do (nothing is changed)."""
    now = time.time() if now is None else now
    protected = set(lakefs.protected_branches())
    reports = []
    for branch, head in sorted(lakefs.branches(prefix).items()):
        age = max(0.0, (now - lakefs.get_commit(head).creation_date) / 86400)
        if branch == lakefs.default_branch or branch == target or branch in protected:
            reports.append(BranchReport(branch, head, age, True, "keep", "the default, target or a protected branch"))
            continue
        merged = not lakefs.has_unmerged_changes(branch, target)
        if age < older_than_days:
            action, reason = "keep", f"younger than {older_than_days:g} days"
        elif merged:
            action, reason = "delete", f"everything on it is in {target}"
        elif force:
            action, reason = "delete", "unmerged work, deleted because of --force"
        else:
            action, reason = "keep", f"holds work that {target} lacks (merge it, or pass --force to discard it)"
        reports.append(BranchReport(branch, head, age, merged, action, reason))
    return reports


def apply_cleanup(lakefs: LakeFS, reports: list[BranchReport]) -> list[str]:
    """Delete the branches the plan marks for deletion; returns their names."""
    deleted = []
    for report in reports:
        if report.action == "delete":
            lakefs.delete_branch(report.branch)
            deleted.append(report.branch)
    return deleted


def as_dicts(reports: list[BranchReport]) -> list[dict]:
    return [asdict(r) for r in reports]
