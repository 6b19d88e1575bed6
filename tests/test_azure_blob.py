"""What only Azure has: tiers, tags, staged blocks, SAS and shared-key credentials, against real Azurite."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pickle
import sys
import time
import tracemalloc
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError
from azure.storage.blob import BlobClient, ContainerClient

import providers.azure.writer as azure_writer
from providers import (
    AuthenticationError,
    ConfigurationError,
    IntegrityError,
    MissingSecret,
    StorageProvider,
    TransientError,
    open_provider,
)
from providers.azure.errors import translate
from tests.backends import create_az_container, unique_name
from tests.emulators import AZURITE_ACCOUNT, AZURITE_KEY

SMALL = 256 << 10  # Azure takes blocks of any size, so staged writes stay tiny here
WRONG_KEY = base64.b64encode(b"not the account key, just 64 bytes of something else entirely!!!").decode()
OFFLINE_CONN = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:9/{AZURITE_ACCOUNT};")


@pytest.fixture
def conn(azurite_connection_string: str) -> str:
    return azurite_connection_string


@pytest.fixture
def endpoint(conn: str) -> str:
    return next(p.split("=", 1)[1] for p in conn.split(";") if p.startswith("BlobEndpoint="))


@pytest.fixture
def container(conn: str) -> str:
    name = unique_name()
    create_az_container(conn, name)
    return name


def make(container: str, conn: str, **options: Any) -> StorageProvider:
    return open_provider(f"az://{container}/pre", connection_string=conn, **options)


def blob(conn: str, container: str, key: str) -> Any:
    return ContainerClient.from_connection_string(conn, container).get_blob_client(f"pre/{key}")


@pytest.mark.parametrize("size", [100, 3 * SMALL + 1], ids=["single-put", "staged-blocks"])
def test_access_tier_and_tags_land(conn: str, container: str, size: int) -> None:
    tags = {"project": "archiver", "source": "videosdk"}
    provider = make(container, conn, access_tier="Cool", tags=tags, part_size=SMALL)
    data = os.urandom(size)
    written = provider.upload("t/a.bin", io.BytesIO(data), content_type="video/mp4")
    info = provider.stat("t/a.bin")
    assert written.storage_class == info.storage_class == "Cool"
    assert info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    assert "sha256" not in info.metadata
    assert blob(conn, container, "t/a.bin").get_blob_tags() == tags
    if size < SMALL:  # Put Blob: the service computed and stored the MD5 of what it received
        assert info.checksums["md5"] == hashlib.md5(data).hexdigest()
    else:  # four blocks, committed in order
        committed, uncommitted = blob(conn, container, "t/a.bin").get_block_list("all")
        assert ([b.size for b in committed], uncommitted) == ([SMALL, SMALL, SMALL, 1], [])
        assert "md5" not in info.checksums
        with provider.open_reader("t/a.bin") as reader:
            assert reader.read() == data


def uncommitted_blocks(staged: BlobClient) -> list:
    try:
        return staged.get_block_list("uncommitted")[1]
    except ResourceNotFoundError:  # before the first block lands, the name does not exist at all
        return []


def test_abort_leaves_only_invisible_uncommitted_blocks(conn: str, container: str) -> None:
    provider = make(container, conn, part_size=SMALL, concurrency=3)
    staged = blob(conn, container, "ab/a.bin")
    with pytest.raises(RuntimeError, match="source died"), provider.open_writer("ab/a.bin") as writer:
        writer.write(os.urandom(2 * SMALL + 5))  # two blocks on their way
        deadline = time.monotonic() + 10
        while len(uncommitted_blocks(staged)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("source died")
    assert not provider.exists("ab/a.bin")
    assert list(ContainerClient.from_connection_string(conn, container).list_blobs()) == []
    committed, uncommitted = staged.get_block_list("all")
    assert (committed, len(uncommitted)) == ([], 2)
    # The leftovers never leak into the next write of the same name.
    data = os.urandom(SMALL + 3)
    provider.upload("ab/a.bin", io.BytesIO(data))
    with provider.open_reader("ab/a.bin") as reader:
        assert reader.read() == data


def test_a_wrong_account_key_is_an_authentication_error(container: str, endpoint: str) -> None:
    provider = open_provider(f"az://{container}/pre", account_url=endpoint, account_key=WRONG_KEY)
    with pytest.raises(AuthenticationError) as excinfo:
        provider.upload("k.bin", io.BytesIO(b"x"))
    assert f"az://{container}/pre/k.bin" in str(excinfo.value)
    with pytest.raises(AuthenticationError):  # a HEAD: the code arrives in a header, not a body
        provider.stat("k.bin")
    assert WRONG_KEY not in str(excinfo.value) + repr(provider)


def test_a_missing_container_is_a_configuration_error(conn: str) -> None:
    provider = make("no-such-container", conn)
    with pytest.raises(ConfigurationError, match=r"container does not exist.*az://no-such-container/pre/k"):
        provider.upload("k.bin", io.BytesIO(b"x"))
    with pytest.raises(ConfigurationError):
        provider.stat("k.bin")
    with pytest.raises(ConfigurationError):
        provider.open_reader("k.bin")


@pytest.mark.parametrize("size", [100, 2 * SMALL + 1], ids=["single-put", "staged-blocks"])
def test_a_size_mismatch_deletes_the_blob(conn: str, container: str, size: int) -> None:
    provider = make(container, conn, part_size=SMALL)
    with provider.open_writer("i/a.bin") as writer:
        writer.write(os.urandom(size))
        writer._size += 1  # what was streamed no longer matches what Azure will report
        with pytest.raises(IntegrityError, match=f"size {size} stored, {size + 1} streamed.*deleted"):
            writer.commit()
    assert not provider.exists("i/a.bin")


def test_the_integrity_delete_spares_a_newer_version(conn: str, container: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(container, conn)
    original = azure_writer.AzureBlobWriter._committed

    def committed_then_replaced(self: Any, answer: dict[str, Any]) -> Any:
        info = original(self, answer)
        blob(conn, container, "i/b.bin").upload_blob(b"someone else's", overwrite=True)
        return info

    monkeypatch.setattr(azure_writer.AzureBlobWriter, "_committed", committed_then_replaced)
    with provider.open_writer("i/b.bin") as writer:
        writer.write(b"mine")
        writer._size += 1
        with pytest.raises(IntegrityError):
            writer.commit()
    assert blob(conn, container, "i/b.bin").download_blob().readall() == b"someone else's"


@pytest.mark.parametrize("size", [100, 2 * SMALL + 1], ids=["single-put", "staged-blocks"])
def test_the_service_checks_each_md5(conn: str, container: str, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(azure_writer, "_md5", lambda data: hashlib.md5(b"other bytes").digest())
    provider = make(container, conn, part_size=SMALL)
    with pytest.raises(TransientError, match="Md5Mismatch") as excinfo:
        provider.upload("m/a.bin", io.BytesIO(os.urandom(size)))
    assert excinfo.value.retryable
    assert not provider.exists("m/a.bin")


def test_account_url_with_account_key_works(container: str, endpoint: str) -> None:
    provider = open_provider(f"az://{container}/pre", account_url=endpoint, account_key=AZURITE_KEY)
    assert provider.check().ok
    assert AZURITE_KEY not in repr(provider)


def test_secrets_from_the_environment(conn: str, container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVER_TEST_AZ_CONN", conn)
    assert open_provider(f"az://{container}/a", connection_string_env="ARCHIVER_TEST_AZ_CONN").check().ok
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)  # the SDK-wide convention
    provider = open_provider(f"az://{container}/b")
    assert provider.check().ok
    assert AZURITE_KEY not in repr(provider) + str(pickle.dumps(provider))


def config_cases() -> list[tuple[dict[str, Any], str]]:
    url = f"http://127.0.0.1:9/{AZURITE_ACCOUNT}"
    return [
        ({"connection_string": OFFLINE_CONN, "sas_token": "sv=x&sig=y"}, "one credential.*'connection_string'"),
        ({"account_key": AZURITE_KEY}, "'account_key'.*needs 'account_url'"),
        ({"sas_token": "sv=x&sig=y"}, "'sas_token'.*needs 'account_url'"),
        ({"connection_string": OFFLINE_CONN, "account_url": url}, "'account_url'.*connection_string"),
        ({"connection_string": OFFLINE_CONN, "access_tier": "Frozen"}, "'access_tier'.*Hot, Cool, Cold, Archive"),
        ({"connection_string": OFFLINE_CONN, "tags": {"bad!": "x"}}, "'tags'.*'bad!'"),
        ({"connection_string": OFFLINE_CONN, "part_size": "5000MiB"}, "'part_size'.*4000MiB"),
        ({"account_url": url, "account_key": "not base64!"}, "'account_key'.*base64"),
        ({"account_url": url, "sas_token": "not-a-signature"}, "'sas_token'.*sig="),
        ({"account_url": "https://h.example/x?sig=secret", "sas_token": "sv=x&sig=y"}, "'account_url'.*query"),
        ({"account_url": url}, "https"),  # Azure AD tokens are never sent over plain http
        ({"account_url": "https://acct.blob.core.windows.net"}, "install azure-identity or give account_key"),
        ({"connection_string": "secret"}, "'connection_string'.*malformed"),
        ({"connection_string": "AccountName=a;AccountKey=secret!"}, "'connection_string'.*AccountKey.*base64"),
    ]


@pytest.mark.parametrize(("options", "message"), config_cases())
def test_configuration_errors_name_the_option(options: dict[str, Any], message: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if the optional package were absent
    with pytest.raises(ConfigurationError, match=message) as excinfo:
        open_provider("az://container-a/pre", **options)
    assert AZURITE_KEY not in str(excinfo.value) and "secret" not in str(excinfo.value)


def test_the_default_connection_string_is_read_only_by_a_process_that_makes_a_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    provider = open_provider("az://container-a/pre")  # a receiver opens it to validate the config: fine
    with pytest.raises(MissingSecret, match=r"no credentials.*AZURE_STORAGE_CONNECTION_STRING") as excinfo:
        provider.stat("k.bin")
    assert excinfo.value.what == "AZURE_STORAGE_CONNECTION_STRING"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=a;AccountKey=secret!")
    with pytest.raises(ConfigurationError, match=r"AZURE_STORAGE_CONNECTION_STRING.*AccountKey.*base64"):
        provider.resolve_secrets()


def test_a_bad_container_name_and_metadata_name_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="container name"):
        open_provider("az://Not_Valid/pre", connection_string=OFFLINE_CONN)
    provider = open_provider("az://container-a/pre", connection_string=OFFLINE_CONN)
    with pytest.raises(ConfigurationError, match="metadata name 'x-meeting'"):
        provider.open_writer("k.bin", metadata={"x-meeting": "1"})
    with pytest.raises(ConfigurationError, match="'sha256' is reserved"):
        provider.open_writer("k.bin", metadata={"SHA256": "1"})


def test_part_size_grows_to_fit_50000_blocks() -> None:
    provider = open_provider("az://container-a/pre", connection_string=OFFLINE_CONN, part_size=SMALL)
    assert provider.open_writer("k.bin", size_hint=50_000 * SMALL).request.part_size == SMALL
    assert provider.open_writer("k.bin", size_hint=50_000 * SMALL + 1).request.part_size == 1 << 20


def test_connection_failures_are_transient() -> None:
    error = translate(ServiceRequestError("connection refused to https://acct/c?sig=secret"), "az://c/pre/k")
    assert isinstance(error, TransientError) and error.retryable
    assert str(error) == "temporarily failed: ServiceRequestError on az://c/pre/k"


def test_a_reader_streams_and_notices_a_replaced_blob(conn: str, container: str) -> None:
    provider = make(container, conn)
    data = os.urandom(64 << 20)
    provider.upload("r/a.bin", io.BytesIO(data))
    tracemalloc.start()
    try:
        reader = provider.open_reader("r/a.bin")
        assert reader.read(1 << 20) == data[: 1 << 20]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One 4 MiB range at a time; the SDK and http.client briefly hold ~9 copies while fetching it.
    assert peak < 48 << 20
    blob(conn, container, "r/a.bin").upload_blob(b"replaced", overwrite=True)
    with pytest.raises(TransientError, match="ConditionNotMet"), reader:
        reader.read()
