"""How S3 failures map onto the provider error vocabulary: one table, classified by code and status."""

from __future__ import annotations

from botocore.exceptions import ClientError

from providers.errors import (
    AccessDenied,
    AuthenticationError,
    ConfigurationError,
    ErrorTable,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientError,
)

# Service error codes first, then (by class name, walking the MRO) botocore's own exceptions, which
# never reach the service. One table so every S3 failure is classified in one place.
ERRORS = ErrorTable(
    codes={
        "NoSuchKey": ObjectNotFound, "NoSuchVersion": ObjectNotFound,
        "NoSuchBucket": ConfigurationError, "InvalidBucketName": ConfigurationError,
        "InvalidStorageClass": ConfigurationError, "InvalidArgument": ConfigurationError,
        "InvalidRequest": ConfigurationError, "InvalidTag": ConfigurationError,
        "AccessControlListNotSupported": ConfigurationError,
        "KMS.NotFoundException": ConfigurationError, "KMS.DisabledException": ConfigurationError,
        "PermanentRedirect": ConfigurationError, "AuthorizationHeaderMalformed": ConfigurationError,
        "RequestTimeTooSkewed": ConfigurationError,
        "NotImplemented": ConfigurationError,  # e.g. a store without conditional writes (If-None-Match)
        "AccessDenied": AccessDenied, "AllAccessDisabled": AccessDenied, "AccountProblem": AccessDenied,
        "InvalidAccessKeyId": AuthenticationError, "SignatureDoesNotMatch": AuthenticationError,
        "ExpiredToken": AuthenticationError, "InvalidToken": AuthenticationError,
        "InvalidClientTokenId": AuthenticationError,  # STS's word for a bad key during AssumeRole
        "PreconditionFailed": ObjectExists,
        # A concurrent create-only write or a lost race: trying again settles it (often as ObjectExists).
        "ConditionalRequestConflict": TransientError, "OperationAborted": TransientError,
        "SlowDown": TransientError, "RequestTimeout": TransientError, "InternalError": TransientError,
        "ServiceUnavailable": TransientError, "Throttling": TransientError,
        "ThrottlingException": TransientError,
        # The upload vanished (e.g. a lifecycle rule aborted it): a fresh attempt starts a new one.
        "NoSuchUpload": TransientError,
        # Bytes changed between our checksum and S3's: corruption in transit, which a retry re-sends.
        "BadDigest": TransientError, "XAmzContentSHA256Mismatch": TransientError,
        "NoCredentialsError": AuthenticationError, "PartialCredentialsError": AuthenticationError,
        "SSLError": ConfigurationError, "ParamValidationError": ConfigurationError,
        "HTTPClientError": TransientError, "ConnectionError": TransientError,
        "ResponseStreamingError": TransientError,
        "IncompleteReadError": TransientError, "FlexibleChecksumError": IntegrityError,
    },
    statuses={301: ConfigurationError, 401: AuthenticationError, 403: AccessDenied, 404: ObjectNotFound,
              409: TransientError, 412: ObjectExists, 429: TransientError},
)


def translate(exc: Exception, what: str, bucket: str) -> StorageError:
    """Classify from the code and status only: str(exc) can carry request details, never shown."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code and code.isdigit():
            code = None  # a HEAD error has no body; botocore puts the status where the code goes
        error = ERRORS.make(code, status, what)
        if code == "NoSuchBucket":
            error = ConfigurationError(f"{error.message}: bucket {bucket!r} does not exist", code=code)
        return error
    name = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in ERRORS.codes), type(exc).__name__)
    return ERRORS.make(name, None, what)
