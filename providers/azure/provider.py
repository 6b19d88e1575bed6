"""Azure Blob Storage, az://container/prefix: staged blocks published by one Put Block List.

A large object goes up as blocks (Put Block, each checked by the service against the MD5 we send)
and becomes visible only when the block list is committed. An object smaller than one part goes up
with a single Put Blob, also MD5-checked, for which the service stores the blob's Content-MD5.
The writer is in azure_writer.py, the error table in azure_errors.py.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Callable
from typing import Any, BinaryIO, ClassVar, TypeVar
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import ContainerClient

from providers.azure.errors import error_code, translate
from providers.azure.options import ENV_CONNECTION_STRING, MAX_BLOCK_SIZE, MIB, OPTIONS, check_options
from providers.azure.writer import MAX_BLOCKS, SHA256_META, AzureBlobWriter, blob_info
from providers.base import StorageProvider
from providers.errors import ConfigurationError
from providers.options import Option
from providers.reader import chunk_reader
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, WriteRequest

MAX_PUT_BLOB = 5000 * MIB  # above any single-part write (parts are <= 4000 MiB), so Put Blob never splits
DOWNLOAD_CHUNK = 4 * MIB  # the most a reader holds at once
SDK_RETRIES = 3  # the SDK's default of 10 with 15 s+ backoff hides outages for minutes; callers retry too
_METADATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # names travel as x-ms-meta-* headers
T = TypeVar("T")


class AzureBlobProvider(StorageProvider):
    scheme = "az"
    options_spec: ClassVar[dict[str, Option]] = OPTIONS
    permissions: ClassVar[dict[str, str]] = {
        "write": "SAS create and write (c, w), or the Storage Blob Data Contributor role",
        "read": "SAS read (r), or the Storage Blob Data Reader role",
        "delete": "SAS delete (d), or the Storage Blob Data Contributor role",
        "tag": "SAS tag (t), or the Storage Blob Data Owner role"}
    credentials_hint: ClassVar[str] = (
        "give the destination connection_string_env = \"VARIABLE\", or account_url with account_key_env or "
        "sas_token_env, or account_url alone for Azure AD (azure-identity: AZURE_CLIENT_ID, AZURE_TENANT_ID, "
        "AZURE_CLIENT_SECRET or a managed identity); or set AZURE_STORAGE_CONNECTION_STRING")

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

    def _check_secrets(self) -> None:
        check_options(self.options, self.location, f"az://{self.location}", resolved=True)

    def service_endpoint(self) -> str | None:
        """The account's blob endpoint: the container URL without the container (or any query)."""
        parts = urlsplit(self.client.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/').rpartition('/')[0]}"

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
