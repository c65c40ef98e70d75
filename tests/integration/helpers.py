"""Helpers for integration tests: running jobs through spark-submit.sh like a user would."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Everything the job printed (spark-submit merges the Python driver's stderr into stdout)."""
        return self.stdout + self.stderr


def run_job(job: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> JobResult:
    """Run `./spark-submit.sh jobs/<job>.py args…` with the test session's MLV_* environment
    (plus `env`)."""
    proc = subprocess.run(
        [str(REPO_ROOT / "spark-submit.sh"), f"jobs/{job}.py", *args],
        cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )
    return JobResult(proc.returncode, proc.stdout, proc.stderr)
