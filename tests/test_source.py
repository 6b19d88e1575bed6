"""archiver.copy.source.opener against a real HTTP server on 127.0.0.1 (tests/http_source.py); httpx is not mocked.

Every client here goes through ``_LoopbackOnly``: a tripwire transport that fails the test at once
if anything tries to connect anywhere but 127.0.0.1, so a guard that let a private address through
fails loudly instead of sending traffic off the machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from archiver.copy import job as copy_job
from archiver.copy.errors import classify
from archiver.copy.source import ssrf
from archiver.copy.source.opener import (
    PermanentSourceError,
    SourceChanged,
    SourcePolicy,
    SourceStream,
    TransientSourceError,
    check_url,
    open_source,
)
from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.runtime import Runtime
from archiver.settings.config import ConfigError, load_settings
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


def read(url: str, client: httpx.Client, pol: SourcePolicy = LOCAL, **kw: object) -> tuple[bytes, SourceStream]:
    """The whole body and the (closed) stream, whose size_proven/size_note/resumes stay readable."""
    with open_source(url, pol, client=client, **kw) as stream:  # type: ignore[arg-type]
        buf, parts = bytearray(100_003), []
        while n := stream.readinto(buf):
            parts.append(bytes(buf[:n]))
    return b"".join(parts), stream


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
def test_client_errors_without_a_webhook_time_are_permanent(cdn: HttpSource, client: httpx.Client, status: int,
                                                            code: str) -> None:
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


# --- a success needs a proven length -----------------------------------------------------------------

def ranges(cdn: HttpSource, name: str) -> list[str | None]:
    return [h.range for h in cdn.hits(f"/files/{name}")]


@pytest.mark.parametrize(("size", "drop", "reset"), [(3 * MiB, 1_887_436, False), (3 * MiB, 0, False),
                                                     (100_000, 99_999, False), (1, 0, False),
                                                     (2 * MiB, 700_000, True)],
                         ids=["60%", "headers-only", "last-byte-missing", "one-byte-file", "reset"])
def test_a_close_delimited_body_cut_short_is_resumed_not_taken_as_the_file(
        cdn: HttpSource, client: httpx.Client, size: int, drop: int, reset: bool) -> None:
    name = f"close-cut-{size}-{drop}-{reset}.mp4"
    data, stream = read(cdn.file_url(name, size=size, close=1, drop=drop, reset=int(reset)), client)
    assert len(data) == size and data == content(name, size)
    assert stream.size is None and stream.size_proven, stream.size_note
    assert "Content-Range" in (stream.size_note or "")
    hits = ranges(cdn, name)
    assert hits[0] is None and len(hits) == 2 and hits[1] is not None
    if not reset:  # a clean close: the probe at the end asks for exactly the missing bytes
        assert hits[1] == f"bytes={drop}-"


@pytest.mark.parametrize("size", [3 * MiB + 7, 1, 0])
def test_a_complete_close_delimited_body_is_proven_by_a_416_probe(cdn: HttpSource, client: httpx.Client,
                                                                  size: int) -> None:
    name = f"close-full-{size}.mp4"
    data, stream = read(cdn.file_url(name, size=size, close=1), client)
    assert data == content(name, size) and stream.size_proven and "416" in (stream.size_note or "")
    assert ranges(cdn, name) == [None, f"bytes={size}-"]
    assert cdn.hits(f"/files/{name}")[1].if_range == stream.etag  # the probe is validated too


@pytest.mark.parametrize("fault", [{"novalidator": 1}, {"weak": 1, "nolm": 1}], ids=["no-validator", "weak-etag-only"])
def test_a_probe_without_a_validator_still_proves_a_whole_body(cdn: HttpSource, client: httpx.Client,
                                                               fault: dict[str, Any]) -> None:
    name = "close-novalidator-" + "-".join(f"{k}{v}" for k, v in fault.items()) + ".mp4"
    data, stream = read(cdn.file_url(name, size=200_000, close=1, **fault), client)
    assert data == content(name, 200_000) and stream.size_proven and "416" in (stream.size_note or "")
    assert [h.if_range for h in cdn.hits(f"/files/{name}")] == [None, None]  # Range only: nothing to validate


@pytest.mark.parametrize("drop", [1, 100_000, 199_999])
def test_a_body_cut_short_without_a_validator_starts_again_instead_of_succeeding(
        cdn: HttpSource, client: httpx.Client, drop: int) -> None:
    name = f"close-novalidator-cut-{drop}.mp4"
    with pytest.raises(SourceChanged, match="no strong ETag or Last-Modified"):
        read(cdn.file_url(name, size=200_000, close=1, drop=drop, novalidator=1), client)


@pytest.mark.parametrize(("fault", "why"), [({"norange": 1}, "whole file"),
                                            ({"rotate": 1}, "whole file"),
                                            ({"rotate": "lm", "ifrange": "ignore", "omit": "all"}, "416")],
                         ids=["range-ignored", "file-changed", "416-other-lm"])
def test_a_close_delimited_body_whose_length_cannot_be_proven_finishes_unproven(
        cdn: HttpSource, client: httpx.Client, fault: dict[str, Any], why: str) -> None:
    name = "close-unproven-" + "-".join(f"{k}{v}" for k, v in fault.items()) + ".mp4"
    data, stream = read(cdn.file_url(name, size=200_000, close=1, **fault), client)
    assert data == content(name, 200_000)  # not an error: the caller records the copy as unproven
    assert stream.size_proven is False and why in (stream.size_note or ""), stream.size_note


def test_the_expected_size_proves_a_close_delimited_body_without_a_probe(cdn: HttpSource,
                                                                          client: httpx.Client) -> None:
    data, stream = read(cdn.file_url("close-expected.mp4", size=MiB, close=1), client, expected_size=MiB)
    assert data == content("close-expected.mp4", MiB) and stream.size == MiB and stream.size_proven
    assert ranges(cdn, "close-expected.mp4") == [None]


@pytest.mark.parametrize("drop", [1, 500_000, MiB - 1])
def test_a_close_delimited_body_short_of_the_expected_size_is_resumed(cdn: HttpSource, client: httpx.Client,
                                                                      drop: int) -> None:
    name = f"close-expected-cut-{drop}.mp4"
    data, stream = read(cdn.file_url(name, size=MiB, close=1, drop=drop), client, expected_size=MiB)
    assert data == content(name, MiB) and stream.size_proven and stream.resumes == 1
    assert ranges(cdn, name) == [None, f"bytes={drop}-"]


def test_a_cut_short_body_that_cannot_be_resumed_restarts_instead_of_succeeding(cdn: HttpSource,
                                                                                client: httpx.Client) -> None:
    url = cdn.file_url("close-novalidator-cut.mp4", size=MiB, close=1, drop=400_000, novalidator=1)
    fails(SourceChanged, "changed", url, client, expected_size=MiB)
    assert ranges(cdn, "close-novalidator-cut.mp4") == [None]  # nothing to validate a resume with


@pytest.mark.parametrize(("fault", "delta"), [({}, 1), ({}, -1), ({"close": 1}, 7), ({"close": 1}, -7),
                                              ({"chunked": 1}, 1), ({"chunked": 1}, -1),
                                              ({"close": 1, "drop": 1000}, 7)],
                         ids=["length-more", "length-less", "close-more", "close-less", "chunked-more",
                              "chunked-less", "close-cut-more"])
def test_a_served_length_other_than_the_expected_size_is_a_length_mismatch(
        cdn: HttpSource, client: httpx.Client, fault: dict[str, int], delta: int) -> None:
    name = "expected-" + "-".join(f"{k}{v}" for k, v in fault.items()) + f"{delta}.mp4"
    size = 300_000
    error = fails(TransientSourceError, "length_mismatch", cdn.file_url(name, size=size, **fault), client,
                  expected_size=size + delta)
    assert str(size + delta) in str(error) and not isinstance(error, SourceChanged)
    assert str(size) in str(error) or str(size - delta) not in str(error), str(error)


def test_the_served_count_is_named_when_a_body_runs_past_the_expected_size(cdn: HttpSource,
                                                                           client: httpx.Client) -> None:
    error = fails(TransientSourceError, "length_mismatch", cdn.file_url("past.mp4", size=300_000, close=1),
                  client, expected_size=299_000)
    assert "299000" in str(error) and "at least" in str(error)


@pytest.mark.parametrize("drop", [1, 700_000, 2 * MiB], ids=["first-byte", "middle", "all-but-last-chunk"])
def test_a_chunked_body_without_its_last_chunk_is_resumed(cdn: HttpSource, client: httpx.Client,
                                                          drop: int) -> None:
    name = f"chunked-cut-{drop}.mp4"
    data, stream = read(cdn.file_url(name, size=2 * MiB, chunked=1, drop=drop), client)
    assert data == content(name, 2 * MiB) and stream.size_proven and stream.resumes == 1
    assert ranges(cdn, name) == [None, f"bytes={drop}-"]


def test_a_complete_chunked_body_is_proven_by_its_last_chunk(cdn: HttpSource, client: httpx.Client) -> None:
    data, stream = read(cdn.file_url("chunked-full.mp4", size=MiB + 3, chunked=1), client)
    assert data == content("chunked-full.mp4", MiB + 3) and stream.size_proven
    assert "chunk" in (stream.size_note or "") and ranges(cdn, "chunked-full.mp4") == [None]


@pytest.mark.parametrize(("fault", "expected", "code"), [
    ({"chunked": 1, "badrange": "end"}, None, "bad_range"),
    ({"chunked": 1, "badrange": "total"}, None, "bad_range"),
    ({"chunked": 1, "badrange": "start"}, None, "bad_range"),
    ({"chunked": 1, "badrange": "none"}, None, "bad_range"),
    ({"close": 1, "badrange": "total"}, 400_000, "length_mismatch"),
    ({"badrange": "total"}, None, "length_mismatch"),
], ids=["chunked-end", "chunked-total", "chunked-start", "chunked-none", "close-total-vs-expected",
        "total-vs-content-length"])
def test_a_resume_whose_content_range_does_not_fit_is_refused(cdn: HttpSource, client: httpx.Client,
                                                              fault: dict[str, Any], expected: int | None,
                                                              code: str) -> None:
    name = "badrange-" + "-".join(f"{k}{v}" for k, v in fault.items()) + ".mp4"
    got = bytearray()
    with pytest.raises(TransientSourceError) as info, open_source(
            cdn.file_url(name, size=400_000, drop=150_000, **fault), LOCAL, client=client,
            expected_size=expected) as stream:
        while chunk := stream.read(10_000):
            got += chunk
    assert info.value.code == code and not isinstance(info.value, SourceChanged), info.value
    assert got == content(name, 400_000)[: len(got)] and len(got) == 150_000  # nothing past the fault


def test_a_content_range_of_unknown_total_is_proven_by_a_probe(cdn: HttpSource, client: httpx.Client) -> None:
    data, stream = read(cdn.file_url("star.mp4", size=400_000, chunked=1, drop=150_000, badrange="star"), client)
    assert data == content("star.mp4", 400_000) and stream.size_proven and "416" in (stream.size_note or "")
    assert ranges(cdn, "star.mp4") == [None, "bytes=150000-", "bytes=400000-"]


@pytest.mark.parametrize("fault", [{"unasked": 1}, {"unasked": 1, "close": 1}])
def test_a_206_to_a_request_without_range_is_refused(cdn: HttpSource, client: httpx.Client,
                                                     fault: dict[str, int]) -> None:
    error = fails(TransientSourceError, "bad_range", cdn.file_url("unasked.mp4", size=5000, **fault), client)
    assert "206" in str(error)


# --- a resume never splices two versions ---------------------------------------------------------------

@pytest.mark.parametrize("fault", [
    {"rotate": "lm", "ifrange": "ignore"},
    {"noetag": 1, "rotate": 1, "ifrange": "ignore"},
    {"omit": "etag"},
    {"omit": "lm"},
    {"omit": "all"},
    {"noetag": 1, "omit": "lm"},
    {"weak": 1, "omit": "etag"},
    {"close": 1, "rotate": "lm", "ifrange": "ignore"},
    {"chunked": 1, "omit": "etag"},
    {"rotate": "etag", "ifrange": "ignore"},
    {"weak": 1, "rotate": "etag"},
], ids=["last-modified-changed", "last-modified-only-changed", "206-without-etag", "206-without-last-modified",
        "206-without-validators", "206-without-its-only-validator", "206-without-weak-etag",
        "close-delimited-last-modified-changed", "chunked-206-without-etag", "strong-etag-changed",
        "weak-etag-changed"])
def test_a_resume_answered_by_another_version_is_never_spliced(cdn: HttpSource, client: httpx.Client,
                                                               fault: dict[str, Any]) -> None:
    name = "splice-" + "-".join(f"{k}{v}" for k, v in fault.items()) + ".mp4"
    url = cdn.file_url(name, size=MiB, drop=300_000, **fault)
    with open_source(url, LOCAL, client=client) as stream, pytest.raises(SourceChanged) as info:
        stream.read()
    assert info.value.code == "changed" and info.value.retryable
    assert len(ranges(cdn, name)) == 2  # one validated resume (or probe), answered 206 and refused


@pytest.mark.parametrize(("fault", "sent"), [({}, "etag"), ({"weak": 1}, "last_modified"),
                                             ({"noetag": 1}, "last_modified")])
def test_if_range_carries_the_strongest_usable_validator(cdn: HttpSource, client: httpx.Client,
                                                         fault: dict[str, int], sent: str) -> None:
    name = "ifrange-" + "-".join(f"{k}{v}" for k, v in fault.items()) + ".mp4"
    data, stream = read(cdn.file_url(name, size=MiB, drop=200_000, **fault), client)
    assert data == content(name, MiB) and stream.size_proven
    assert [h.if_range for h in cdn.hits(f"/files/{name}")] == [None, getattr(stream, sent)]


@pytest.mark.parametrize("fault", [{"novalidator": 1}, {"weak": 1, "nolm": 1}], ids=["none", "weak-etag-only"])
def test_without_a_validator_for_if_range_a_drop_restarts_from_byte_0(cdn: HttpSource, client: httpx.Client,
                                                                       fault: dict[str, int]) -> None:
    name = "restart-" + "-".join(f"{k}{v}" for k, v in fault.items()) + ".mp4"
    fails(SourceChanged, "changed", cdn.file_url(name, size=MiB, drop=300_000, **fault), client)
    assert ranges(cdn, name) == [None]  # never resumed blind


# --- a fault a retry could heal is never final --------------------------------------------------------

def ago(**delta: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(**delta)


@pytest.mark.parametrize(("status", "final_code"), [(404, "not_found"), (410, "gone"), (403, "forbidden"),
                                                    (401, "forbidden")])
def test_not_found_right_after_the_webhook_is_retried_and_final_after_the_grace_window(
        cdn: HttpSource, client: httpx.Client, status: int, final_code: str) -> None:
    url = cdn.file_url(f"late-{status}.mp4", status=status, token="SECRET")
    soon = fails(TransientSourceError, "not_found_yet", url, client, announced_at=ago(minutes=2))
    assert f"HTTP {status}" in str(soon) and "grace" in str(soon) and "retried" in str(soon)
    naive = ago(minutes=1).replace(tzinfo=None)  # the ledger on SQLite hands back naive UTC
    fails(TransientSourceError, "not_found_yet", url, client, announced_at=naive)
    late = fails(PermanentSourceError, final_code, url, client, announced_at=ago(hours=2))
    for part in (f"HTTP {status}", "host 127.0.0.1", "2 h after the webhook", "archiver retry --failed"):
        assert part in str(late), str(late)
    assert "SECRET" not in str(soon) + str(late)
    fails(PermanentSourceError, final_code, url, client, policy(not_found_grace_minutes=0), announced_at=ago(seconds=1))


def test_a_file_that_reaches_the_cdn_after_its_webhook_is_fetched_by_a_later_attempt(
        cdn: HttpSource, client: httpx.Client) -> None:
    url = cdn.file_url("arrives-late.mp4", size=50_000, missing=2)
    for _ in range(2):
        fails(TransientSourceError, "not_found_yet", url, client, announced_at=ago(seconds=5))
    assert read(url, client, announced_at=ago(seconds=30))[0] == content("arrives-late.mp4", 50_000)


@pytest.mark.parametrize("expired", [403, 410, 401])
def test_a_resume_after_the_signed_redirect_expired_starts_again_from_the_original_url(
        cdn: HttpSource, client: httpx.Client, expired: int) -> None:
    name = f"signed-{expired}.mp4"
    data, stream = read(cdn.file_url(name, size=2 * MiB, signed=1, drop=700_000, expired=expired), client)
    assert data == content(name, 2 * MiB) and stream.resumes == 1 and stream.size_proven
    assert ranges(cdn, name) == [None, "bytes=700000-"]  # the resume went back to the webhook's URL
    signed = [h for h in cdn.hits() if h.path.startswith("/signed/") and h.path.endswith(name)]
    assert [h.range for h in signed] == [None, "bytes=700000-"] and signed[0].path != signed[1].path


@pytest.mark.parametrize("expired", [403, 410, 401])
def test_a_redirect_target_that_refuses_is_retried_not_final(cdn: HttpSource, client: httpx.Client,
                                                             expired: int) -> None:
    url = cdn.file_url(f"signed-refused-{expired}.mp4", size=5000, signed=1, uses=0, expired=expired)
    error = fails(TransientSourceError, "redirect_expired", url, client, announced_at=ago(hours=3))
    assert f"HTTP {expired}" in str(error) and "redirect" in str(error)


# --- codes read as written ------------------------------------------------------------------------------

@pytest.mark.parametrize(("error", "code"), [
    (SourceChanged("x"), "source_changed"), (SourceChanged("x", code="kept_changing"), "source_kept_changing"),
    (PermanentSourceError("x", code="not_found"), "source_not_found"),
    (TransientSourceError("x", code="not_found_yet"), "source_not_found_yet"),
    (TransientSourceError("x", code="redirect_expired"), "source_redirect_expired"),
    (TransientSourceError("x", code="length_mismatch"), "source_length_mismatch"),
    (TransientSourceError("x", code="source_changed"), "source_changed"),
])
def test_ledger_codes_name_the_source_once(error: Exception, code: str) -> None:
    assert classify(error, attempt=1).code == code


def test_not_found_grace_minutes_setting(tmp_path: Path) -> None:
    (tmp_path / "archiver.toml").write_text("[source]\nnot_found_grace_minutes = 2.5\n")
    settings = load_settings(tmp_path / "archiver.toml", environ={})
    assert Runtime(settings=settings, ledger=None).source_policy.not_found_grace == 150  # type: ignore[arg-type]
    assert load_settings(environ={}).source.not_found_grace_minutes == 10
    env = load_settings(tmp_path / "archiver.toml", environ={"ARCHIVER_SOURCE_NOT_FOUND_GRACE_MINUTES": "0"})
    assert env.source.not_found_grace_minutes == 0
    for text, problem in (("-1", "must be 0"), ('"ten"', "must be number")):
        (tmp_path / "archiver.toml").write_text(f"[source]\nnot_found_grace_minutes = {text}\n")
        with pytest.raises(ConfigError) as info:
            load_settings(tmp_path / "archiver.toml", environ={})
        assert any(p.startswith("source.not_found_grace_minutes") and problem in p for p in info.value.problems)


# --- end to end through a copy job into local disk -------------------------------------------------------

def copy_runtime(root: Path) -> Runtime:
    (root / "archiver.toml").write_text(f"""
database_url = "sqlite:///{root}/ledger.db"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/"
""")
    settings = load_settings(root / "archiver.toml", environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine))


def copy_once(runtime: Runtime, meeting: str, url: str) -> tuple[int, copy_job.JobOutcome]:
    body = json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "filePath": "/encoded/videos/x.mp4",
                                "fileUrl": url}})
    _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=False)
    job_id = accepted.created[0]
    return job_id, copy_job.run_copy_job(runtime, job_id)


def test_a_copy_job_never_succeeds_with_the_short_size_of_a_cut_short_body(tmp_path: Path,
                                                                            cdn: HttpSource) -> None:
    runtime, size = copy_runtime(tmp_path), 3 * MiB
    job_id, outcome = copy_once(runtime, "m-cut", cdn.file_url("job-cut.mp4", size=size, close=1,
                                                                drop=1_887_436))
    job = runtime.ledger.job(job_id)
    assert outcome.state == "succeeded" and outcome.size_proven is True, outcome
    assert job is not None and (job.bytes, job.sha256) == (size, sha256("job-cut.mp4", size))
    assert (tmp_path / "archive" / "m-cut" / "x.mp4").read_bytes() == content("job-cut.mp4", size)

    # cut short with nothing to resume against: started again from byte 0, then proven by the probe
    job_id, restarted = copy_once(runtime, "m-restart", cdn.file_url("job-restart.mp4", size=size, close=1,
                                                                      drop=1_887_436, novalidator=1))
    assert restarted.state == "succeeded" and restarted.size_proven is True, restarted
    assert runtime.ledger.job(job_id).bytes == size  # type: ignore[union-attr]

    # nothing can prove this one's length (Range is ignored): the copy is flagged, never verified
    job_id, unproven = copy_once(runtime, "m-unproven", cdn.file_url("job-unproven.mp4", size=size, close=1,
                                                                      norange=1))
    flagged = runtime.ledger.job(job_id)
    assert unproven.size_proven is False and "whole file" in (unproven.size_note or ""), unproven
    assert flagged is not None and (flagged.state, flagged.error_code) == ("succeeded", "size_unproven")
    assert "whole file" in (flagged.error_message or "")
    from archiver.copy.verification import verify_copies

    verdicts = {v.job_id: v for v in verify_copies(runtime, since=None)}
    assert verdicts[job_id].result == "unproven" and "not proven" in verdicts[job_id].detail
    assert runtime.ledger.job(job_id).verified_at is None  # type: ignore[union-attr]


def test_a_copy_job_whose_source_keeps_changing_says_so(tmp_path: Path, cdn: HttpSource) -> None:
    runtime = copy_runtime(tmp_path)
    job_id, outcome = copy_once(runtime, "m-rot", cdn.file_url("job-rot.mp4", size=MiB, drop=100_000, drops=99,
                                                                rotate=1))
    assert outcome.state == "pending" and (outcome.error or "").startswith("source_kept_changing:"), outcome
    assert runtime.ledger.job(job_id).error_code == "source_kept_changing"  # type: ignore[union-attr]
    # a 404 right after the webhook is retried, and the next attempt finds the file
    job_id, late = copy_once(runtime, "m-late", cdn.file_url("job-late.mp4", size=MiB, missing=1))
    assert late.state == "pending" and (late.error or "").startswith("source_not_found_yet:"), late
    assert copy_job.run_copy_job(runtime, job_id).state == "succeeded"  # the next attempt (pending: claimable)
