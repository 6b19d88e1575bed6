from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from archiver.intake.signature import KeyCache, SignatureError, load_public_key, sign_body, verify_signature

BODY = {
    "webhookType": "recording-stopped",
    "data": {"meetingId": "réunion", "sessionId": "s1", "fileUrl": "https://x/y"},
}
COMPACT = json.dumps(BODY, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
PRETTY = json.dumps(BODY, indent=2, ensure_ascii=False).encode("utf-8")


@pytest.fixture(scope="module")
def keys() -> list[RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


def pem(key: RSAPrivateKey, fmt: serialization.PublicFormat = serialization.PublicFormat.PKCS1) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt).decode()


def reason(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SignatureError) as info:
        fn(*args)
    return info.value.reason


def test_valid_raw(keys: list[RSAPrivateKey]) -> None:
    assert verify_signature(PRETTY, sign_body(PRETTY, keys[0]), keys[0].public_key()) == "raw"


def test_valid_compact_only(keys: list[RSAPrivateKey]) -> None:
    # Older VideoSDK samples sign JSON.stringify(body) while the wire carries another formatting.
    sig = sign_body(COMPACT, keys[0])
    assert verify_signature(PRETTY, sig, keys[0].public_key()) == "compact"
    # The compact form keeps non-ASCII as UTF-8: an \u-escaped signed form must not match.
    escaped = sign_body(json.dumps(BODY, separators=(",", ":")).encode(), keys[0])
    assert reason(verify_signature, PRETTY, escaped, keys[0].public_key()) == "mismatch"


def test_tampered_body(keys: list[RSAPrivateKey]) -> None:
    sig = sign_body(PRETTY, keys[0])
    assert reason(verify_signature, PRETTY.replace(b"s1", b"s2"), sig, keys[0].public_key()) == "mismatch"
    assert reason(verify_signature, b"not json", sig, keys[0].public_key()) == "mismatch"


def test_wrong_key(keys: list[RSAPrivateKey]) -> None:
    assert reason(verify_signature, PRETTY, sign_body(PRETTY, keys[1]), keys[0].public_key()) == "mismatch"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing(keys: list[RSAPrivateKey], header: str | None) -> None:
    assert reason(verify_signature, PRETTY, header, keys[0].public_key()) == "missing"


@pytest.mark.parametrize("header", ["not base64!", "abcde", "=", "Zm9v_-", "Zm9vYg\u00e9"])
def test_malformed(keys: list[RSAPrivateKey], header: str) -> None:
    assert reason(verify_signature, PRETTY, header, keys[0].public_key()) == "malformed"


def test_unpadded_and_folded_signature_still_verifies(keys: list[RSAPrivateKey]) -> None:
    sig = sign_body(PRETTY, keys[0]).rstrip("=")
    sig = sig[:40] + "\n " + sig[40:]
    assert verify_signature(PRETTY, sig, keys[0].public_key()) == "raw"


def test_errors_never_carry_the_signature(keys: list[RSAPrivateKey]) -> None:
    sig = sign_body(PRETTY, keys[1])
    with pytest.raises(SignatureError) as info:
        verify_signature(PRETTY, sig, keys[0].public_key())
    assert sig not in str(info.value) and sig[:16] not in repr(info.value.args)


@pytest.mark.parametrize("fmt", [serialization.PublicFormat.PKCS1, serialization.PublicFormat.SubjectPublicKeyInfo])
def test_pem_loads_from_text_and_file(
    keys: list[RSAPrivateKey], fmt: serialization.PublicFormat, tmp_path: Path
) -> None:
    text = pem(keys[0], fmt)
    assert ("BEGIN RSA PUBLIC KEY" in text) is (fmt is serialization.PublicFormat.PKCS1)
    path = tmp_path / "key.pem"
    path.write_text(text)
    for source in (text, str(path), text.replace("\n", "\\n")):
        assert load_public_key(source).public_numbers() == keys[0].public_key().public_numbers()


def test_bad_keys_are_clear_errors(keys: list[RSAPrivateKey], tmp_path: Path) -> None:
    body = "".join(pem(keys[0]).splitlines()[1:-1])  # base64 without the armour lines
    with pytest.raises(ValueError, match="neither PEM text nor a readable file") as info:
        load_public_key(body)
    assert body[:20] not in str(info.value)
    with pytest.raises(ValueError, match="could not be parsed"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    private = (
        keys[0]
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ValueError, match="private key"):
        load_public_key(private)
    (tmp_path / "empty.pem").write_text("hello")
    with pytest.raises(ValueError, match="not PEM text"):
        load_public_key(str(tmp_path / "empty.pem"))


class FakeFetch:
    def __init__(self, pems: list[str]) -> None:
        self.pems = pems
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.pems[min(self.calls, len(self.pems)) - 1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_key_rotation_refetches_at_most_once_per_interval(keys: list[RSAPrivateKey]) -> None:
    fetch, clock = FakeFetch([pem(keys[0]), pem(keys[1], serialization.PublicFormat.SubjectPublicKeyInfo)]), Clock()
    cache = KeyCache(fetch=fetch, clock=clock)
    assert cache.verify(PRETTY, sign_body(PRETTY, keys[0])) == "raw"
    assert fetch.calls == 1
    clock.now += 61
    # Rotated: the first mismatch refetches once and the retry succeeds with the new key.
    assert cache.verify(PRETTY, sign_body(PRETTY, keys[1])) == "raw"
    assert fetch.calls == 2
    assert cache.verify(COMPACT, sign_body(COMPACT, keys[1])) == "raw" and fetch.calls == 2
    # A forged request inside the interval must not refetch again.
    clock.now += 30
    assert reason(cache.verify, PRETTY, sign_body(PRETTY, keys[2])) == "mismatch"
    assert fetch.calls == 2
    clock.now += 31
    assert reason(cache.verify, PRETTY, sign_body(PRETTY, keys[2])) == "mismatch"
    assert fetch.calls == 3
    # Missing/malformed signatures never cost a fetch.
    clock.now += 100
    assert reason(cache.verify, PRETTY, None) == "missing"
    assert reason(cache.verify, PRETTY, "!!") == "malformed"
    assert fetch.calls == 3


def test_static_key_with_fetch_for_rotation(keys: list[RSAPrivateKey]) -> None:
    fetch = FakeFetch([pem(keys[1])])
    cache = KeyCache(static_pem=pem(keys[0]), fetch=fetch, clock=Clock())
    assert cache.verify(PRETTY, sign_body(PRETTY, keys[0])) == "raw" and fetch.calls == 0
    assert cache.verify(PRETTY, sign_body(COMPACT, keys[1])) == "compact" and fetch.calls == 1


def test_static_key_only_never_fetches(keys: list[RSAPrivateKey]) -> None:
    cache = KeyCache(static_pem=pem(keys[0]))
    assert reason(cache.verify, PRETTY, sign_body(PRETTY, keys[1])) == "mismatch"
    with pytest.raises(ValueError, match="static public key or a fetch"):
        KeyCache()


def test_failed_fetch_is_no_key_and_rate_limited(keys: list[RSAPrivateKey]) -> None:
    calls: list[int] = []

    def broken() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return pem(keys[0])

    clock = Clock()
    cache = KeyCache(fetch=broken, clock=clock)
    sig = sign_body(PRETTY, keys[0])
    assert reason(cache.verify, PRETTY, sig) == "no_key"
    assert reason(cache.verify, PRETTY, sig) == "no_key" and len(calls) == 1
    clock.now += 60
    assert reason(cache.verify, PRETTY, sig) == "no_key" and len(calls) == 2
    clock.now += 60
    assert cache.verify(PRETTY, sig) == "raw" and len(calls) == 3


def test_fetched_value_is_never_read_as_a_path(keys: list[RSAPrivateKey], tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(pem(keys[0]))
    cache = KeyCache(fetch=lambda: str(path), clock=Clock())
    assert reason(cache.verify, PRETTY, sign_body(PRETTY, keys[0])) == "no_key"


def test_bytes_required(keys: list[RSAPrivateKey]) -> None:
    sig = sign_body(PRETTY, keys[0])
    with pytest.raises(TypeError):
        verify_signature(PRETTY.decode(), sig, keys[0].public_key())  # type: ignore[arg-type]
    assert base64.b64decode(sig) and verify_signature(bytearray(PRETTY), sig, keys[0].public_key()) == "raw"


def test_concurrent_mismatches_share_one_refetch(keys: list[RSAPrivateKey]) -> None:
    import threading

    gate = threading.Event()
    fetch = FakeFetch([pem(keys[1])])

    def slow_fetch() -> str:
        gate.wait(5)  # hold the first fetch so that every other thread queues behind it
        return fetch()

    cache = KeyCache(static_pem=pem(keys[0]), fetch=slow_fetch, clock=Clock())
    sig = sign_body(PRETTY, keys[1])
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.verify(PRETTY, sig))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert results == ["raw"] * 8 and fetch.calls == 1
