"""The states a copy job, one attempt and a lookup can be in, and the flags a succeeded copy can carry.

Each is a ``str`` enum: a member *is* its ledger value (``JobState.PENDING == "pending"``), so the
values stored in the database, printed by ``archiver status`` and accepted on the command line are
unchanged, and SQL compares members as the plain strings. Pure: the standard library only.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CLEARED_BY_VERIFY", "VERIFY_CODES", "AttemptOutcome", "Flag", "JobState", "LookupState", "RunResult"]


class JobState(StrEnum):
    """A copy job's state (``copy_jobs.state``).

    pending -> running -> succeeded | failed, or back to pending for a retry; held waits for the
    customer's storage as a source (the file has no URL we may read)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HELD = "held"


class AttemptOutcome(StrEnum):
    """How one attempt ended (``job_attempts.outcome``); lost: its worker stopped under an expired lease."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    LOST = "lost"


class RunResult(StrEnum):
    """What one run of a copy job ended with, as the worker sees it (``JobOutcome.state``).

    pending: failed and will retry (``retry_in`` set); lost: another worker owns the job now;
    missing: the job is not pending yet (its row may still be committing); busy: another worker's lease
    may still run (``retry_in`` says when it ends); skipped: nothing to do."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    MISSING = "missing"
    BUSY = "busy"
    SKIPPED = "skipped"


class LookupState(StrEnum):
    """A durable lookup's state (``lookups.state``); skipped is a run's result only (never stored)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class Flag(StrEnum):
    """Error codes that mark a job without changing its state (a succeeded copy stays succeeded)."""

    VERIFY_MISMATCH = "verify_mismatch"  # `verify` read the object back: other bytes than recorded
    VERIFY_MISSING = "verify_missing"  # `verify` found no object at the key
    # The source never proved its length (no Content-Length, chunked end, Content-Range total or
    # VideoSDK size): set by the copy job, cleared by reconcile once VideoSDK's size agrees.
    SIZE_UNPROVEN = "size_unproven"
    SIZE_MISMATCH = "size_mismatch"  # reconcile: VideoSDK reports another size than the copy has
    # The destination would not let us read back after the commit (write-only credentials): set by
    # the copy job, cleared by `archiver verify` once it can read the object.
    UNVERIFIED = "unverified"
    CUSTOMER_STORAGE = "customer_storage"  # held: the file is only in the customer's own storage


VERIFY_CODES = (Flag.VERIFY_MISMATCH, Flag.VERIFY_MISSING)  # the codes only `verify` sets and clears
CLEARED_BY_VERIFY = (*VERIFY_CODES, Flag.UNVERIFIED)
