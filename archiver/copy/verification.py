"""Check that succeeded copies are still what the ledger says they are, and record the answer.

A copy that has gone missing or changed keeps state "succeeded": the state says what the copy job
did, and the job did copy the file; re-running it cannot be decided automatically (someone may have
moved or replaced the object on purpose, and with overwrite off a re-run would hit a conflict).
Instead verified_at is cleared and error_code/error_message say what is wrong, so `archiver status`
shows it, and retention never deletes the recording from VideoSDK on the strength of that copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from archiver.copy.object import hash_stream
from archiver.domain.states import Flag, JobState
from archiver.ledger.store import JobRecord
from archiver.runtime import Runtime
from providers import ObjectNotFound, StorageError

OK, MISMATCH, MISSING, ERROR, UNPROVEN = "ok", "mismatch", "missing", "error", "unproven"


@dataclass(frozen=True)
class Verdict:
    job_id: int
    destination: str
    key: str | None
    # ok | mismatch | missing | error (could not check: nothing is recorded) | unproven (the object
    # matches the ledger, but the source never proved that the ledger has the whole file)
    result: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify_copies(runtime: Runtime, *, since: datetime | None, deep: bool = False) -> list[Verdict]:
    """Verify every succeeded job updated since `since` (all when None) and record each verdict."""
    verdicts = [_verify(runtime, job, deep) for job in runtime.ledger.jobs(state=JobState.SUCCEEDED, since=since)]
    for verdict in verdicts:
        if verdict.result == OK:
            runtime.ledger.mark_verified(verdict.job_id)
        elif verdict.result in (MISMATCH, MISSING):
            runtime.ledger.flag_copy(verdict.job_id, f"verify_{verdict.result}", verdict.detail)
    return verdicts


def problems(verdicts: Sequence[Verdict]) -> int:
    return sum(v.result != OK for v in verdicts)


def _verify(runtime: Runtime, job: JobRecord, deep: bool) -> Verdict:
    def verdict(result: str, detail: str) -> Verdict:
        return Verdict(job.job_id, job.destination, job.object_key, result, detail)

    if job.object_key is None or job.bytes is None:
        return verdict(MISMATCH, "the ledger has no key or size for this succeeded copy")
    try:
        destination = runtime.settings.destination(job.destination)
    except KeyError:
        return verdict(ERROR, f"destination {job.destination!r} is no longer configured")
    try:
        provider = runtime.provider(destination)
        info = provider.stat(job.object_key)
        if info.size != job.bytes:
            return verdict(MISMATCH, f"size: ledger {job.bytes} bytes, object {info.size} bytes")
        stored = info.checksums.get("sha256")
        if stored is not None and job.sha256 is not None and stored != job.sha256:
            return verdict(MISMATCH, f"sha256 recorded on the object {stored} differs from the ledger's {job.sha256}")
        if not deep:
            how = "sha256 from the object" if stored is not None else "size only (no sha256 on the object)"
            return _unless_unproven(verdict, job, f"{info.size} bytes; {how}")
        size, digest = _read_back(provider.open_reader(job.object_key))
    except ObjectNotFound:
        return verdict(MISSING, f"no object at {job.object_key} in {job.destination}")
    except StorageError as exc:  # denied, throttled, unreachable: we learned nothing about the copy
        return verdict(ERROR, f"{type(exc).__name__}: {exc}")
    if size != job.bytes:
        return verdict(MISMATCH, f"read back {size} bytes, ledger {job.bytes} bytes")
    if job.sha256 is not None and digest != job.sha256:
        return verdict(MISMATCH, f"read back sha256 {digest}, ledger {job.sha256}")
    return _unless_unproven(verdict, job, f"{size} bytes; read back and hashed")


def _unless_unproven(verdict: Any, job: JobRecord, detail: str) -> Verdict:
    """The object matches the ledger; but a copy whose source never proved its length may hold only
    part of the file, which no look at the copy can tell: it stays a problem until reconcile clears it."""
    if job.error_code == Flag.SIZE_UNPROVEN:
        return verdict(UNPROVEN, f"{detail}; but {job.error_message}")  # type: ignore[no-any-return]
    return verdict(OK, detail)  # type: ignore[no-any-return]


def _read_back(reader: Any) -> tuple[int, str]:
    return hash_stream(reader)
