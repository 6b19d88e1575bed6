"""archiver.source against a real HTTP server on 127.0.0.1 (tests/http_source.py); httpx is not mocked.

Every client here goes through ``_LoopbackOnly``: a tripwire transport that fails the test at once
if anything tries to connect anywhere but 127.0.0.1, so a guard that let a private address through
fails loudly instead of sending traffic off the machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from archiver import ssrf
from archiver.source import (
    PermanentSourceError,
    SourceChanged,
    SourcePolicy,
    TransientSourceError,
    check_url,
    open_source,
)
from tests.http_source import HttpSource, content, sha256

LOCAL = SourcePolicy(allow_hosts=("127.0.0.1",), allow_http=True, allowed_networks=("127.0.0.1/32",),
                     connect_timeout=2.0, read_timeout=5.0, resume_backoff=0.01)
MiB = 1 << 20


def policy(**changes: object) -> SourcePolicy:
    return dataclasses.replace(LOCAL, **changes)  # type: ignore[arg-type]


class _LoopbackOnly(httpx.BaseTransport):
    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self.inner = httpx.HTTPTransport(verify=verify)
        self.hosts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        if request.url.host != "127.0.0.1":
            raise AssertionError(f"tried to connect to {request.url.host}")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def cdn() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


@pytest.fixture
def wire() -> Iterator[_LoopbackOnly]:
    yield _LoopbackOnly()


@pytest.fixture
def client(wire: _LoopbackOnly) -> Iterator[httpx.Client]:
    with httpx.Client(transport=wire) as c:
        yield c


def read_all(url: str, client: httpx.Client, pol: SourcePolicy = LOCAL, **kw: object) -> tuple[bytes, int]:
    with open_source(url, pol, client=client, **kw) as stream:  # type: ignore[arg-type]
        buf, parts = bytearray(100_003), []  # odd size: never aligned with the server's chunks
        while n := stream.readinto(buf):
            parts.append(bytes(buf[:n]))
        assert stream.bytes_read == sum(map(len, parts))
        return b"".join(parts), stream.resumes


def fails(exc_type: type[Exception], code: str, url: str, client: httpx.Client, pol: SourcePolicy = LOCAL,
          **kw: object) -> Exception:
    with pytest.raises(exc_type) as info:
        read_all(url, client, pol, **kw)
    assert info.value.code == code, info.value  # type: ignore[attr-defined]
    assert "?" not in str(info.value), "messages must not carry the query string (signed URLs)"
    return info.value


# --- downloads -------------------------------------------------------------------------------------

def test_full_download_streams_identical_bytes(cdn: HttpSource) -> None:
    url = cdn.file_url("full.mp4", size=3 * MiB + 7)
    with open_source(url, LOCAL) as stream:  # default client
        assert (stream.size, stream.content_type, stream.final_url) == (3 * MiB + 7, "video/mp4", url)
        assert stream.etag and stream.last_modified
        digest = hashlib.sha256()
        while chunk := stream.read(64 * 1024):
            assert len(chunk) <= 64 * 1024
            digest.update(chunk)
    assert digest.hexdigest() == sha256("full.mp4", 3 * MiB + 7)
    assert [h.range for h in cdn.hits("/files/full.mp4")] == [None]


@pytest.mark.parametrize("reset", [False, True])
def test_dropped_connection_resumes_with_range(cdn: HttpSource, client: httpx.Client, reset: bool) -> None:
    name = f"drop-{reset}.mp4"
    data, resumes = read_all(cdn.file_url(name, size=2 * MiB, drop=700_000, reset=int(reset)), client)
    assert data == content(name, 2 * MiB) and resumes == 1
    first, second = cdn.hits(f"/files/{name}")
    assert first.range is None and second.range and second.range.startswith("bytes=")
    assert second.if_range and second.if_range.startswith('"')  # strong ETag preferred
    if not reset:  # a clean close delivers exactly the bytes before the drop
        assert second.range == "bytes=700000-"


def test_weak_etag_resumes_against_last_modified(cdn: HttpSource, client: httpx.Client) -> None:
    data = bytes(range(256)) * 1200
    cdn.add_file("weak.mp4", data)  # a registered file: served as given, size ignored
    with open_source(cdn.file_url("weak.mp4", drop=100_000, weak=1), LOCAL, client=client) as stream:
        assert stream.read() == data and stream.size == len(data) and stream.etag.startswith("W/")  # type: ignore[union-attr]
        assert [h.if_range for h in cdn.hits("/files/weak.mp4")] == [None, stream.last_modified]


def test_relative_redirect_is_followed(cdn: HttpSource, client: httpx.Client) -> None:
    target = "/files/moved.mp4?size=5000"
    with open_source(cdn.redirect_url(target, code=307), LOCAL, client=client) as stream:
        assert stream.read() == content("moved.mp4", 5000)
        assert stream.final_url == cdn.url(target)


@pytest.mark.parametrize("fault", [{"norange": 1}, {"rotate": 1}, {"novalidator": 1}],
                         ids=["range-ignored", "etag-changed", "no-validator"])
def test_resume_that_cannot_be_proven_safe_raises_source_changed(cdn: HttpSource, client: httpx.Client,
                                                                   fault: dict[str, int]) -> None:
    name = f"changed-{next(iter(fault))}.mp4"
    with open_source(cdn.file_url(name, size=MiB, drop=300_000, **fault), LOCAL, client=client) as stream:
        with pytest.raises(SourceChanged) as info:
            stream.read()
        assert info.value.code == "changed" and info.value.retryable
        with pytest.raises(SourceChanged):
            stream.read(10)  # sticky: a caller that reads again gets the same verdict, not a short file
    ranges = [h.range for h in cdn.hits(f"/files/{name}")]
    # without a validator there is nothing to put in If-Range, so no resume may even be attempted
    assert ranges == ([None] if "novalidator" in fault else [None, "bytes=300000-"])


def test_drops_beyond_max_resumes(cdn: HttpSource, client: httpx.Client) -> None:
    url = cdn.file_url("flaky.mp4", size=MiB, drop=10_000, drops=99)
    error = fails(TransientSourceError, "resume_exhausted", url, client, policy(max_resumes=3))
    assert not isinstance(error, SourceChanged)
    assert [h.range for h in cdn.hits("/files/flaky.mp4")] == [None] + [f"bytes={n}-" for n in (10_000, 20_000,
                                                                                               30_000)]


# --- statuses and bodies ---------------------------------------------------------------------------

def test_server_errors_are_transient(cdn: HttpSource, client: httpx.Client) -> None:
    url = cdn.file_url("busy.mp4", size=1000, fail=1)
    assert fails(TransientSourceError, "http_status", url, client).retryable  # type: ignore[attr-defined]
    assert read_all(url, client)[0] == content("busy.mp4", 1000)  # the second request succeeds
    fails(TransientSourceError, "http_status", cdn.file_url("limited.mp4", status=429), client)


@pytest.mark.parametrize(("status", "code"), [(404, "not_found"), (410, "gone"), (403, "forbidden"),
                                              (401, "forbidden"), (400, "http_status")])
def test_client_errors_are_permanent(cdn: HttpSource, client: httpx.Client, status: int, code: str) -> None:
    error = fails(PermanentSourceError, code, cdn.file_url("x.mp4", status=status, token="SECRET"), client)
    assert not error.retryable and "SECRET" not in str(error)  # type: ignore[attr-defined]
    assert "/files/x.mp4" in str(error) and str(status) in str(error)


@pytest.mark.parametrize("fault", [{"page": "html"}, {"page": "json"}, {"type": "application/problem+json"}])
def test_error_pages_are_not_archived(cdn: HttpSource, client: httpx.Client, fault: dict[str, str]) -> None:
    fails(PermanentSourceError, "content_type", cdn.file_url("page.mp4", **fault), client)


@pytest.mark.parametrize("fault", [{"lie": 1000}, {"lie": -1000, "drop": 5000},
                                   {"rangelie": 1000, "drop": 5000}, {"rangelie": -1000, "drop": 5000}],
                         ids=["declares-more", "declares-fewer", "range-sends-more", "range-sends-fewer"])
def test_lying_lengths(cdn: HttpSource, client: httpx.Client, fault: dict[str, int]) -> None:
    name = "lie-" + "-".join(f"{k}{v}" for k, v in fault.items())
    got = bytearray()
    with open_source(cdn.file_url(name, size=100_000, **fault), LOCAL, client=client) as stream:
        with pytest.raises(TransientSourceError) as info:
            while chunk := stream.read(10_000):
                got += chunk
        assert info.value.code == "length_mismatch" and not isinstance(info.value, SourceChanged), info.value
    assert got == content(name, 100_000)[: len(got)]  # the caller never saw a byte that is not the file's


def test_slow_trickle_within_read_timeout_completes(cdn: HttpSource, client: httpx.Client) -> None:
    data, resumes = read_all(cdn.file_url("slow.mp4", size=100_000, trickle="10000:0.05"), client,
                             policy(read_timeout=1.0))
    assert data == content("slow.mp4", 100_000) and resumes == 0


@pytest.mark.parametrize(("max_resumes", "code"), [(0, "timeout"), (1, "resume_exhausted")])
def test_stall_beyond_read_timeout(cdn: HttpSource, client: httpx.Client, max_resumes: int, code: str) -> None:
    url = cdn.file_url(f"stall{max_resumes}.mp4", size=5000, trickle="1000:2")
    error = fails(TransientSourceError, code, url, client, policy(read_timeout=0.3, max_resumes=max_resumes))
    assert "timed out" in str(error)


def test_no_answer_within_read_timeout(cdn: HttpSource, client: httpx.Client) -> None:
    fails(TransientSourceError, "timeout", cdn.file_url("mute.mp4", ttfb=1), client, policy(read_timeout=0.3))


# --- SSRF guard ------------------------------------------------------------------------------------

def test_default_policy_hosts() -> None:
    default = SourcePolicy()
    check_url("https://cdn.videosdk.live/encoded/videos/ab12.mp4?token=x", default)
    check_url("https://eu.videosdk.live/x.mp4", default)
    for url in ("https://videosdk.live/x.mp4", "https://cdn.videosdk.live.evil.com/x.mp4",
                "https://evilvideosdk.live/x.mp4", "http://cdn.videosdk.live/x.mp4", "file:///etc/passwd",
                "ftp://cdn.videosdk.live/x.mp4", "gopher://cdn.videosdk.live/", "https://u:p@cdn.videosdk.live/x",
                "https://169.254.169.254/latest/meta-data/", "//cdn.videosdk.live/x.mp4"):
        with pytest.raises(PermanentSourceError) as info:
            check_url(url, default)
        assert info.value.code in ("ssrf", "bad_url") and "p@" not in str(info.value)


@pytest.mark.parametrize(("address", "problem"), [
    ("127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "shared"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"), ("::1", "loopback"), ("fc00::1", "private"),
    ("fe80::1", "link-local"), ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a9fe:a9fe", "link-local"), ("2002:a00:1::", "private"),
    ("fec0::1", "site-local"), ("8.8.8.8", None), ("2606:4700::1", None), ("64:ff9b::808:808", None)])
def test_address_classification(address: str, problem: str | None) -> None:
    found = ssrf.address_problem(ssrf.parse_ip(address))  # type: ignore[arg-type]
    assert (found is None) if problem is None else (found is not None and problem in found), found
    exempt = ssrf.parse_networks([address + ("/128" if ":" in address else "/32")])
    assert ssrf.address_problem(ssrf.parse_ip(address), exempt) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("host", "allow"), [("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"),
                                             ("169.254.169.254", "169.254.169.254"), ("localhost", "localhost"),
                                             ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1")])
def test_private_addresses_refused_before_connecting(cdn: HttpSource, client: httpx.Client,
                                                     wire: _LoopbackOnly, host: str, allow: str) -> None:
    before = len(cdn.hits())
    url = f"http://{host}:{cdn.port}/files/a.mp4?size=10"
    # allowed host, http allowed: only the address check stands in the way
    fails(PermanentSourceError, "ssrf", url, client, policy(allow_hosts=(allow,), allowed_networks=()))
    assert wire.hosts == [] and len(cdn.hits()) == before


def test_every_resolved_address_is_checked(cdn: HttpSource, client: httpx.Client, wire: _LoopbackOnly) -> None:
    seen: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        seen.append(host)
        return ["127.0.0.1", "10.0.0.1"]

    url = cdn.file_url("a.mp4", host="cdn.test")
    fails(PermanentSourceError, "ssrf", url, client, policy(allow_hosts=("cdn.test",)), resolver=resolver)
    assert seen == ["cdn.test"] and wire.hosts == []
    fails(PermanentSourceError, "ssrf", cdn.file_url("a.mp4", host="evil.test"), client,
          policy(allow_hosts=("cdn.test",)), resolver=resolver)
    assert seen == ["cdn.test"]  # a disallowed host is refused before any DNS


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x",
                                    "http://[fd00::1]/x", "http://evil.test/x", "file:///etc/passwd",
                                    "http://user:pw@127.0.0.1:1/x"])
def test_redirects_are_guarded_per_hop(cdn: HttpSource, client: httpx.Client, wire: _LoopbackOnly,
                                       target: str) -> None:
    pol = policy(allow_hosts=("127.0.0.1", "169.254.169.254", "10.0.0.1", "fd00::1"))
    error = fails(PermanentSourceError, "ssrf", cdn.redirect_url(target), client, pol)
    assert wire.hosts == ["127.0.0.1"] and "pw" not in str(error)


def test_too_many_redirects(cdn: HttpSource, client: httpx.Client) -> None:
    fails(PermanentSourceError, "redirects", cdn.url("/loop"), client, policy(max_redirects=2))
    assert len(cdn.hits("/loop")) == 3


def test_connects_to_the_checked_address_even_if_dns_changes(cdn: HttpSource, client: httpx.Client,
                                                             wire: _LoopbackOnly) -> None:
    answers = iter([["127.0.0.1"], ["127.0.0.1"], ["10.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    pol = policy(allow_hosts=("cdn.test",))
    with open_source(cdn.file_url("pin.mp4", size=50_000, host="cdn.test"), pol, client=client,
                     resolver=rebinding) as stream:
        assert stream.read() == content("pin.mp4", 50_000)
    assert cdn.hits("/files/pin.mp4")[-1].host == f"cdn.test:{cdn.port}"  # name kept for virtual hosting
    # a resume resolves again and the new answer is checked again before connecting
    url = cdn.file_url("pin2.mp4", size=50_000, host="cdn.test", drop=20_000)
    fails(PermanentSourceError, "ssrf", url, client, pol, resolver=rebinding)
    assert wire.hosts == ["127.0.0.1", "127.0.0.1"]


# --- TLS: connect to the IP, verify the certificate against the name --------------------------------

def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize(("cert_name", "ok"), [("cdn.test", True), ("other.test", False)])
def test_tls_verifies_the_name_while_connecting_to_the_checked_ip(tmp_path: Path, cert_name: str, ok: bool) -> None:
    cert, key = _certificate(tmp_path, cert_name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    wire = _LoopbackOnly(verify=trust)
    pol = policy(allow_http=False, allow_hosts=("cdn.test",))
    with HttpSource(tls=server_ctx) as tls_cdn, httpx.Client(transport=wire) as client:
        url = tls_cdn.file_url("tls.mp4", size=20_000, host="cdn.test")
        if ok:
            data, _ = read_all(url, client, pol, resolver=lambda host, port: ["127.0.0.1"])
            assert data == content("tls.mp4", 20_000)
        else:
            fails(TransientSourceError, "tls", url, client, pol, resolver=lambda host, port: ["127.0.0.1"])
    assert wire.hosts == ["127.0.0.1"]
