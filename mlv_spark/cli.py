"""Shared plumbing for jobs: common arguments, timing, and exit codes.

Exit codes: 0 success, 2 a clear error (bad input, unknown ref, conflict, missing service —
the message says what to fix), 1 anything unexpected (with a traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

from mlv_spark.errors import MlvError
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.job")


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", default=None, help="settings profile in conf/ (default: MLV_PROFILE or local)")
    return parser


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log one line when a step finishes, with its duration."""
    started = time.monotonic()
    yield
    log.info("%s done in %.1fs", name, time.monotonic() - started)


def run(main: Callable[[list[str]], int], argv: list[str] | None = None) -> None:
    """Run a job's main and exit with its code, turning project errors into one clear line."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = main(args)
    except MlvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - last resort: report and fail
        traceback.print_exc()
        code = 1
    sys.exit(code)
