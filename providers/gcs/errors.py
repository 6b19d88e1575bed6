"""How GCS failures map onto the provider error vocabulary: service reason codes first, then HTTP
statuses, through one table; transport and credential failures by their exception class.

Messages never copy an exception's text: it can carry a token or a signed upload-session URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests
import urllib3
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

from providers.errors import (
    AccessDenied,
    AuthenticationError,
    ErrorTable,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientError,
    make_error,
)

_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")  # a service reason code, never free text

# Service reason codes first (errors[0]["reason"]), then HTTP statuses; 5xx are transient by default.
ERRORS = ErrorTable(
    codes={
        "notFound": ObjectNotFound, "conditionNotMet": ObjectExists, "forbidden": AccessDenied,
        "insufficientPermissions": AccessDenied, "accessNotConfigured": AccessDenied,
        "authError": AuthenticationError, "rateLimitExceeded": TransientError,
        "userRateLimitExceeded": TransientError, "backendError": TransientError,
        "internalError": TransientError,
    },
    statuses={401: AuthenticationError, 403: AccessDenied, 404: ObjectNotFound, 408: TransientError,
              410: TransientError, 412: ObjectExists, 429: TransientError},
)
_TRANSPORT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
              urllib3.exceptions.HTTPError, auth_exceptions.TransportError, api_exceptions.RetryError,
              ConnectionError, TimeoutError)


def translate(exc: BaseException, what: str) -> StorageError:
    """Map an SDK, auth or transport exception onto our vocabulary; never copies its text."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, auth_exceptions.DefaultCredentialsError | auth_exceptions.RefreshError):
        # A refresh can fail because the token endpoint is briefly down; google-auth says which.
        cls = TransientError if getattr(exc, "retryable", False) else AuthenticationError
        return make_error(cls, type(exc).__name__, what)
    if isinstance(exc, _TRANSPORT):
        return make_error(TransientError, type(exc).__name__, what)
    response = getattr(exc, "response", None)
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        first = exc.errors[0] if exc.errors and isinstance(exc.errors[0], Mapping) else {}
        return response_error(exc.code, first.get("reason"), response, what)
    return response_error(getattr(response, "status_code", None), None, response, what)


def response_error(status: int | None, reason: str | None, response: Any, what: str) -> StorageError:
    """The error for an HTTP answer; `reason` falls back to the JSON error body's first reason."""
    body: Mapping[str, Any] = {}
    try:
        parsed = response.json() if response is not None else {}
        body = parsed.get("error") or {} if isinstance(parsed, Mapping) else {}
    except (ValueError, AttributeError, TypeError):
        pass
    if reason is None and isinstance(body, Mapping) and body.get("errors"):
        reason = (body["errors"][0] or {}).get("reason")
    # GCS refuses an upload whose declared CRC32C/MD5 does not match the bytes it received with a
    # plain 400 "invalid"; only the message tells it apart from a malformed request.
    message = str(body.get("message", "")).lower() if isinstance(body, Mapping) else ""
    if status == 400 and "match" in message and ("crc32c" in message or "md5" in message):
        return make_error(IntegrityError, "checksum mismatch", what)
    code = reason if isinstance(reason, str) and _REASON.match(reason) else None
    return ERRORS.make(code, status, what)
