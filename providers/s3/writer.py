"""The S3 writer: PutObject or a multipart upload, then a check of what S3 reports against the stream.

What the answer proves is decided in s3_verify.py; what it cannot prove is read back (option
`readback`). Every read and delete after the commit is pinned to the version this writer created
(its VersionId in a versioned bucket, else the ETag with If-Match), so a newer object is never
judged or removed in its place.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

from providers.errors import AccessDenied, ConfigurationError, ObjectExists, ObjectNotFound, StorageError
from providers.pool import Chain, views_of
from providers.readback import FULL
from providers.s3.verify import b64 as _b64
from providers.s3.verify import (
    composite_disagreement,
    etag_proves,
    md5_etag,
    object_info,
    sha256_disagreement,
    why_etag_is_no_md5,
)
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, Part, WriteRequest

if TYPE_CHECKING:
    from providers.s3.provider import S3Provider

_log = logging.getLogger(__name__)
MAX_PARTS = 10_000


class S3Writer(ObjectWriter):
    """Small objects in one PutObject; larger ones as a multipart upload whose parts run in parallel."""

    def __init__(self, provider: S3Provider, request: WriteRequest) -> None:
        super().__init__(request, provider.describe(request.key))
        self.provider = provider
        self.mode: str = provider.options["checksum_mode"]
        self.part_digests = self.mode == "sha256"
        self.client = provider.client  # resolved here, once, rather than in every part's thread
        self.upload_id: str | None = None
        self.reported: Mapping[str, Any] = {}  # what S3 said about the committed object
        self.version: str | None = None  # VersionId of the committed object, in a versioned bucket
        self.single_md5: str | None = None
        self._sent: list[Part] = []  # the parts a CompleteMultipartUpload listed

    def _call(self, action: Callable[..., Any], **kwargs: Any) -> Any:
        return self.provider.call(self.request.key, action, Key=self.request.full_key, **kwargs)

    def _headers(self) -> dict[str, Any]:
        args = self.provider.object_args()
        if self.request.content_type:
            args["ContentType"] = self.request.content_type
        return args

    def _put_single(self, data: bytearray | Chain, sha256_hex: str) -> ObjectInfo:
        args = self._headers()
        args["Metadata"] = {**self.request.metadata, "sha256": sha256_hex}
        if self.mode in ("sha256", "crc32"):
            # The stream's SHA-256 is known already, so a single request carries it even in crc32 mode:
            # the strongest checksum at no extra pass over the bytes.
            # The algorithm header as well as the value: without it moto (and some stores) keep no checksum.
            args.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=_b64(bytes.fromhex(sha256_hex)))
        elif self.mode == "md5":
            md5 = hashlib.md5(usedforsecurity=False)
            for view in views_of(data):
                md5.update(view)
            self.single_md5 = md5.hexdigest()
            args["ContentMD5"] = _b64(md5.digest())
        if self.request.if_absent:
            args["IfNoneMatch"] = "*"
        # botocore sends a bytearray as it is: no copy of the part (see tests/test_s3.py); a Chain (an
        # object held in several part buffers) is read from the buffers as it is sent.
        return self._published(self._call(self.client.put_object, Body=data, **args))

    def _begin(self) -> None:
        # The whole-object SHA-256 is not known yet, so a multipart object carries no "sha256" metadata;
        # the composite checksum stands in for it.
        args = {**self._headers(), "Metadata": dict(self.request.metadata)}
        if self.mode in ("sha256", "crc32"):
            args["ChecksumAlgorithm"] = self.mode.upper()
        self.upload_id = self._call(self.client.create_multipart_upload, **args)["UploadId"]

    def _send_part(self, number: int, data: bytearray, sha256: bytes) -> Any:
        if number > MAX_PARTS:
            raise StorageError(f"failed: more than {MAX_PARTS} parts of {self.request.part_size} bytes on "
                               f"{self.describe}; pass size_hint or a larger part_size", code="TooManyParts")
        args: dict[str, Any] = {}
        digest = None  # the part's own digest, kept in the receipt: its MD5 or CRC32
        if self.mode == "sha256":
            args["ChecksumSHA256"] = _b64(sha256)
        elif self.mode == "crc32":
            # zlib's CRC32 reads the pool buffer in place, in this part's thread, without the GIL: under
            # half the CPU of a SHA-256 pass. The stream's SHA-256 stays the object's identity.
            digest = zlib.crc32(data).to_bytes(4, "big")
            args["ChecksumCRC32"] = _b64(digest)
        elif self.mode == "md5":
            digest = hashlib.md5(data, usedforsecurity=False).digest()
            args["ContentMD5"] = _b64(digest)
        answer = self._call(self.client.upload_part, UploadId=self.upload_id, PartNumber=number, Body=data,
                            **args)
        return answer["ETag"], digest

    def _complete(self, parts: list[Part], sha256_hex: str) -> ObjectInfo:
        self._sent = parts
        entries = []
        for part in parts:
            entry = {"PartNumber": part.number, "ETag": part.receipt[0]}
            if self.mode == "sha256":
                entry["ChecksumSHA256"] = _b64(part.sha256)
            elif self.mode == "crc32":
                entry["ChecksumCRC32"] = _b64(part.receipt[1])
            entries.append(entry)
        args = {"IfNoneMatch": "*"} if self.request.if_absent else {}
        answer = self._call(self.client.complete_multipart_upload, UploadId=self.upload_id,
                            MultipartUpload={"Parts": entries}, **args)
        self.upload_id = None  # completed: nothing is left to abort
        return self._published(answer)

    def _published(self, answer: Mapping[str, Any]) -> ObjectInfo:
        """What S3 reports about the object just written; the writer verifies it against the stream."""
        self.reported = answer
        version = answer.get("VersionId")
        self.version = version if version and version != "null" else None  # moto says "null"
        if not self._began and answer.get("ChecksumSHA256") == _b64(self._hash.digest()):
            # S3 checked the SHA-256 sent with the PutObject against the bytes it stored (a mismatch is
            # BadDigest, nothing stored) and echoes it: the bytes are proven, and a HEAD would cost a
            # request and ~1.5 ms of CPU per small file for nothing. A store that does not echo it is
            # asked with a HEAD as before.
            return self._as_sent(answer)
        try:
            # Pinned by VersionId only: some stores answer a commit with an ETag spelt otherwise than
            # HEAD's. After this, reads and deletes are pinned to what this HEAD saw (see _pin).
            pinned = {"VersionId": self.version} if self.version else {}
            head = self.provider.head(self.request.full_key, self.request.key, **pinned)
        except AccessDenied as exc:
            # Write-only credentials are a common archive policy: the object is reported committed,
            # with what could not be checked, and the answer's checksums are still compared.
            return replace(self._as_sent(answer), unverified=(
                f"read denied ({exc.code}): the stored size and checksums were not read back; "
                f"{self.checked_on_arrival}",))
        except StorageError as exc:
            # Published but unverified: remove it so a retry starts clean instead of hitting ObjectExists.
            raise self._unpublish(exc)  # noqa: B904 - the context is chained already
        self.reported = head
        return object_info(self.request.key, head)

    def _as_sent(self, answer: Mapping[str, Any]) -> ObjectInfo:
        """The committed object as this writer sent it, with what the write's answer adds (ETag,
        VersionId, checksums): for when it is not read back with a HEAD."""
        metadata = dict(self.request.metadata)
        if not self._began:  # a single PutObject stores the stream's SHA-256 in its metadata (_put_single)
            metadata["sha256"] = self._hash.hexdigest()
        return object_info(self.request.key, {
            "ContentLength": self._size, "ContentType": self.request.content_type, "Metadata": metadata,
            "StorageClass": self.provider.options["storage_class"], **answer})

    def _find_own_commit(self) -> ObjectInfo | None:
        try:
            head = self.provider.head(self.request.full_key, self.request.key)
        except ObjectNotFound:
            return None
        sha256_hex = self._hash.hexdigest()
        if int(head.get("ContentLength", -1)) != self._size:
            return None
        if not self._began:  # a single PutObject stores the SHA-256 in its metadata
            own = (head.get("Metadata") or {}).get("sha256") == sha256_hex
        elif self.mode == "sha256":
            own = bool(head.get("ChecksumSHA256")) and not sha256_disagreement(head, self._sent, True, sha256_hex)
        elif self.mode == "crc32":
            own = self._crc32_proves(head, self._sent)
        else:
            own = False
        if not (own or etag_proves(head, self._expected_etag(self._sent))):
            return None
        self.upload_id = None  # it was completed after all: nothing is left to abort
        return self._published({k: head[k] for k in ("ETag", "VersionId") if head.get(k)})

    @property
    def checked_on_arrival(self) -> str:
        if self.mode == "crc32" and not self._began:
            return "S3 checked the SHA-256 of the object on arrival"
        return {"sha256": "S3 checked the SHA-256 of each part on arrival",
                "crc32": "S3 checked the CRC32 of each part on arrival",
                "md5": "S3 checked the Content-MD5 of each part on arrival"}.get(
                    self.mode, "only the size of each request was checked (checksum_mode = 'off')")

    def _pin(self) -> dict[str, str]:
        """Request arguments that address the version this writer committed, and no other."""
        if self.version:
            return {"VersionId": self.version}
        etag = str(self.reported.get("ETag") or "")
        return {"IfMatch": etag} if etag else {}

    def _expected_etag(self, parts: list[Part]) -> str:
        return md5_etag(parts, self._began, self.single_md5) if self.mode == "md5" else ""

    def _service_mismatches(self, info: ObjectInfo, parts: list[Part]) -> list[str]:
        if self.mode == "off":
            return []
        problem = sha256_disagreement(self.reported, parts, self._began, self._hash.hexdigest())
        if self.mode == "crc32" and self._began:
            problem = composite_disagreement(self.reported, "CRC32", [p.receipt[1] for p in parts])
        return [problem] if problem else []

    def _crc32_proves(self, reported: Mapping[str, Any], parts: list[Part]) -> bool:
        """A multipart object's composite CRC32, as S3 reports it, equals the one of the streamed parts."""
        return (bool(reported.get("ChecksumCRC32")) and reported.get("ChecksumType") != "FULL_OBJECT"
                and not composite_disagreement(reported, "CRC32", [p.receipt[1] for p in parts]))

    def _readback_depth(self, info: ObjectInfo, parts: list[Part]) -> str | None:
        depth: str = self.provider.options["readback"]
        if self.mode == "off":
            return FULL if depth == FULL else None  # off: the size check is all unless asked for more
        if self.reported.get("ChecksumSHA256"):
            return None  # compared in _service_mismatches, and it matched
        if self.mode == "crc32" and self._began and self._crc32_proves(self.reported, parts):
            return None  # every part's CRC32 was checked on arrival and the composite matched
        expected = self._expected_etag(parts)
        if self.mode == "md5" and etag_proves(self.reported, expected):
            return None
        if self.mode == "md5":
            _log.info("%s: %s; reading back (%s)", self.describe, why_etag_is_no_md5(self.reported, expected), depth)
        return depth

    def _part_digest(self, part: Part) -> tuple[str, bytes] | None:
        if self.mode in ("md5", "crc32") and self._began:
            return self.mode, part.receipt[1]
        return ("sha256", part.sha256) if part.sha256 else None

    def _open_committed(self, start: int, length: int | None) -> BinaryIO:
        end = "" if length is None else str(start + length - 1)
        ranged = {"Range": f"bytes={start}-{end}"} if start or length is not None else {}
        return self.provider.open_version(self.request.full_key, **self._pin(), **ranged)

    def _cancel(self) -> None:
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is None:
            return
        try:
            self._call(self.client.abort_multipart_upload, UploadId=upload_id)
        except StorageError as exc:
            if exc.code != "NoSuchUpload":  # already gone is what we wanted
                # Raising here would hide the error that made us abort. The next attempt's
                # discard_incomplete(key) and a lifecycle rule (AbortIncompleteMultipartUpload) are
                # the backstops for this leftover, billed until then; it is recorded and logged.
                self.left_incomplete = f"the multipart upload {upload_id} of {self.describe} ({exc.code})"
                _log.warning("could not abort the multipart upload %s of %s: %s", upload_id, self.describe,
                             exc.code)

    def _delete_committed(self) -> None:
        pin = self._pin()
        try:
            self._call(self.client.delete_object, **pin)
        except (ObjectNotFound, ObjectExists):
            return  # gone already, or replaced by a newer object (If-Match failed): ours is not visible
        except ConfigurationError:
            if "IfMatch" not in pin:
                raise
            # A store without conditional deletes (NotImplemented): create-only writes leave no one
            # else's object to lose here, so the plain delete is what remains.
            self.provider._delete(self.request.full_key)
