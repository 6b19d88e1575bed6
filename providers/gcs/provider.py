"""Google Cloud Storage through the JSON API (google-cloud-storage for metadata calls, its authorized
requests session for the upload-session and download bytes).

Checksums in `ObjectInfo.checksums` are lowercase hex, like `sha256`: "crc32c" is the 8-digit
big-endian CRC32C and "md5" the 32-digit MD5 (absent for composite objects), both decoded from the
base64 the service reports; "sha256" is the hex digest the writer stored in the object's metadata
(single-request writes only: a resumable write cannot set metadata once its bytes are known).

Writes: see providers/gcs_upload.py; errors: providers/gcs_errors.py. Reads are one streaming GET
whose CRC32C is checked against the service's `X-Goog-Hash` when the stream ends.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, BinaryIO, ClassVar
from urllib.parse import quote

import google_crc32c
import requests
from google.auth import exceptions as auth_exceptions

from providers.base import StorageProvider
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    IntegrityError,
    MissingSecret,
    ObjectNotFound,
    StorageError,
    make_error,
)
from providers.gcs.errors import response_error, translate
from providers.options import Option
from providers.reader import chunk_reader
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, WriteRequest

CHUNK_MULTIPLE = 256 << 10  # every non-final chunk of a resumable upload is a multiple of this
_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_KMS_KEY = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
__all__ = ["GCSProvider", "blob_info", "crc32c_update", "object_info", "response_error", "translate"]


def crc32c_update(crc: google_crc32c.Checksum, data: bytes | bytearray | memoryview) -> None:
    if isinstance(data, bytes):
        crc.update(data)
        return
    # The C extension only takes `bytes`; copying 1 MiB at a time keeps the extra memory small.
    view = memoryview(data).cast("B")
    for start in range(0, len(view), 1 << 20):
        crc.update(bytes(view[start:start + (1 << 20)]))


def blob_info(key: str, blob: Any) -> ObjectInfo:
    """ObjectInfo of a ``google.cloud.storage.Blob`` just loaded or written, from its public properties."""
    updated = blob.updated
    resource = {"size": blob.size, "etag": blob.etag, "contentType": blob.content_type, "metadata": blob.metadata,
                "crc32c": blob.crc32c, "md5Hash": blob.md5_hash, "storageClass": blob.storage_class,
                "updated": updated.isoformat() if updated is not None else None}
    return object_info(key, {name: value for name, value in resource.items() if value is not None})


def object_info(key: str, resource: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a JSON API object resource (checksums as hex; see the module docstring)."""
    metadata = dict(resource.get("metadata") or {})
    checksums: dict[str, str] = {}
    for field, name in (("crc32c", "crc32c"), ("md5Hash", "md5")):
        if resource.get(field):
            checksums[name] = base64.b64decode(resource[field]).hex()
    if sha256 := metadata.pop("sha256", None):  # reserved key, written by the single-request path
        checksums["sha256"] = sha256
    updated = None
    with contextlib.suppress(ValueError, TypeError):
        updated = datetime.fromisoformat(resource["updated"]) if resource.get("updated") else None
    return ObjectInfo(key=key, size=int(resource.get("size", 0)), etag=resource.get("etag"),
                      content_type=resource.get("contentType"), metadata=metadata, checksums=checksums,
                      storage_class=resource.get("storageClass"), last_modified=updated)


class GCSProvider(StorageProvider):
    scheme = "gs"
    permissions: ClassVar[dict[str, str]] = {"write": "storage.objects.create", "read": "storage.objects.get",
                                             "delete": "storage.objects.delete", "tag": "storage.objects.update"}
    credentials_hint: ClassVar[str] = (
        "give the destination credentials_file = \"/path/to/service-account.json\", or leave it out for "
        "Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default "
        "login`, or the instance's service account")
    options_spec: ClassVar[dict[str, Option]] = {
        "project": Option("str", doc="Google Cloud project for quota/billing attribution (objects do not "
                                     "need one); default: the credentials' project"),
        "credentials_file": Option("str", doc="path to a service-account JSON key file; default: "
                                              "Application Default Credentials"),
        "endpoint": Option("str", doc="JSON API base URL of an emulator, used anonymously unless "
                                      "credentials_file is set; default: $STORAGE_EMULATOR_HOST, else "
                                      "https://storage.googleapis.com"),
        "storage_class": Option("str", choices=("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"),
                                doc="storage class of written objects; default: the bucket's"),
        "kms_key_name": Option("str", doc="Cloud KMS key projects/P/locations/L/keyRings/R/cryptoKeys/K "
                                          "encrypting written objects; default: the bucket's"),
    }
    # Chunks of one session go one after another (ordered_parts), so one chunk in flight and one
    # filling is all the overlap there is; a bigger chunk means fewer round trips for the same memory.
    default_part_size = 16 << 20
    default_concurrency = 2

    def _validate(self) -> None:
        where = f"gs://{self.location}"
        if not _BUCKET.match(self.location) or ".." in self.location:
            raise ConfigurationError(f"{self.location!r} is not a valid GCS bucket name ({where})")
        # Resolved once here so that pickled copies and forked workers talk to the same service.
        source = "option 'endpoint'" if self.options["endpoint"] else "STORAGE_EMULATOR_HOST"
        self.endpoint: str | None = self.options["endpoint"] or os.environ.get("STORAGE_EMULATOR_HOST") or None
        if self.endpoint is not None:
            if not re.match(r"^https?://[^/]+", self.endpoint):
                raise ConfigurationError(f"{source} for {where} must be a URL such as http://localhost:4443, "
                                         f"got {self.endpoint!r}")
            self.endpoint = self.endpoint.rstrip("/")
        kms = self.options["kms_key_name"]
        if kms is not None and not _KMS_KEY.match(kms):
            raise ConfigurationError(f"option 'kms_key_name' for {where} must look like projects/P/locations/L/"
                                     f"keyRings/R/cryptoKeys/K, got {kms!r}")
        self._bucket_seen = False  # becomes True once the bucket is known to exist (_bucket_exists)

    def _check_secrets(self) -> None:
        # The key file is a secret: only processes that make a client (workers) need it mounted.
        path = self.options["credentials_file"]
        full = os.path.expanduser(path) if path is not None else ""
        if path is not None and not (os.path.isfile(full) and os.access(full, os.R_OK)):
            problem = "is not readable" if os.path.isfile(full) else "no such file"
            raise MissingSecret(f"option 'credentials_file' for gs://{self.location}: {problem}: {path!r}", what=path)

    def service_endpoint(self) -> str | None:
        return self.endpoint or "https://storage.googleapis.com"

    @property
    def emulator(self) -> bool:
        """Talking anonymously to an emulator (fake-gcs-server), not to Google."""
        return self.endpoint is not None and self.options["credentials_file"] is None

    @property
    def timeout(self) -> float:
        return float(self.options["timeout"])

    def _part_size(self, size_hint: int | None) -> int:
        size = super()._part_size(size_hint)
        return max(CHUNK_MULTIPLE, -(-size // CHUNK_MULTIPLE) * CHUNK_MULTIPLE)  # round up

    def _new_client(self) -> Any:
        import google.auth
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        if self.options["credentials_file"] is not None:
            credentials, project = self._service_account()
        elif self.emulator:
            credentials, project = AnonymousCredentials(), None
        else:
            try:
                credentials, project = google.auth.default(scopes=_SCOPES)
            except auth_exceptions.DefaultCredentialsError as exc:
                raise make_error(AuthenticationError, "no Application Default Credentials",
                                 self.describe()) from exc
        from google.auth.transport.requests import AuthorizedSession

        options = {"api_endpoint": self.endpoint} if self.endpoint else None
        # Our own requests session with the same credentials for the raw calls the SDK has no public
        # method for (streaming a generation's bytes, driving an upload session); made with the
        # client, so it is per process like the client.
        self._authorized = AuthorizedSession(credentials)
        return storage.Client(project=self.options["project"] or project, credentials=credentials,
                              client_options=options)

    @property
    def http(self) -> Any:
        """An authorized ``requests`` session (google.auth) for this process's credentials."""
        self.client  # noqa: B018 -- makes the client, and the session with it, once per process
        return self._authorized

    def _service_account(self) -> tuple[Any, str | None]:
        # Only service-account keys: the generic loader would also accept external-account configs,
        # which can name a program to run to obtain a token.
        from google.oauth2 import service_account

        path = self.options["credentials_file"]
        problem = f"option 'credentials_file' for {self.describe()}: {path!r}"
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as file:
                info = json.load(file)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{problem} cannot be read as JSON") from exc
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ConfigurationError(f"{problem} is not a service-account key (\"type\": \"service_account\")")
        try:
            credentials = service_account.Credentials.from_service_account_info(info, scopes=_SCOPES)
        except (ValueError, KeyError, TypeError) as exc:  # never their text: it may quote the key
            raise ConfigurationError(f"{problem} is not a usable service-account key") from exc
        return credentials, info.get("project_id")

    @property
    def bucket(self) -> Any:
        return self.client.bucket(self.location)

    def error(self, exc: BaseException, what: str) -> StorageError:
        """`translate`, except that a 404 caused by a missing bucket is a ConfigurationError."""
        err = translate(exc, what)
        if isinstance(err, ObjectNotFound) and not self._bucket_exists():
            return make_error(ConfigurationError, "bucket does not exist", what)
        return err

    def _bucket_exists(self) -> bool:
        # Both a missing object and a missing bucket answer 404; ask once, only on that path.
        if not self._bucket_seen:
            try:
                self._bucket_seen = bool(self.bucket.exists(timeout=self.timeout))
            except Exception:  # e.g. no storage.buckets.get permission: cannot tell, assume it exists
                return True
        return self._bucket_seen

    def _writer(self, request: WriteRequest) -> ObjectWriter:
        from providers.gcs.upload import GCSWriter

        return GCSWriter(self, request)

    def _stat(self, full_key: str, key: str) -> ObjectInfo:
        blob = self.bucket.blob(full_key)
        try:
            blob.reload(timeout=self.timeout)
        except Exception as exc:
            raise self.error(exc, self.describe(key)) from exc
        return blob_info(key, blob)

    def _open_reader(self, full_key: str) -> BinaryIO:
        return self.open_generation(full_key)

    def open_generation(self, full_key: str, generation: int | None = None, start: int = 0,
                        length: int | None = None) -> BinaryIO:
        """Stream the object (that generation of it, when given), or bytes [start, start+length)."""
        what = self.describe(full_key[len(self.prefix):])
        url = (f"{self.client.api_endpoint}/download/storage/v1/b/{quote(self.location, safe='')}"
               f"/o/{quote(full_key, safe='')}?alt=media")
        if generation is not None:
            url += f"&generation={generation}"
        # Accept-Encoding: gzip returns the stored bytes, which is what X-Goog-Hash describes.
        headers = {"Accept-Encoding": "gzip"}
        ranged = bool(start) or length is not None
        if ranged:
            headers["Range"] = f"bytes={start}-{'' if length is None else start + length - 1}"
        try:
            response = self.http.get(url, stream=True, timeout=self.timeout, headers=headers)
        except Exception as exc:
            raise self.error(exc, what) from exc
        if response.status_code != (206 if ranged else 200):
            with response:
                raise self.error(requests.HTTPError(response=response), what)
        # X-Goog-Hash describes the whole object: a part of it cannot be checked against it.
        expected = None if ranged else _goog_hash(response.headers.get("X-Goog-Hash", ""), "crc32c")

        def chunks() -> Iterator[bytes]:
            crc = google_crc32c.Checksum()
            for chunk in response.raw.stream(1 << 20, decode_content=False):
                crc32c_update(crc, chunk)
                yield chunk
            if expected is not None and crc.digest() != expected:
                raise make_error(IntegrityError, "crc32c mismatch", what)

        return chunk_reader(chunks(), lambda exc: translate(exc, what), on_close=response.close)

    def _delete(self, full_key: str) -> None:
        what = self.describe(full_key[len(self.prefix):])
        try:
            self.bucket.blob(full_key).delete(timeout=self.timeout)
        except Exception as exc:
            err = self.error(exc, what)
            if not isinstance(err, ObjectNotFound):
                raise err from exc


def _goog_hash(header: str, name: str) -> bytes | None:
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == name and value:
            try:
                return base64.b64decode(value)
            except ValueError:
                return None
    return None
