"""GCS writes: one resumable upload session fed by the shared streaming writer.

Why a session driven by hand rather than `blob.upload_from_file`: the SDK's resumable upload reads
from a stream itself, so it can neither take parts from our bounded buffer pool nor let the caller
stream while a chunk is in flight. The protocol (cloud.google.com/storage/docs/performing-resumable-uploads):

- Nothing is visible until the finalizing request; `abort` DELETEs the session (the service answers 499).
- Chunks of one session must arrive in order. The base writer sends parts from worker threads, so
  each part waits for its turn (`_next`), while the caller already fills the next part.
- Every non-final chunk must be a multiple of 256 KiB (part_size is rounded up to one). The short
  last part is held back and sent with the finalizing request, together with the whole-object
  CRC32C in `X-Goog-Hash`, so that Google refuses bytes that do not match what we streamed (400).
- The service may persist fewer bytes than a chunk carried (308 with a shorter `Range`); the rest is
  sent again. A failed chunk is not retried here: the error is transient and the caller re-uploads.
- create-only is `ifGenerationMatch=0` on the session, which Google checks when it finalizes.

fake-gcs-server (v1.54) gaps this code works around: it ignores ifGenerationMatch on resumable uploads
(so against an emulator the object's absence is checked right before finalizing: a narrow race the
real service does not have), ignores the storage class of a session, validates no declared checksum
(our own comparison after commit still catches a mismatch), keeps a DELETEd session usable, and treats
a `bytes */*` status query as "finalize", which is why this code never sends one.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import google_crc32c

from providers.errors import AccessDenied, ObjectExists, ObjectNotFound, StorageError, TransientError, make_error
from providers.gcs.errors import response_error, translate
from providers.gcs.provider import blob_info, crc32c_update, object_info
from providers.pool import Chain, views_of
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, Part, WriteRequest

if TYPE_CHECKING:
    from providers.gcs.provider import GCSProvider

log = logging.getLogger(__name__)
_MULTIPART_MAX = 8 << 20  # the SDK switches from one multipart request to its own resumable upload above


class GCSWriter(ObjectWriter):
    def __init__(self, provider: GCSProvider, request: WriteRequest) -> None:
        super().__init__(request, provider.describe(request.key))
        self.provider = provider
        self._session: str | None = None  # the session URL is a bearer capability: never log it
        self._turn = threading.Condition()
        self._next = 1  # the part whose turn it is to be sent
        self._broken = False  # a part failed or the writer aborted: later parts must not be sent
        self._offset = 0  # bytes the service has persisted
        self._crc = google_crc32c.Checksum()  # over the parts in order, i.e. the whole object
        self._tail = bytearray()
        self._generation: int | None = None

    def _blob(self, sha256_hex: str | None) -> Any:
        opts, req = self.provider.options, self.request
        blob = self.provider.bucket.blob(req.full_key, kms_key_name=opts["kms_key_name"])
        # "sha256" is reserved: in metadata it must only ever be the digest of the stored bytes.
        metadata = {k: v for k, v in req.metadata.items() if k != "sha256"}
        if sha256_hex:
            metadata["sha256"] = sha256_hex
        if metadata:
            blob.metadata = metadata
        if req.content_type:
            blob.content_type = req.content_type  # fake-gcs-server reads it from the session body only
        if opts["storage_class"]:
            blob.storage_class = opts["storage_class"]
        return blob

    def _begin(self, sha256_hex: str | None = None) -> None:
        blob = self._blob(sha256_hex)
        try:
            self._session = blob.create_resumable_upload_session(
                content_type=self.request.content_type, checksum=None, timeout=self.provider.timeout,
                if_generation_match=0 if self.request.if_absent else None)
        except Exception as exc:
            raise self.provider.error(exc, self.describe) from exc

    def _send_part(self, number: int, data: bytearray, sha256: bytes) -> Any:
        with self._turn:
            self._turn.wait_for(lambda: self._next == number or self._broken)
            if self._broken:
                raise StorageError(f"upload to {self.describe} was interrupted", code="interrupted")
        try:
            if self._tail:
                raise StorageError(f"part {number} after the last part of {self.describe}", code="protocol")
            crc32c_update(self._crc, data)
            if len(data) == self.request.part_size:
                self._put(data, final=False)
            else:
                self._tail = data  # only the last part is short; it goes out with the finalizing request
        except BaseException:
            with self._turn:
                self._broken = True
                self._turn.notify_all()
            raise
        with self._turn:
            self._next += 1
            self._turn.notify_all()
        return None

    def _complete(self, parts: list[Part], sha256_hex: str) -> ObjectInfo:
        if self.request.if_absent and self.provider.emulator and self._exists():
            raise make_error(ObjectExists, "conditionNotMet", self.describe)
        resource = self._put(self._tail, final=True)
        assert resource is not None
        self._tail = bytearray()
        self._generation = int(resource["generation"]) if resource.get("generation") else None
        return object_info(self.request.key, resource)

    def _put_single(self, data: bytearray | Chain, sha256_hex: str) -> ObjectInfo:
        for view in views_of(data):
            crc32c_update(self._crc, view)
        if len(data) > _MULTIPART_MAX:
            # Beyond what the SDK sends as one request: our own multipart upload, the same request
            # the SDK makes, with the part buffers sent as they are (no joined copy of the object).
            return self._multipart(data, sha256_hex)
        blob = self._blob(sha256_hex)
        body = data.read() if isinstance(data, Chain) else data
        try:
            # checksum="crc32c" declares the CRC32C in the request, so Google validates the bytes.
            # retry=None: after a lost reply, a retried create-only upload would report our own
            # object as "already exists"; the caller retries the whole upload instead.
            blob.upload_from_file(io.BytesIO(body), size=len(body), content_type=self.request.content_type,
                                  if_generation_match=0 if self.request.if_absent else None,
                                  checksum="crc32c", timeout=self.provider.timeout, retry=None)
        except Exception as exc:
            raise self.provider.error(exc, self.describe) from exc
        self._generation = blob.generation
        return blob_info(self.request.key, blob)

    def _multipart(self, data: bytearray | Chain, sha256_hex: str) -> ObjectInfo:
        """One multipart upload (JSON API uploadType=multipart): the object's resource, with its CRC32C
        for Google to check, then its bytes; create-only is ifGenerationMatch=0."""
        if self.request.if_absent and self.provider.emulator and self._exists():
            raise make_error(ObjectExists, "conditionNotMet", self.describe)  # fake-gcs-server's gap, as above
        blob = self._blob(sha256_hex)
        # The object resource of the JSON API, from the blob's public properties (what the SDK would send).
        resource: dict[str, Any] = {"name": self.request.full_key,
                                    "crc32c": base64.b64encode(self._crc.digest()).decode(),
                                    "contentType": self.request.content_type or "application/octet-stream"}
        if blob.metadata:
            resource["metadata"] = blob.metadata
        if blob.storage_class:
            resource["storageClass"] = blob.storage_class
        params = {"uploadType": "multipart", "name": self.request.full_key}
        if self.request.if_absent:
            params["ifGenerationMatch"] = "0"
        if self.provider.options["kms_key_name"]:
            params["kmsKeyName"] = self.provider.options["kms_key_name"]
        boundary = "archiver-" + uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json.dumps(resource)}\r\n"
                f"--{boundary}\r\nContent-Type: {resource['contentType']}\r\n\r\n").encode()
        body = _Body([memoryview(head), *views_of(data), memoryview(f"\r\n--{boundary}--".encode())])
        host = self.provider.client.api_endpoint.rstrip("/")
        url = f"{host}/upload/storage/v1/b/{quote(self.provider.location, safe='')}/o"
        headers = {"Content-Type": f'multipart/related; boundary="{boundary}"', "Content-Length": str(len(body))}
        try:
            response = self.provider.http.post(url, params=params, data=body, headers=headers,
                                               timeout=self.provider.timeout)
        except Exception as exc:
            raise translate(exc, self.describe) from exc
        if response.status_code not in (200, 201):
            raise response_error(response.status_code, None, response, self.describe)
        answer = response.json()
        self._generation = int(answer["generation"]) if answer.get("generation") else None
        return object_info(self.request.key, answer)

    def _service_mismatches(self, info: ObjectInfo, parts: list[Part]) -> list[str]:
        # Either is settled by reading the object back; neither alone proves different bytes.
        streamed = self._crc.digest().hex()
        stored = info.checksums.get("crc32c")
        if stored is None:
            return ["the service reported no crc32c"]
        return [] if stored == streamed else [f"crc32c {stored} stored, {streamed} streamed"]

    def _find_own_commit(self) -> ObjectInfo | None:
        blob = self.provider.bucket.blob(self.request.full_key)
        try:
            blob.reload(timeout=self.provider.timeout)
        except Exception as exc:
            err = self.provider.error(exc, self.describe)
            if isinstance(err, ObjectNotFound):
                return None
            raise err from exc
        info = blob_info(self.request.key, blob)
        if info.size != self._size or info.checksums.get("crc32c") != self._crc.digest().hex():
            return None
        self._session, self._tail = None, bytearray()  # finalized after all: nothing is left to cancel
        self._generation = blob.generation
        return info

    @property
    def checked_on_arrival(self) -> str:
        return "Google checked the CRC32C of the whole object when it was finalized"

    def _open_committed(self, start: int, length: int | None) -> BinaryIO:
        return self.provider.open_generation(self.request.full_key, self._generation, start, length)

    def abort(self) -> None:
        with self._turn:  # parts still waiting for their turn give up instead of uploading
            self._broken = True
            self._turn.notify_all()
        super().abort()

    def _cancel(self) -> None:
        session, self._session = self._session, None
        self._tail = bytearray()
        if session is None:
            return
        try:
            self.provider.http.delete(session, timeout=self.provider.timeout)
        except Exception as exc:  # an unfinished session expires after a week and is never visible
            log.debug("cancelling the upload session for %s failed: %s", self.describe, type(exc).__name__)

    def _delete_committed(self) -> None:
        blob = self.provider.bucket.blob(self.request.full_key)
        try:
            # Only the generation we created: never a newer object someone else wrote since.
            blob.delete(if_generation_match=self._generation, timeout=self.provider.timeout)
        except Exception as exc:
            err = translate(exc, self.describe)
            if not isinstance(err, ObjectNotFound | ObjectExists):
                raise err from exc

    # ---- the session protocol -------------------------------------------------------------------
    def _exists(self) -> bool:
        # AccessDenied: write-only credentials cannot look; the emulator's gap stays open then.
        with contextlib.suppress(ObjectNotFound, AccessDenied):
            self.provider._stat(self.request.full_key, self.request.key)
            return True
        return False

    def _put(self, data: bytearray, final: bool) -> dict[str, Any] | None:
        """Send `data` at the current offset; return the object resource when `final`."""
        first = self._offset
        end = first + len(data)
        while True:
            body = memoryview(data)[self._offset - first:]
            span = f"{self._offset}-{end - 1}" if len(body) else "*"
            headers = {"Content-Range": f"bytes {span}/{end if final else '*'}"}
            if final:
                headers["X-Goog-Hash"] = "crc32c=" + base64.b64encode(self._crc.digest()).decode()
            assert self._session is not None
            try:
                response = self.provider.http.put(self._session, data=body, headers=headers,
                                                           timeout=self.provider.timeout)
            except Exception as exc:
                raise translate(exc, self.describe) from exc
            if final and response.status_code in (200, 201):
                return response.json()  # type: ignore[no-any-return]
            if response.status_code != 308:
                raise self._failure(response)
            persisted = _persisted(response.headers.get("Range"))
            if not final and persisted == end:
                self._offset = end
                return None
            if not self._offset < persisted <= end:  # no progress: give up, the caller re-uploads
                raise make_error(TransientError, "upload made no progress", self.describe)
            self._offset = persisted

    def _failure(self, response: Any) -> StorageError:
        if response.status_code in (404, 410):  # the session expired or was cancelled
            return make_error(TransientError, "upload session expired", self.describe)
        return response_error(response.status_code, None, response, self.describe)


class _Body:
    """A request body of several buffers with a known length: requests sends Content-Length and
    urllib3 writes each buffer to the socket as it is (no read() copies, no chunked encoding)."""

    def __init__(self, views: list[memoryview]) -> None:
        self.views = views

    def __len__(self) -> int:
        return sum(v.nbytes for v in self.views)

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self.views)


def _persisted(header: str | None) -> int:
    """`Range: bytes=0-N` on a 308 means N+1 bytes are persisted; no header means none."""
    if not header or "-" not in header:
        return 0
    try:
        return int(header.rpartition("-")[2]) + 1
    except ValueError:
        return 0
