"""The worker's half of the receiver's relay (archiver.intake.relay): one message naming a batch of
accepted copy jobs and lookups becomes one message each, with the queue and time limits Publisher
gives them. The receiver then pays for one publish per batch, not one per job.

Redelivered (a worker died mid-batch: acks_late) or sent twice, a batch is harmless: a job is claimed
only while pending. If the broker fails here, the jobs stay pending and the lease sweeper enqueues
them after [retry] requeue_after_seconds.
"""

from __future__ import annotations

from archiver.worker.app import app, publisher


@app.task(name="archiver.relay", acks_late=True, reject_on_worker_lost=True)
def relay_batch(job_ids: list[int], lookup_ids: list[int]) -> int:
    """Publish each job and lookup of a batch; returns how many messages were sent."""
    publisher.copies(job_ids)
    publisher.lookups(lookup_ids)
    return len(job_ids) + len(lookup_ids)
