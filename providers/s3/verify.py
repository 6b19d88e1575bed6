"""What an S3 answer proves about the bytes of a committed object, and what it does not.

An ETag is the MD5 of the body only for a single PutObject without SSE-KMS or SSE-C on AWS; a
multipart ETag on AWS is the MD5 of the part MD5s with a "-<parts>" suffix. Elsewhere it is often
neither: R2 multipart, MinIO with server-side encryption, SSE-KMS and SSE-C give other values, some
of the very same shape. So an ETag equal to the MD5 we computed proves the bytes, and an ETag that
differs proves nothing: the writer then reads the object back (providers/readback.py).

A SHA-256 the store reports (x-amz-checksum-sha256) is a digest of the stored bytes; one that
differs from the stream is still only a disagreement until the bytes read back differ too.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from providers.types import ObjectInfo
from providers.writer import Part

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def etag_of(answer: Mapping[str, Any]) -> str:
    return str(answer.get("ETag") or "").strip('"')


def encrypted_with_other_etag(answer: Mapping[str, Any]) -> str | None:
    """Why the ETag cannot be an MD5 of the body because of encryption, or None."""
    sse = str(answer.get("ServerSideEncryption", ""))
    if sse.startswith("aws:kms"):
        return f"SSE {sse}"
    if answer.get("SSECustomerAlgorithm"):
        return "SSE-C"
    return None


def object_info(key: str, head: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a HeadObject answer (asked with ChecksumMode=ENABLED) or a write's answer."""
    etag = etag_of(head) or None
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
    # Reported as an MD5 only where it can be one; even then a store may put something else there.
    if etag and _MD5_HEX.fullmatch(etag) and not encrypted_with_other_etag(head):
        checksums["md5"] = etag
    return ObjectInfo(key=key, size=int(head.get("ContentLength", 0)), etag=etag,
                      content_type=head.get("ContentType"), metadata=metadata, checksums=checksums,
                      storage_class=head.get("StorageClass") or "STANDARD",
                      last_modified=head.get("LastModified"))


def md5_etag(parts: Sequence[Part], multipart: bool, single_md5: str | None) -> str:
    """The ETag AWS gives these bytes when it is an MD5: of the body, or of the part MD5s."""
    if multipart:
        md5s = b"".join(p.receipt[1] for p in parts)
        return f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(parts)}"
    return single_md5 or ""


def sha256_disagreement(reported: Mapping[str, Any], parts: Sequence[Part], multipart: bool,
                        sha256_hex: str) -> str | None:
    """Compare the store's SHA-256 (if any) with the stream; return the disagreement in words."""
    stored = reported.get("ChecksumSHA256")
    if not stored:
        return None
    if multipart:
        # Parts that went up without SHA-256 (md5, crc32 mode): a composite SHA-256 says nothing here.
        return composite_disagreement(reported, "SHA256", [p.sha256 for p in parts])
    expected = b64(bytes.fromhex(sha256_hex))
    return None if stored == expected else f"SHA-256 {stored} stored, {expected} streamed"


def composite_disagreement(reported: Mapping[str, Any], name: str, digests: Sequence[bytes]) -> str | None:
    """Compare a composite checksum the store reports (``Checksum<name>``: the checksum of the parts'
    checksums, "-<parts>") with the one of the streamed part ``digests``; the disagreement in words.
    A FULL_OBJECT checksum (of the whole body, not of the parts) is not compared here."""
    stored = reported.get(f"Checksum{name}")
    if not stored or reported.get("ChecksumType") == "FULL_OBJECT" or not all(digests):
        return None
    joined = b"".join(digests)
    raw = zlib.crc32(joined).to_bytes(4, "big") if name == "CRC32" else hashlib.sha256(joined).digest()
    expected = b64(raw)
    value, _, count = str(stored).partition("-")  # moto omits the "-<parts>" suffix
    if value != expected or count not in ("", str(len(digests))):
        label = "SHA-256" if name == "SHA256" else name
        return f"composite {label} {stored} stored, {expected}-{len(digests)} streamed"
    return None


def etag_proves(reported: Mapping[str, Any], expected: str) -> bool:
    """True when the ETag is exactly the MD5 ETag of what was streamed."""
    return bool(expected) and etag_of(reported) == expected


def why_etag_is_no_md5(reported: Mapping[str, Any], expected: str) -> str:
    """For logs: why an ETag that is not `expected` says nothing about the bytes."""
    etag = etag_of(reported)
    if reason := encrypted_with_other_etag(reported):
        return f"ETag {etag!r} is not an MD5 under {reason}"
    if "-" in etag:
        return f"multipart ETag {etag!r} is not the MD5 of the part MD5s ({expected}) on this store"
    if not _MD5_HEX.fullmatch(etag):
        return f"ETag {etag!r} is not an MD5 (not 32 hex digits)"
    return f"ETag {etag!r} differs from the MD5 {expected}: this store's ETags are not MD5s of the body"
