"""moto behind a proxy that makes it answer like S3-compatible stores whose ETags are not MD5s of the
body: R2 (multipart ETags of MD5 shape that are not the MD5 of the part MD5s), MinIO with server-side
encryption (random 32-hex ETags), SSE-KMS/SSE-C on AWS (headers saying so), or opaque non-hex ETags.

The rewrite is consistent: the same stored object always shows the same ETag, and conditional
requests (If-Match) carrying a shown ETag reach moto with the real one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import replace

from tests.http_proxy import Answer, Proxy, Seen


def scrambled(real: str) -> str:
    """An MD5-shaped value that is not the MD5 (keeps a multipart "-<parts>" suffix), like R2/MinIO."""
    suffix = real.partition("-")[2]
    fake = hashlib.md5(b"not-an-md5:" + real.encode()).hexdigest()
    return f"{fake}-{suffix}" if suffix else fake


def opaque(real: str) -> str:
    """Not hex at all."""
    return "opaque~" + hashlib.sha1(real.encode()).hexdigest()[:20]


def is_object_answer(seen: Seen) -> bool:
    """PutObject, CompleteMultipartUpload, HeadObject, GetObject: the answers that describe an object."""
    q = seen.query
    key_path = seen.path.count("/") >= 2 and not seen.path.endswith("/")
    if not key_path or any(k in q for k in ("tagging", "acl", "uploads", "partNumber", "list-type")):
        return False
    if seen.method == "PUT":
        return "uploadId" not in q and seen.header("x-amz-copy-source") is None
    if seen.method == "POST":
        return "uploadId" in q
    return seen.method in ("HEAD", "GET")


class OtherEtags:
    """Installs itself as `proxy`'s rule and answer hook; `after` may add more to each."""

    def __init__(self, proxy: Proxy, fake: Callable[[str], str] = scrambled,
                 headers: dict[str, str] | None = None) -> None:
        self.fake, self.headers = fake, dict(headers or {})
        self.real_of: dict[str, str] = {}
        self.strip_checksums = False  # a store that keeps no x-amz-checksum-*
        self.corrupt_reads = False  # flip one byte of every GetObject body
        self.after_commit: Callable[[Seen], None] = lambda seen: None
        proxy.rule = self._request
        proxy.on_response = self._answer

    def _show(self, real: str) -> str:
        shown = self.fake(real.strip('"'))
        self.real_of[shown] = real.strip('"')
        return f'"{shown}"'

    def _request(self, seen: Seen) -> Seen | None:
        headers = dict(seen.headers)
        for name in [k for k in headers if k.lower() in ("if-match", "if-none-match")]:
            value = headers[name].strip('"')
            if value in self.real_of:
                headers[name] = f'"{self.real_of[value]}"'
        return replace(seen, headers=headers)

    def _answer(self, seen: Seen, answer: Answer) -> Answer:
        status, headers, body = answer
        if not is_object_answer(seen) or status >= 300:
            return answer
        if seen.method in ("PUT", "POST"):
            self.after_commit(seen)
        headers = dict(headers)
        for name in list(headers):
            if name.lower() == "etag":
                headers[name] = self._show(headers[name])
            elif self.strip_checksums and name.lower().startswith("x-amz-checksum"):
                del headers[name]
        headers.update(self.headers)
        if seen.method == "POST":
            body = re.sub(rb"<ETag>(.*?)</ETag>", lambda m: b"<ETag>" + self._show(
                m.group(1).decode().replace("&quot;", '"')).encode() + b"</ETag>", body)
            if self.strip_checksums:
                body = re.sub(rb"<Checksum\w+>.*?</Checksum\w+>", b"", body)
        if seen.method == "GET" and self.corrupt_reads and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        return status, headers, body
