"""The one error vocabulary every provider speaks.

Callers (the archive pipeline) decide what to do from the class and `retryable`, never from message
text. Each provider maps its SDK's codes and HTTP statuses onto these classes through a single table
(see `ErrorTable`), always chaining the original exception with `raise ... from exc`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class StorageError(Exception):
    """Base of every provider error. `retryable` says whether the same call may succeed later.

    `left_visible` is the key (relative to the provider's prefix, as given to `open_writer`) of an
    object a writer committed and then could neither verify nor remove: it is visible at that key
    although the write failed, and the caller must record it. None when nothing was left behind.
    """

    retryable: bool = False
    left_visible: str | None = None

    def __init__(self, message: str, *, retryable: bool | None = None, code: str | None = None,
                 left_visible: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.left_visible = left_visible
        if retryable is not None:
            self.retryable = retryable

    def annotate(self, note: str) -> None:
        """Append `note` (what happened afterwards, e.g. to the committed object) to the message."""
        self.message = f"{self.message}; {note}"
        self.args = (self.message, *self.args[1:])

    def leave_visible(self, key: str, note: str) -> None:
        """Record that the committed object at `key` is still visible, and say so in the message."""
        self.left_visible = key
        self.annotate(note)


class ObjectNotFound(StorageError, FileNotFoundError):
    pass


class ObjectExists(StorageError, FileExistsError):
    pass


class AccessDenied(StorageError, PermissionError):
    pass


class AuthenticationError(StorageError):
    pass


class ConfigurationError(StorageError, ValueError):
    pass


class MissingSecret(ConfigurationError):
    """A secret this process needs is not available here: `what` names the environment variable (or
    key file) that is unset (or unreadable). Raised when a provider makes its first client, never when
    a configuration is only loaded; `archiver config validate` reports it as a warning."""

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


class IntegrityError(StorageError):
    pass


class TransientError(StorageError):
    retryable = True


class InvalidKey(StorageError, ValueError):
    """A key that no provider should accept (empty, absolute, `..` segments, too long)."""


@dataclass(frozen=True)
class ErrorTable:
    """Maps service error codes first, then HTTP statuses, to an error class.

    One table per provider keeps translation in data rather than in scattered `if` chains.
    """

    codes: Mapping[str, type[StorageError]]
    statuses: Mapping[int, type[StorageError]]
    default: type[StorageError] = StorageError

    def classify(self, code: str | None, status: int | None) -> type[StorageError]:
        if code and code in self.codes:
            return self.codes[code]
        if status is not None:
            if status in self.statuses:
                return self.statuses[status]
            if status >= 500:
                return TransientError
        return self.default

    def make(self, code: str | None, status: int | None, what: str) -> StorageError:
        """Build the error for `what` (e.g. "write s3://bucket/key"); the message never carries secrets."""
        detail = code or (f"HTTP {status}" if status is not None else "error")
        return make_error(self.classify(code, status), detail, what)


def make_error(cls: type[StorageError], detail: str, what: str) -> StorageError:
    """One message shape for every provider: "denied: AccessDenied on s3://bucket/prefix/key"."""
    return cls(f"{_VERB.get(cls, 'failed')}: {detail} on {what}", code=detail)


_VERB: dict[type[StorageError], str] = {
    ObjectNotFound: "not found",
    ObjectExists: "already exists",
    AccessDenied: "denied",
    AuthenticationError: "authentication failed",
    ConfigurationError: "misconfigured",
    TransientError: "temporarily failed",
    IntegrityError: "integrity check failed",
}
