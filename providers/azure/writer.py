"""The Azure Blob writer: staged blocks committed by one Put Block List, or one Put Blob.

Each block and each Put Blob carries the MD5 the service checks on arrival. After the commit the blob's
properties are read back (pinned to the ETag this writer committed) and compared with the stream; a
SAS that may write but not read gets the commit reported with `ObjectInfo.unverified` instead.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobClient, BlobProperties, ContentSettings, StandardBlobTier

from providers.azure.errors import error_code, translate
from providers.errors import AccessDenied, ConfigurationError, ObjectNotFound, StorageError
from providers.pool import Chain
from providers.reader import chunk_reader
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, Part, WriteRequest

if TYPE_CHECKING:
    from providers.azure.provider import AzureBlobProvider

MAX_BLOCKS = 50_000
SHA256_META = "sha256"
T = TypeVar("T")


def _md5(data: bytes | bytearray) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class AzureBlobWriter(ObjectWriter):
    """Blocks staged from worker threads, then one Put Block List; or one Put Blob when it all fits."""

    def __init__(self, provider: AzureBlobProvider, request: WriteRequest) -> None:
        super().__init__(request, provider.describe(request.key))
        self.provider = provider
        self.blob: BlobClient = provider.client.get_blob_client(request.full_key)
        # All block ids of one blob must have the same length, including blocks other (aborted or
        # concurrent) writers staged under the same name, and must not collide with theirs.
        self._id_prefix = uuid.uuid4().hex
        self._md5: bytes | None = None  # MD5 of the whole object, when one request or block carried it
        self._sha256_hex = ""
        self._etag: str | None = None  # of the version this writer committed

    def _call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except AzureError as exc:
            raise translate(exc, self.describe) from exc

    def _begin(self) -> None:
        """Nothing to start: blocks are staged against the blob's name and invisible until committed."""

    def _send_part(self, number: int, data: bytearray, sha256: bytes) -> Any:
        if number > MAX_BLOCKS:
            raise ConfigurationError(f"option 'part_size' ({self.request.part_size} bytes) is too small for "
                                     f"{self.describe}: Azure commits at most {MAX_BLOCKS} blocks; raise it or "
                                     "pass size_hint")
        block_id = f"{self._id_prefix}-{number:06d}"
        md5 = _md5(data)
        # Sent as Content-MD5, which the service checks before storing the block (400 Md5Mismatch).
        # validate_content would do the same but insists on bytes, and copying each part costs memory.
        # The SDK sends any bytes-like body (its annotation says bytes): no copy of the part.
        self._call(lambda: self.blob.stage_block(block_id, cast(bytes, data), length=len(data),
                                                 transactional_content_md5=md5))
        return block_id, md5

    def _complete(self, parts: list[Part], sha256_hex: str) -> ObjectInfo:
        if len(parts) == 1:
            self._md5 = parts[0].receipt[1]  # one block: its checked MD5 is the object's, for free
        # A multi-block object gets no Content-MD5: the service would store it unverified, and
        # computing it means a second full hash pass in the (serial) write path next to SHA-256.
        settings = self._settings(sha256_hex, content_md5=self._md5)
        if self.request.if_absent:
            settings["match_condition"] = MatchConditions.IfMissing  # If-None-Match: *
        answer = self._call(lambda: self.blob.commit_block_list([p.receipt[0] for p in parts], **settings))
        answer.pop("content_md5", None)  # Put Block List answers the MD5 of the block list, not of the blob
        return self._committed(answer)

    def _put_single(self, data: bytearray | Chain, sha256_hex: str) -> ObjectInfo:
        # overwrite=False sends If-None-Match: * (409 BlobAlreadyExists). The service checks the
        # Content-MD5 on arrival and stores the MD5 it computed itself, compared after the write.
        # Put Blob wants bytes: one copy of the object (at most single_request_max, within the slots).
        body = data.read() if isinstance(data, Chain) else bytes(data)
        self._md5 = _md5(body)
        settings = self._settings(sha256_hex, content_md5=None)
        answer = self._call(lambda: self.blob.upload_blob(
            body, length=len(body), overwrite=not self.request.if_absent,
            transactional_content_md5=self._md5, **settings))
        return self._committed(answer)

    def _settings(self, sha256_hex: str, content_md5: bytes | None) -> dict[str, Any]:
        self._sha256_hex = sha256_hex
        opts = self.provider.options
        md5 = bytearray(content_md5) if content_md5 is not None else None  # the type the SDK declares
        settings: dict[str, Any] = {
            "metadata": {**self.request.metadata, SHA256_META: sha256_hex},
            "content_settings": ContentSettings(content_type=self.request.content_type, content_md5=md5),
        }
        if opts["access_tier"]:
            settings["standard_blob_tier"] = StandardBlobTier(opts["access_tier"])
        if opts["tags"]:
            settings["tags"] = dict(opts["tags"])
        return settings

    def _committed(self, answer: dict[str, Any]) -> ObjectInfo:
        self._etag = answer.get("etag")
        try:
            props = self._call(lambda: self.blob.get_blob_properties(**self._pin()))
        except AccessDenied as exc:
            # A SAS may allow create/write without read. The blob is committed: report it, with what
            # could not be checked; an MD5 in the answer (Put Blob) is still compared.
            return replace(self._answer_info(answer), unverified=(
                f"read denied ({exc.code}): the stored size and checksum were not read back; "
                f"{self.checked_on_arrival}",))
        except StorageError as exc:
            # Published but unverified: remove it so a retry starts clean instead of hitting ObjectExists.
            raise self._unpublish(exc)  # noqa: B904 - the context is chained already
        return blob_info(props, self.request.key)

    def _pin(self) -> dict[str, Any]:
        """Request arguments that address the version this writer committed (its ETag), and no other."""
        return {"etag": self._etag, "match_condition": MatchConditions.IfNotModified} if self._etag else {}

    def _answer_info(self, answer: dict[str, Any]) -> ObjectInfo:
        """What the commit's answer and the request tell about the blob, when it cannot be read."""
        checksums = {SHA256_META: self._sha256_hex}  # sent as metadata with the commit
        if md5 := answer.get("content_md5"):  # Put Blob: the MD5 the service computed on arrival
            checksums["md5"] = bytes(md5).hex()
        return ObjectInfo(key=self.request.key, size=self._size, etag=(self._etag or "").strip('"') or None,
                          content_type=self.request.content_type, metadata=dict(self.request.metadata),
                          checksums=checksums, storage_class=self.provider.options["access_tier"],
                          last_modified=answer.get("last_modified"))

    def _find_own_commit(self) -> ObjectInfo | None:
        try:
            props = self._call(lambda: self.blob.get_blob_properties())
        except ObjectNotFound:
            return None
        if props.size != self._size or (props.metadata or {}).get(SHA256_META) != self._sha256_hex:
            return None
        return self._committed({"etag": props.etag, "last_modified": props.last_modified})

    @property
    def checked_on_arrival(self) -> str:
        return "the service checked the MD5 of each block (or of the whole blob) on arrival"

    def _service_mismatches(self, info: ObjectInfo, parts: list[Part]) -> list[str]:
        problems = []
        if info.checksums.get("sha256") != self._sha256_hex:
            problems.append("sha256 metadata missing or different")
        stored = info.checksums.get("md5")
        if self._md5 is not None and stored is not None and stored != self._md5.hex():
            problems.append(f"md5 {stored} stored, {self._md5.hex()} sent")
        return problems

    def _open_committed(self, start: int, length: int | None) -> BinaryIO:
        what = self.describe
        try:
            downloader = self.blob.download_blob(offset=start, length=length, max_concurrency=1, **self._pin())
        except AzureError as exc:
            raise translate(exc, what, reading=True) from exc
        return chunk_reader(downloader.chunks(), lambda exc: translate(exc, what, reading=True))

    def _cancel(self) -> None:
        """Nothing to call: Azure has no abort for staged blocks.

        Uncommitted blocks are invisible (Get Blob Properties answers 404, List Blobs omits them) and
        the service drops them at the name's next commit or after a week. Until then they count as
        stored bytes and against the 100,000 uncommitted blocks a name may hold.
        """

    def _delete_committed(self) -> None:
        # Only the version this writer committed: if another writer replaced it since, theirs stays.
        try:
            self.blob.delete_blob(delete_snapshots="include", **self._pin())
        except HttpResponseError as exc:
            if error_code(exc) not in ("BlobNotFound", "ConditionNotMet"):
                raise translate(exc, self.describe) from exc
        except AzureError as exc:
            raise translate(exc, self.describe) from exc


def blob_info(props: BlobProperties, key: str) -> ObjectInfo:
    metadata = dict(props.metadata or {})
    checksums = {}
    if sha256 := metadata.pop(SHA256_META, None):
        checksums["sha256"] = sha256
    if md5 := props.content_settings.content_md5:
        checksums["md5"] = bytes(md5).hex()
    tier = props.blob_tier
    return ObjectInfo(key=key, size=props.size, etag=(props.etag or "").strip('"') or None,
                      content_type=props.content_settings.content_type, metadata=metadata, checksums=checksums,
                      storage_class=str(getattr(tier, "value", tier)) if tier else None,
                      last_modified=props.last_modified)

