"""Webhook signature verification (header `videosdk-signature`: base64 RSA PKCS#1 v1.5 SHA-256).

VideoSDK's samples disagree on what is signed: the server SDK signs the raw body, the older samples
JSON.stringify(body). We accept either, raw first. Exceptions and log lines carry a reason code only,
never the signature value or key material.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

__all__ = ["KeyCache", "KeyUnavailable", "SignatureError", "load_public_key", "sign_body", "verify_signature"]

log = logging.getLogger(__name__)

Reason = Literal["missing", "malformed", "mismatch", "no_key"]
_MESSAGES: dict[str, str] = {
    "missing": "webhook signature header 'videosdk-signature' is missing or empty",
    "malformed": "webhook signature is not valid base64",
    "mismatch": "webhook signature does not match the body",
    "no_key": "no webhook public key is available",
}


class KeyUnavailable(Exception):
    """A fetch could not produce the key; str() is safe to log and says where, why and what to change."""


class SignatureError(Exception):
    def __init__(self, reason: Reason) -> None:
        if reason not in _MESSAGES:
            raise ValueError(f"unknown signature error reason {reason!r}")
        self.reason: Reason = reason
        super().__init__(_MESSAGES[reason])


def _load_pem(text: str) -> RSAPublicKey:
    text = text.strip()
    # Keys pasted into env files or copied out of JSON often arrive with literal "\n" instead of newlines.
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    if "PRIVATE KEY" in text:
        raise ValueError("webhook key is a private key; configure the public key")
    if "-----BEGIN" not in text:
        raise ValueError("webhook public key is not PEM text (expected '-----BEGIN ... PUBLIC KEY-----')")
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
        # `from None`: the parser's message adds nothing useful and might quote the input.
        raise ValueError(
            "webhook public key PEM could not be parsed (expected 'BEGIN RSA PUBLIC KEY' or 'BEGIN PUBLIC KEY')"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError("webhook public key is not an RSA key")
    return key


def load_public_key(pem_or_path: str) -> RSAPublicKey:
    """PEM text (PKCS#1 or SubjectPublicKeyInfo) or a path to a file holding one."""
    if not isinstance(pem_or_path, str) or not pem_or_path.strip():
        raise ValueError("webhook public key is empty")
    if "-----BEGIN" in pem_or_path:
        return _load_pem(pem_or_path)
    try:
        text = Path(pem_or_path.strip()).read_text(encoding="utf-8")
    except (OSError, ValueError):
        # Not echoed: a mangled PEM (no BEGIN line) would otherwise be printed back as a "path".
        raise ValueError("webhook public key is neither PEM text nor a readable file path") from None
    return _load_pem(text)


def _decode_signature(signature_b64: str | None) -> bytes:
    if signature_b64 is None or not signature_b64.strip():
        raise SignatureError("missing")
    text = "".join(signature_b64.split())
    text += "=" * (-len(text) % 4)  # tolerate stripped padding; the alphabet itself is checked strictly
    try:
        sig = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed") from None
    if not sig:
        raise SignatureError("malformed")
    # No length check against the key size: after a rotation to a different key size a valid signature would
    # look "malformed" and never trigger the refetch that a "mismatch" does.
    return sig


def _matches(key: RSAPublicKey, sig: bytes, message: bytes) -> bool:
    try:
        key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _compact(raw_body: bytes) -> bytes | None:
    """JSON.stringify-equivalent of the body (key order kept, non-ASCII as is), or None if not JSON."""
    try:
        obj = json.loads(raw_body)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # includes JSONDecodeError and UnicodeEncode/DecodeError
        return None


def _verify_decoded(raw_body: bytes, sig: bytes, key: RSAPublicKey) -> str:
    if _matches(key, sig, raw_body):
        return "raw"
    compact = _compact(raw_body)
    if compact is not None and compact != raw_body and _matches(key, sig, compact):
        return "compact"
    raise SignatureError("mismatch")


def _body_bytes(raw_body: bytes) -> bytes:
    if isinstance(raw_body, bytearray | memoryview):
        return bytes(raw_body)
    if not isinstance(raw_body, bytes):
        # A str body has already been decoded by someone; what was signed were the bytes on the wire.
        raise TypeError("raw_body must be the request body as bytes")
    return raw_body


def verify_signature(raw_body: bytes, signature_b64: str | None, key: RSAPublicKey) -> str:
    """Return "raw" or "compact" (which signed form matched); raise SignatureError otherwise."""
    body = _body_bytes(raw_body)
    return _verify_decoded(body, _decode_signature(signature_b64), key)


def sign_body(raw_body: bytes, private_key: RSAPrivateKey) -> str:
    """Base64 signature over the raw body, as VideoSDK sends it (tests and the demo stand-in)."""
    sig = private_key.sign(_body_bytes(raw_body), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode("ascii")


class KeyCache:
    """The webhook public key, from config and/or fetched, refreshed on mismatch (key rotation).

    Fetches (the first one included) happen at most once per min_refetch_seconds, so a flood of forged
    requests cannot turn into a flood of calls to VideoSDK's key endpoint. When both static_pem and fetch
    are given, the static key is used first and fetch only on mismatch.
    """

    def __init__(
        self,
        *,
        static_pem: str | None = None,
        fetch: Callable[[], str] | None = None,
        min_refetch_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if static_pem is None and fetch is None:
            raise ValueError("KeyCache needs a static public key or a fetch callable")
        self._key: RSAPublicKey | None = load_public_key(static_pem) if static_pem is not None else None
        self._fetch = fetch
        self._min_refetch = min_refetch_seconds
        self._clock = clock
        self._last_fetch: float | None = None
        self._fetch_failed = False  # the last fetch failed: a rotated key may be out of reach
        self._lock = threading.Lock()  # guards _key, _last_fetch, _fetch_failed, _problem; never held during a fetch
        self._fetch_lock = threading.Lock()  # one fetch at a time; waiters reuse its result
        self._problem = "not fetched yet"  # why no key is held (while _key is None)

    def unavailable(self) -> str | None:
        """None while a key is held; else why not (the last fetch's failure), for /readyz."""
        with self._lock:
            return None if self._key is not None else self._problem

    def prefetch(self) -> None:
        """Fetch the key in a background thread if none is held (subject to the refetch interval), so
        that readiness and the log tell early whether it can be had. Returns at once."""
        if self._fetch is None or self.unavailable() is None or self._fetch_lock.locked():
            return
        threading.Thread(target=self._refresh, kwargs={"stale": None}, name="webhook-key", daemon=True).start()

    def verify(self, raw_body: bytes, signature_b64: str | None) -> str:
        body = _body_bytes(raw_body)
        sig = _decode_signature(signature_b64)  # missing/malformed never cost a key fetch
        key = self._current_key()
        try:
            return _verify_decoded(body, sig, key)
        except SignatureError:
            rotated = self._refresh(stale=key)
            if rotated is None:
                raise
        return _verify_decoded(body, sig, rotated)  # one retry only

    def _current_key(self) -> RSAPublicKey:
        with self._lock:
            if self._key is not None:
                return self._key
        key = self._refresh(stale=None)
        if key is None:
            raise SignatureError("no_key")
        return key

    def _refresh(self, *, stale: RSAPublicKey | None) -> RSAPublicKey | None:
        """Fetch a key to replace `stale`; None if not allowed yet or the fetch failed."""
        if self._fetch is None:
            return None
        with self._fetch_lock:
            with self._lock:
                if self._key is not stale:
                    return self._key  # another thread replaced it while we waited
                now = self._clock()
                if self._last_fetch is not None and now - self._last_fetch < self._min_refetch:
                    return None
                self._last_fetch = now  # counted even if the fetch fails: no hammering during an outage
            try:
                text = self._fetch()
            except KeyUnavailable as exc:  # says where, why and the fix; quotes no key material
                self._failed(str(exc))
                return None
            except Exception as exc:  # anything else is named only: its message might quote an answer
                self._failed(type(exc).__name__)
                return None
            try:
                # PEM only, not load_public_key: a fetched string must never be treated as a local path.
                key = _load_pem(text)
            except ValueError as exc:  # _load_pem's messages quote nothing of the text
                self._failed(f"the answer is not a usable key: {exc}")
                return None
            except Exception as exc:
                self._failed(f"the answer is not a usable key ({type(exc).__name__})")
                return None
            with self._lock:
                self._key, self._fetch_failed = key, False
            return key

    def available(self) -> bool:
        """Whether a key to verify with is at hand and the last fetch (if any) succeeded: False before
        the first successful fetch and after a failed one. Asking tries a fetch when none is at hand
        or the last one failed, within the same min_refetch_seconds budget as verification, so
        calling this on every scrape never calls VideoSDK more often than webhooks could."""
        with self._lock:
            key, failed = self._key, self._fetch_failed
        if key is not None and not failed:
            return True
        if self._fetch is None:
            return key is not None
        fetched = self._refresh(stale=key)
        with self._lock:
            return fetched is not None and not self._fetch_failed

    def _failed(self, why: str) -> None:
        with self._lock:
            self._problem, self._fetch_failed = why, True
            held = self._key is not None
        # Without a key every webhook is answered 503 (VideoSDK retries it); with one, the old key stays.
        log.warning("webhook public key could not be fetched: %s%s", why,
                    "; keeping the current key" if held else "; webhooks are answered 503 until it is")
