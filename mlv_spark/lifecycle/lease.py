"""One run at a time on an experiment branch: a lease object on the branch itself.

Before a run writes, it uploads `_mlv/lease.json` with If-None-Match (atomic in lakeFS) and
refreshes it while it works; the object is removed before the commit, so it is never committed
or merged. A second run of the same work finds the lease and stops — unless the holder is gone:
on the same host its process no longer exists, elsewhere it has not refreshed the lease for
`STALE_SECONDS` — then the lease is taken over (a crashed run is resumed at once on its host).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from mlv_spark.errors import LakeFSError, RefNotFoundError
from mlv_spark.lakefs import LakeFS
from mlv_spark.log import get_logger

log = get_logger("mlv_spark.lifecycle")

LEASE_PATH = "_mlv/lease.json"
REFRESH_SECONDS = 20.0
STALE_SECONDS = 120.0


class BranchBusy(LakeFSError):
    """Another live run holds the experiment branch."""


class Lease:
    """The lease of this run on `branch` (take, keep refreshed, release)."""

    def __init__(self, lakefs: LakeFS, branch: str):
        self.lakefs, self.branch = lakefs, branch
        self.holder = {"run": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _body(self) -> bytes:
        return json.dumps({**self.holder, "seen": time.time()}).encode()

    def take(self) -> None:
        """Hold the branch, or a BranchBusy naming the live holder."""
        if not self.lakefs.put_object_if_absent(self.branch, LEASE_PATH, self._body()):
            current = self._current()
            if current is not None and _alive(current):
                raise BranchBusy(
                    f"another run is working on branch {self.branch!r} (host {current.get('host')}, pid "
                    f"{current.get('pid')}, last seen {time.time() - float(current.get('seen', 0)):.0f}s ago); wait "
                    f"for it to finish, or rerun once it is gone (a lease older than {STALE_SECONDS:.0f}s is taken over)")
            log.info("lifecycle: taking over the lease of %s from a run that is gone (%s)", self.branch, current)
            self.lakefs.delete_object(self.branch, LEASE_PATH)
            if not self.lakefs.put_object_if_absent(self.branch, LEASE_PATH, self._body()):
                raise BranchBusy(f"another run took branch {self.branch!r} at the same moment; rerun later")
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh, name="mlv-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop refreshing and remove the lease object (before a commit: it is never committed).
        BranchBusy when another run took the lease meanwhile: this run must not commit."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # a refresh in flight lands before the delete below
            self._thread = None
        current = self._current()
        if current is not None and current.get("run") == self.holder["run"]:
            self.lakefs.delete_object(self.branch, LEASE_PATH)
        elif self.lost or current is not None:
            raise BranchBusy(f"another run took over branch {self.branch!r} while this one worked (this run was "
                             "silent too long); nothing was committed: rerun once that run has finished")

    def _current(self) -> dict | None:
        """The lease on the branch now (None when there is none)."""
        try:
            return json.loads(self.lakefs.read_object(self.branch, LEASE_PATH))
        except RefNotFoundError:
            return None
        except ValueError:  # not ours to read: treat as held by someone else
            return {"run": None}

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                current = self._current()
                if current is None or current.get("run") != self.holder["run"]:
                    self.lost = True  # taken over: stop, and refuse to commit (release says so)
                    log.warning("lifecycle: the lease of %s was taken over by another run", self.branch)
                    return
                self.lakefs.put_object(self.branch, LEASE_PATH, self._body(), "application/json")
            except Exception as exc:  # noqa: BLE001 - the run itself reports lakeFS failures
                log.warning("lifecycle: could not refresh the lease of %s: %s", self.branch, exc)


def _alive(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname():
        if int(holder.get("pid", 0)) == os.getpid():  # an earlier run of this very process: it has ended
            return False
        try:
            os.kill(int(holder.get("pid", 0)), 0)
        except (ProcessLookupError, ValueError, OverflowError):
            return False
        except PermissionError:
            return True
        return int(holder.get("pid", 0)) > 0
    return time.time() - float(holder.get("seen", 0)) < STALE_SECONDS
