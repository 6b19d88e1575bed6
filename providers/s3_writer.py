"""The S3 writer: PutObject or a multipart upload, then a check of what S3 reports against the stream."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import AccessDenied, StorageError
from .types import ObjectInfo
from .writer import ObjectWriter, Part, WriteRequest

if TYPE_CHECKING:
    from .s3 import S3Provider

_log = logging.getLogger(__name__)
MAX_PARTS = 10_000


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def object_info(key: str, head: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a HeadObject answer (asked with ChecksumMode=ENABLED) or a write's answer."""
    etag = (head.get("ETag") or "").strip('"') or None
    parts = etag.rpartition("-")[2] if etag and "-" in etag else None  # "<md5 of md5s>-<parts>"
    metadata = dict(head.get("Metadata") or {})
    checksums = {"sha256": metadata["sha256"]} if "sha256" in metadata else {}
    kind = head.get("ChecksumType")  # COMPOSITE or FULL_OBJECT; moto and older stores leave it out
    for name in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"):
        if not (value := head.get(f"Checksum{name}")):
            continue
        if kind == "COMPOSITE" or (not kind and parts and name != "CRC64NVME"):
            if parts and "-" not in value:
                value = f"{value}-{parts}"  # moto's HEAD omits the "-<parts>" that S3 and its GET add
            checksums[f"{name.lower()}-composite"] = value
        elif name == "SHA256":
            checksums["sha256"] = base64.b64decode(value).hex()  # hex, like the streamed digest
        else:
            checksums[name.lower()] = value
    # The ETag is the MD5 of the bytes only for a single PUT without SSE-KMS or SSE-C.
    sse = str(head.get("ServerSideEncryption", ""))
    if etag and not parts and not sse.startswith("aws:kms") and not head.get("SSECustomerAlgorithm"):
        checksums["md5"] = etag
    return ObjectInfo(key=key, size=int(head.get("ContentLength", 0)), etag=etag,
                      content_type=head.get("ContentType"), metadata=metadata, checksums=checksums,
                      storage_class=head.get("StorageClass") or "STANDARD",
                      last_modified=head.get("LastModified"))


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
        self.single_md5: str | None = None

    def _call(self, action: Callable[..., Any], **kwargs: Any) -> Any:
        return self.provider.call(self.request.key, action, Key=self.request.full_key, **kwargs)

    def _headers(self) -> dict[str, Any]:
        args = self.provider.object_args()
        if self.request.content_type:
            args["ContentType"] = self.request.content_type
        return args

    def _put_single(self, data: bytearray, sha256_hex: str) -> ObjectInfo:
        args = self._headers()
        args["Metadata"] = {**self.request.metadata, "sha256": sha256_hex}
        if self.mode == "sha256":
            # The algorithm header as well as the value: without it moto (and some stores) keep no checksum.
            args.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=_b64(bytes.fromhex(sha256_hex)))
        elif self.mode == "md5":
            md5 = hashlib.md5(data, usedforsecurity=False)
            self.single_md5 = md5.hexdigest()
            args["ContentMD5"] = _b64(md5.digest())
        if self.request.if_absent:
            args["IfNoneMatch"] = "*"
        # botocore sends a bytearray as it is: no copy of the part (see tests/test_s3.py).
        return self._published(self._call(self.client.put_object, Body=data, **args))

    def _begin(self) -> None:
        # The whole-object SHA-256 is not known yet, so a multipart object carries no "sha256" metadata;
        # the composite checksum stands in for it.
        args = {**self._headers(), "Metadata": dict(self.request.metadata)}
        if self.mode == "sha256":
            args["ChecksumAlgorithm"] = "SHA256"
        self.upload_id = self._call(self.client.create_multipart_upload, **args)["UploadId"]

    def _send_part(self, number: int, data: bytearray, sha256: bytes) -> Any:
        if number > MAX_PARTS:
            raise StorageError(f"failed: more than {MAX_PARTS} parts of {self.request.part_size} bytes on "
                               f"{self.describe}; pass size_hint or a larger part_size", code="TooManyParts")
        args: dict[str, Any] = {}
        md5 = None
        if self.mode == "sha256":
            args["ChecksumSHA256"] = _b64(sha256)
        elif self.mode == "md5":
            md5 = hashlib.md5(data, usedforsecurity=False).digest()
            args["ContentMD5"] = _b64(md5)
        answer = self._call(self.client.upload_part, UploadId=self.upload_id, PartNumber=number, Body=data,
                            **args)
        return answer["ETag"], md5

    def _complete(self, parts: list[Part], sha256_hex: str) -> ObjectInfo:
        entries = []
        for part in parts:
            entry = {"PartNumber": part.number, "ETag": part.receipt[0]}
            if self.mode == "sha256":
                entry["ChecksumSHA256"] = _b64(part.sha256)
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
        pinned = {"VersionId": version} if version and version != "null" else {}  # moto says "null"
        try:
            head = self.provider.head(self.request.full_key, self.request.key, **pinned)
        except AccessDenied:
            # Write-only credentials are a common archive policy. S3 already checked the checksums we
            # sent; compare what the write answer carries, and the size can only be the streamed one.
            return object_info(self.request.key, {
                "ContentLength": self._size, "ContentType": self.request.content_type,
                "StorageClass": self.provider.options["storage_class"], **answer})
        except StorageError:
            # Published but unverified: remove it so a retry starts clean instead of hitting ObjectExists.
            with contextlib.suppress(StorageError):
                self._delete_committed()
            raise
        self.reported = head
        return object_info(self.request.key, head)

    def _service_mismatches(self, info: ObjectInfo, parts: list[Part]) -> list[str]:
        reported = self.reported
        if self.mode == "sha256":
            stored = reported.get("ChecksumSHA256")
            if not stored:
                # This store keeps no SHA-256 (some S3-compatible ones): S3-style stores still checked
                # each part's header on arrival, and the size was compared; there is nothing more here.
                return []
            if self._began:
                expected = _b64(hashlib.sha256(b"".join(p.sha256 for p in parts)).digest())
                value, _, count = stored.partition("-")  # moto omits the "-<parts>" suffix
                if value != expected or count not in ("", str(len(parts))):
                    return [f"composite SHA-256 {stored} stored, {expected}-{len(parts)} streamed"]
            elif stored != _b64(parts[0].sha256):
                return [f"SHA-256 {stored} stored, {_b64(parts[0].sha256)} streamed"]
        elif self.mode == "md5" and not str(reported.get("ServerSideEncryption", "")).startswith("aws:kms"):
            # (With SSE-KMS, including a bucket default, the ETag is not an MD5 and says nothing.)
            etag = str(reported.get("ETag", "")).strip('"')
            if self._began:
                md5s = b"".join(p.receipt[1] for p in parts)
                expected = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(parts)}"
            else:
                expected = self.single_md5 or ""
            if etag != expected:
                return [f"ETag {etag} stored, {expected} streamed"]
        return []

    def _cancel(self) -> None:
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is None:
            return
        try:
            self._call(self.client.abort_multipart_upload, UploadId=upload_id)
        except StorageError as exc:
            if exc.code != "NoSuchUpload":  # already gone is what we wanted
                # Raising here would hide the error that made us abort; a bucket lifecycle rule
                # (AbortIncompleteMultipartUpload) is the backstop for this rare leftover.
                _log.warning("could not abort the multipart upload of %s: %s", self.describe, exc.code)

    def _delete_committed(self) -> None:
        # In a versioned bucket this leaves a delete marker: the bad version is hidden, not destroyed.
        self.provider._delete(self.request.full_key)
