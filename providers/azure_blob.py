"""Azure Blob Storage, az://container/prefix: staged blocks published by one Put Block List.

A large object goes up as blocks (Put Block, each checked by the service against the MD5 we send)
and becomes visible only when the block list is committed. An object smaller than one part goes up
with a single Put Blob, also MD5-checked, for which the service stores the blob's Content-MD5.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, BinaryIO, ClassVar, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobClient, BlobProperties, ContainerClient, ContentSettings, StandardBlobTier

from .azure_errors import error_code, translate
from .azure_options import ENV_CONNECTION_STRING, MAX_BLOCK_SIZE, MIB, OPTIONS, check_options
from .base import StorageProvider
from .errors import AccessDenied, ConfigurationError, ObjectNotFound, StorageError
from .options import Option
from .reader import chunk_reader
from .types import ObjectInfo
from .writer import ObjectWriter, Part, WriteRequest

MAX_BLOCKS = 50_000
MAX_PUT_BLOB = 5000 * MIB  # above any single-part write (parts are <= 4000 MiB), so Put Blob never splits
DOWNLOAD_CHUNK = 4 * MIB  # the most a reader holds at once
SDK_RETRIES = 3  # the SDK's default of 10 with 15 s+ backoff hides outages for minutes; callers retry too
SHA256_META = "sha256"
_METADATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # names travel as x-ms-meta-* headers
T = TypeVar("T")


def _md5(data: bytes | bytearray) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class AzureBlobProvider(StorageProvider):
    scheme = "az"
    options_spec: ClassVar[dict[str, Option]] = OPTIONS
    permissions: ClassVar[dict[str, str]] = {
        "write": "SAS create and write (c, w), or the Storage Blob Data Contributor role",
        "read": "SAS read (r), or the Storage Blob Data Reader role",
        "delete": "SAS delete (d), or the Storage Blob Data Contributor role",
        "tag": "SAS tag (t), or the Storage Blob Data Owner role"}

    def probe_variant(self, *, tags: bool) -> StorageProvider:
        probe = super().probe_variant(tags=tags)
        if self.options["access_tier"] != "Archive":
            return probe
        # An archived blob cannot be read back before rehydration: probe in the account's tier.
        probe = copy.copy(probe)
        probe.options = {**probe.options, "access_tier": None}
        return probe

    # ---- configuration --------------------------------------------------------------------------
    def _validate(self) -> None:
        self._env_connection, self._account_name = check_options(self.options, self.location,
                                                                 f"az://{self.location}")

    def _new_client(self) -> ContainerClient:
        timeout = self.options["timeout"]
        settings: dict[str, Any] = dict(
            connection_timeout=timeout, read_timeout=timeout, retry_total=SDK_RETRIES,
            max_single_put_size=MAX_PUT_BLOB, max_single_get_size=DOWNLOAD_CHUNK, max_chunk_get_size=DOWNLOAD_CHUNK)
        conn = self.options["connection_string"]
        if self._env_connection:
            conn = os.environ.get(ENV_CONNECTION_STRING)  # read per process, never pickled with the provider
            if not conn:
                raise ConfigurationError(f"{ENV_CONNECTION_STRING} is not set in this process ({self.url})")
        try:
            if conn is not None:
                return ContainerClient.from_connection_string(conn, self.location, **settings)
            return ContainerClient(self.options["account_url"], self.location, credential=self._credential(),
                                   **settings)
        except ValueError as exc:  # checked at open already; the SDK's own words stay in the chained error
            raise ConfigurationError(f"cannot use the Azure endpoint/credentials given for {self.url}: the "
                                     "connection string or account_url is malformed") from exc

    def _credential(self) -> Any:
        if self.options["account_key"] is not None:
            return AzureNamedKeyCredential(self._account_name, self.options["account_key"])
        if self.options["sas_token"] is not None:
            return AzureSasCredential(self.options["sas_token"].lstrip("?"))
        from azure.identity import DefaultAzureCredential  # checked in _validate

        return DefaultAzureCredential()

    def _part_size(self, size_hint: int | None) -> int:
        size = super()._part_size(size_hint)
        if size_hint and size_hint > size * MAX_BLOCKS:
            # Grow the blocks (in whole MiB) so that the announced size fits in 50,000 of them.
            size = min(MAX_BLOCK_SIZE, math.ceil(size_hint / MAX_BLOCKS / MIB) * MIB)
        return size

    # ---- the core -------------------------------------------------------------------------------
    def _writer(self, request: WriteRequest) -> ObjectWriter:
        for name in request.metadata:
            if not _METADATA_NAME.match(name) or name.lower() == SHA256_META:
                raise ConfigurationError(f"metadata name {name!r} cannot be used on Azure for "
                                         f"{self.describe(request.key)}: names are letters, digits and '_', "
                                         f"not starting with a digit, and {SHA256_META!r} is reserved")
        return AzureBlobWriter(self, request)

    def _stat(self, full_key: str, key: str) -> ObjectInfo:
        blob = self.client.get_blob_client(full_key)
        return blob_info(self._azure(lambda: blob.get_blob_properties(), key), key)

    def _open_reader(self, full_key: str) -> BinaryIO:
        what = self.describe(full_key[len(self.prefix):])
        try:
            # max_concurrency=1 fetches DOWNLOAD_CHUNK at a time, in order, as the caller reads.
            downloader = self.client.get_blob_client(full_key).download_blob(max_concurrency=1)
        except AzureError as exc:
            raise translate(exc, what, reading=True) from exc
        return chunk_reader(downloader.chunks(), lambda exc: translate(exc, what, reading=True))

    def _delete(self, full_key: str) -> None:
        key = full_key[len(self.prefix):]
        try:
            self.client.get_blob_client(full_key).delete_blob(delete_snapshots="include")
        except HttpResponseError as exc:
            if error_code(exc) != "BlobNotFound":
                raise translate(exc, self.describe(key)) from exc
        except AzureError as exc:
            raise translate(exc, self.describe(key)) from exc

    def _azure(self, action: Callable[[], T], key: str) -> T:
        try:
            return action()
        except AzureError as exc:
            raise translate(exc, self.describe(key)) from exc


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
        self._call(lambda: self.blob.stage_block(block_id, data, length=len(data), transactional_content_md5=md5))
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

    def _put_single(self, data: bytearray, sha256_hex: str) -> ObjectInfo:
        self._md5 = _md5(data)
        # overwrite=False sends If-None-Match: * (409 BlobAlreadyExists). The service checks the
        # Content-MD5 on arrival and stores the MD5 it computed itself, compared after the write.
        # Put Blob wants bytes: one copy of less than one part.
        settings = self._settings(sha256_hex, content_md5=None)
        answer = self._call(lambda: self.blob.upload_blob(
            bytes(data), length=len(data), overwrite=not self.request.if_absent,
            transactional_content_md5=self._md5, **settings))
        return self._committed(answer)

    def _settings(self, sha256_hex: str, content_md5: bytes | None) -> dict[str, Any]:
        self._sha256_hex = sha256_hex
        opts = self.provider.options
        settings: dict[str, Any] = {
            "metadata": {**self.request.metadata, SHA256_META: sha256_hex},
            "content_settings": ContentSettings(content_type=self.request.content_type, content_md5=content_md5),
        }
        if opts["access_tier"]:
            settings["standard_blob_tier"] = StandardBlobTier(opts["access_tier"])
        if opts["tags"]:
            settings["tags"] = dict(opts["tags"])
        return settings

    def _committed(self, answer: dict[str, Any]) -> ObjectInfo:
        self._etag = answer.get("etag")
        try:
            props = self._call(lambda: self.blob.get_blob_properties(etag=self._etag,
                                                                     match_condition=MatchConditions.IfNotModified))
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
            downloader = self.blob.download_blob(offset=start, length=length, max_concurrency=1, etag=self._etag,
                                                 match_condition=MatchConditions.IfNotModified)
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
            self.blob.delete_blob(delete_snapshots="include", etag=self._etag,
                                  match_condition=MatchConditions.IfNotModified)
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

