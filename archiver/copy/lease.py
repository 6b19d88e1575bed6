"""The lease a copy job holds while it runs: renewed in the background, checked between writes."""

from __future__ import annotations

import logging
import threading
import time

from archiver.copy.errors import LeaseLost
from archiver.runtime import Runtime

log = logging.getLogger("archiver.copy")


class LeaseKeeper:
    """Renews the job's lease while a copy runs; flags `lost` if another worker took it over."""

    def __init__(self, runtime: Runtime, job_id: int, worker: str) -> None:
        self.runtime, self.job_id, self.worker = runtime, job_id, worker
        self.lost = False
        self.done: int | None = None  # bytes copied so far, set by the copy loop; recorded at each renewal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def _run(self) -> None:
        lease = self.runtime.lease.total_seconds()
        last_renewed = time.monotonic()
        while not self._stop.wait(lease / 3):
            try:
                renewed = self.runtime.ledger.renew(self.job_id, self.worker, self.runtime.lease, done=self.done)
            except Exception:  # a locked or dropped database: keep trying while the lease may still be ours
                log.warning("job %s: lease renewal failed; retrying", self.job_id, exc_info=True,
                            extra={"job_id": self.job_id})
                if time.monotonic() - last_renewed >= lease:
                    self.lost = True
                    return
                continue
            if not renewed:  # another worker took the job over
                self.lost = True
                return
            last_renewed = time.monotonic()

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(f"job {self.job_id}: lease taken over by another worker")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
