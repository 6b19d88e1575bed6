"""Which copy failures are worth another attempt: the failure types a copy raises and ``classify``.

When the next attempt runs is archiver.retry's (one backoff for every retry in the product). Pure of
SDKs and Celery: a provider's failure arrives as providers' StorageError vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from archiver.copy.source.opener import SourceError
from archiver.domain.templates import RenderError
from archiver.retry import Decided
from providers import IntegrityError, ObjectExists, StorageError

__all__ = ["Conflict", "Failure", "FileTooLarge", "LeaseLost", "classify"]


class Conflict(Exception):
    """A different object already sits at the destination key and overwrite is off."""

    code = "conflict"


class FileTooLarge(Exception):
    """The file is larger than [source] max_file_bytes (by VideoSDK's size, the source's length or the
    bytes it sent): refused for good, with nothing left at the destination."""

    code = "file_too_large"


class LeaseLost(Exception):
    """Another worker owns the job now (ours expired); stop without touching the ledger."""


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    retryable: bool


def classify(exc: BaseException, *, attempt: int) -> Failure:
    if isinstance(exc, Conflict):
        return Failure("conflict", str(exc), False)
    if isinstance(exc, FileTooLarge):
        return Failure("file_too_large", str(exc), False)
    if isinstance(exc, Decided):
        return Failure(exc.code, str(exc), exc.retryable)
    if isinstance(exc, IntegrityError):
        # Corruption in flight is retried once; a second mismatch points at something persistent.
        return Failure("integrity", exc.message, attempt < 2)
    if isinstance(exc, ObjectExists):  # lost a create-only race: the next attempt adopts it or says conflict
        return Failure("exists", exc.message, True)
    if isinstance(exc, StorageError):
        return Failure(exc.code or type(exc).__name__, exc.message, exc.retryable)
    if isinstance(exc, SourceError):
        # Source codes are short ("not_found", "changed"); the ledger's say the download failed:
        # source_not_found, source_changed. A code already so named is not prefixed twice.
        code = exc.code if exc.code.startswith("source_") else f"source_{exc.code}"
        return Failure(code, str(exc), exc.retryable)
    if isinstance(exc, RenderError):
        return Failure("template", str(exc), False)
    # Celery's SoftTimeLimitExceeded, recognised by name so this module stays free of Celery.
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "SoftTimeLimitExceeded":
        return Failure("timeout", "the copy ran past its time limit", True)
    if isinstance(exc, AssertionError | TypeError | AttributeError | NameError):
        # A broken invariant in our own code: the same input breaks it again on every attempt, so
        # burning the attempt budget on it only hides the bug behind hours of retries.
        return Failure("internal", f"{type(exc).__name__}: {exc} (a bug: report it; `archiver retry` once fixed)",
                       False)
    # Anything else is an unforeseen condition (a dropped database connection, say): retry within
    # the attempt budget, loudly.
    return Failure("internal", f"{type(exc).__name__}: {exc}", True)
