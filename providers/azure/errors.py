"""Azure Blob error translation: one table keyed on the service's error codes, then HTTP statuses.

Messages are built only from the error code and our own az:// description. `str(exc)` of an Azure
SDK error can carry the request URL, and with a SAS credential that URL holds the signature.
"""

from __future__ import annotations

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)

from providers.errors import (
    AccessDenied,
    AuthenticationError,
    ConfigurationError,
    ErrorTable,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientError,
    make_error,
)

TABLE = ErrorTable(
    codes={
        "BlobNotFound": ObjectNotFound,
        # ContainerNotFound gets its own message below; it is listed so the class is right either way.
        "ContainerNotFound": ConfigurationError,
        "ContainerBeingDeleted": ConfigurationError,
        "ContainerDisabled": ConfigurationError,
        # Create-only writes: Put Blob answers 409 BlobAlreadyExists, Put Block List with
        # If-None-Match: * answers 412 ConditionNotMet on Azure (Azurite answers 409 for both).
        "BlobAlreadyExists": ObjectExists,
        "ConditionNotMet": ObjectExists,
        "AuthorizationFailure": AccessDenied,
        "AuthorizationPermissionMismatch": AccessDenied,
        "AuthorizationResourceTypeMismatch": AccessDenied,
        "AuthorizationServiceMismatch": AccessDenied,
        "AuthorizationProtocolMismatch": AccessDenied,
        "AuthorizationSourceIPMismatch": AccessDenied,
        "InsufficientAccountPermissions": AccessDenied,
        "KeyBasedAuthenticationNotPermitted": AccessDenied,
        "AccountIsDisabled": AccessDenied,
        "AuthenticationFailed": AuthenticationError,
        "NoAuthenticationInformation": AuthenticationError,
        "InvalidAuthenticationInfo": AuthenticationError,
        "ServerBusy": TransientError,
        "OperationTimedOut": TransientError,
        "InternalError": TransientError,
        # A block or blob whose bytes did not match the MD5 we sent was corrupted in transit and
        # rejected before it could be stored: sending it again is the right reaction.
        "Md5Mismatch": TransientError,
        "Crc64Mismatch": TransientError,
        # Wrong option values reach the service as headers (tier, tags, metadata, API version).
        "InvalidHeaderValue": ConfigurationError,
        "InvalidQueryParameterValue": ConfigurationError,
        "UnsupportedHeader": ConfigurationError,
        "InvalidBlobTier": ConfigurationError,
        "InvalidMetadata": ConfigurationError,
        "InvalidResourceName": ConfigurationError,
        "InvalidUri": ConfigurationError,
    },
    statuses={401: AuthenticationError, 403: AccessDenied, 404: ObjectNotFound, 408: TransientError,
              429: TransientError},
)

# Azurite rejects a bad SharedKey or SAS signature with 403 AuthorizationFailure and the message
# Azure uses for AuthenticationFailed; Azure's own AuthorizationFailure never says "authenticate".
_AZURITE_AUTH_REASON = "failed to authenticate"


def error_code(exc: HttpResponseError) -> str | None:
    """The service's code as a plain str (the SDK gives either a str or a StorageErrorCode enum)."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code)) if code else None


def translate(exc: BaseException, what: str, *, reading: bool = False) -> StorageError:
    """Map an Azure SDK exception about `what` (an az:// URL) onto the shared error vocabulary."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ServiceRequestError | ServiceResponseError | IncompleteReadError):
        # The connection failed or broke mid-answer (after the SDK's own retries): try again later.
        return make_error(TransientError, type(exc).__name__, what)
    if isinstance(exc, HttpResponseError):
        code, status = error_code(exc), exc.status_code
        if code == "AuthorizationFailure" and _AZURITE_AUTH_REASON in (exc.reason or "").lower():
            return make_error(AuthenticationError, code, what)
        if code == "ContainerNotFound":
            return ConfigurationError(f"misconfigured: the container does not exist (ContainerNotFound) "
                                      f"on {what}", code=code)
        if reading and code == "ConditionNotMet":
            # The downloader pins the ETag of its first chunk: the blob was replaced while being read.
            return make_error(TransientError, code, what)
        if isinstance(exc, ClientAuthenticationError) and not code and status is None:
            return make_error(AuthenticationError, type(exc).__name__, what)  # e.g. no Azure AD token
        return TABLE.make(code, status, what)
    # Anything else (an AzureError without a response, or a bug surfacing mid-read) stays unclassified.
    return make_error(StorageError, type(exc).__name__, what)
