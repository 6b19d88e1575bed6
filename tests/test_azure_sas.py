"""Azure shared access signatures that allow less than everything, against real Azurite and real
SAS tokens: a commit that cannot be read back is reported, not failed; nothing is left visible
behind an error without the error saying so; `check()` names the permission a SAS lacks.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from providers import AccessDenied, IntegrityError, StorageProvider, open_provider
from tests.backends import create_az_container, unique_name
from tests.emulators import AZURITE_ACCOUNT, AZURITE_KEY
from tests.http_proxy import Proxy, Seen, error_answer

SMALL = 256 << 10
SIZES = {"single-put": 100, "staged-blocks": 3 * SMALL + 1}


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


def sas(container: str, **permissions: bool) -> str:
    return generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                  permission=ContainerSasPermissions(**permissions),
                                  expiry=datetime.now(UTC) + timedelta(hours=1))


def with_sas(endpoint: str, container: str, **options: Any) -> StorageProvider:
    return open_provider(f"az://{container}/pre", account_url=endpoint, part_size=SMALL, **options)


def listed(conn: str, container: str) -> dict[str, bytes]:
    """Every blob in the container, as the account owner sees it."""
    client = ContainerClient.from_connection_string(conn, container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_a_sas_without_read_commits_and_says_what_it_could_not_verify(conn: str, container: str, endpoint: str,
                                                                      size: int) -> None:
    provider = with_sas(endpoint, container, sas_token=sas(container, create=True, write=True))
    data = os.urandom(size)
    info = provider.upload("w/a.bin", io.BytesIO(data))
    assert info.size == size
    assert len(info.unverified) == 1
    assert info.unverified[0].startswith("read denied (AuthorizationPermissionMismatch): the stored size and "
                                         "checksum were not read back; the service checked the MD5")
    assert listed(conn, container) == {"pre/w/a.bin": data}  # committed, and reported as such


def test_check_with_a_sas_without_read_names_read_and_removes_its_probe(conn: str, container: str,
                                                                        endpoint: str) -> None:
    provider = with_sas(endpoint, container, sas_token=sas(container, create=True, write=True, delete=True))
    report = provider.check()
    assert [(s.name, s.ok) for s in report.steps] == [("write", True), ("stat", False), ("read", False),
                                                      ("delete", True)]
    assert report.steps[0].message.startswith("write ok; not verified: read denied")
    assert report.steps[1].message == (f"stat denied: AuthorizationPermissionMismatch on az://{container}/pre/ "
                                       f"(endpoint {endpoint}) (missing the read permission: SAS read (r), or the "
                                       "Storage Blob Data Reader role)")
    assert listed(conn, container) == {}


def test_check_names_a_probe_it_could_not_delete(conn: str, container: str, endpoint: str) -> None:
    provider = with_sas(endpoint, container, sas_token=sas(container, create=True, write=True))
    report = provider.check()
    delete = report.steps[-1]
    assert (delete.name, delete.ok) == ("delete", False)
    assert "(missing the delete permission: SAS delete (d)" in delete.message
    left = list(listed(conn, container))
    assert len(left) == 1 and left[0].startswith("pre/.archiver-probe-")
    assert delete.message.endswith(f"; remove az://{container}/{left[0]} by hand")


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_an_integrity_failure_that_cannot_delete_says_the_object_is_still_visible(conn: str, container: str,
                                                                          endpoint: str, size: int) -> None:
    provider = with_sas(endpoint, container, sas_token=sas(container, read=True, create=True, write=True))
    with provider.open_writer("i/a.bin") as writer:
        writer.write(os.urandom(size))
        writer._size += 1  # what was streamed no longer matches what Azure will report: proof
        with pytest.raises(IntegrityError) as excinfo:
            writer.commit()
    assert excinfo.value.left_visible == "i/a.bin"
    assert f"the object is still visible at az://{container}/pre/i/a.bin (deleting it failed: " \
           "AuthorizationPermissionMismatch)" in str(excinfo.value)
    assert list(listed(conn, container)) == ["pre/i/a.bin"]


@pytest.fixture
def tagless(endpoint: str) -> Iterator[Proxy]:
    """Azure refuses x-ms-tags from a SAS without the tag permission (t); Azurite does not check."""
    proxy = Proxy(endpoint)
    proxy.rule = lambda seen: (error_answer(403, "AuthorizationPermissionMismatch")
                               if seen.header("x-ms-tags") is not None else None)
    yield proxy
    proxy.close()


def test_check_names_a_missing_tag_permission(conn: str, container: str, tagless: Proxy) -> None:
    token = sas(container, read=True, create=True, write=True, delete=True)
    provider = with_sas(f"{tagless.url}/{AZURITE_ACCOUNT}", container, sas_token=token, tags={"k": "v"})
    report = provider.check()
    assert [(s.name, s.ok) for s in report.steps] == [("write", True), ("tag", False), ("stat", True),
                                                      ("read", True), ("compare", True), ("delete", True)]
    assert report.steps[1].message == (f"write with tags denied: AuthorizationPermissionMismatch on az://{container}"
                                       f"/pre/ (endpoint {tagless.url}/{AZURITE_ACCOUNT}) (missing the tag permission: "
                                       "SAS tag (t), or the Storage Blob Data Owner role)")
    assert listed(conn, container) == {}
    tagged: list[Seen] = [s for s in tagless.seen if s.header("x-ms-tags")]
    assert len(tagged) == 1


def test_a_read_only_sas_is_denied_writes(conn: str, container: str, endpoint: str) -> None:
    open_provider(f"az://{container}/pre", connection_string=conn).upload("old.bin", io.BytesIO(b"hello"))
    token = sas(container, read=True, list=True)
    provider = with_sas(endpoint, container, sas_token=token)
    with provider.open_reader("old.bin") as reader:
        assert reader.read() == b"hello"
    with pytest.raises(AccessDenied) as excinfo:
        provider.upload("k.bin", io.BytesIO(b"x"))
    assert str(excinfo.value) == f"denied: AuthorizationPermissionMismatch on az://{container}/pre/k.bin"
    with pytest.raises(AccessDenied):
        provider.upload("big.bin", io.BytesIO(os.urandom(SMALL + 1)))  # Put Block is refused too
    report = provider.check()
    assert [(s.name, s.ok) for s in report.steps] == [("write", False)]
    assert report.steps[0].message.startswith(f"write denied: AuthorizationPermissionMismatch on az://{container}"
                                              f"/pre/ (endpoint {endpoint}) (missing the write permission: SAS "
                                              "create and write")
    signature = token.split("sig=")[1].split("&")[0]
    assert signature not in str(report) + str(excinfo.value) + repr(provider)


def test_sas_token_with_every_right_passes_check(conn: str, container: str, endpoint: str) -> None:
    token = sas(container, read=True, write=True, create=True, delete=True, tag=True, list=True)
    provider = with_sas(endpoint, container, sas_token="?" + token, tags={"k": "v"})
    report = provider.check()
    assert report.ok, str(report)
    assert [s.name for s in report.steps] == ["write", "tag", "stat", "read", "compare", "delete"]
    assert listed(conn, container) == {}
    assert token not in repr(provider) + repr(pickle.loads(pickle.dumps(provider)))
