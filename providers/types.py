"""Plain value types shared by every provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class WriteRequest:
    """What the caller asked for, after the provider resolved its defaults."""

    key: str  # key relative to the provider's prefix, as the caller gave it
    full_key: str  # key inside the bucket/container/folder
    part_size: int
    concurrency: int
    size_hint: int | None = None
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    if_absent: bool = True
    # A known size_hint up to this many bytes is sent with one request (_put_single); the provider
    # resolves it to at most part_size x concurrency, so holding the object needs no more memory
    # than streaming it. 0: only objects that fit in one part.
    single_request_max: int = 0


@dataclass(frozen=True)
class Part:
    number: int  # 1-based
    size: int
    sha256: bytes  # raw digest of this part; b"" when the writer does not use part digests
    receipt: Any  # what the service answered (ETag, block id ...)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # What the service reports (md5, crc32c, crc64nvme, sha256-composite ...) plus `sha256` of the
    # bytes as streamed when this info comes from a writer or from stored metadata.
    checksums: dict[str, str] = field(default_factory=dict)
    storage_class: str | None = None
    last_modified: datetime | None = None
    # From a writer's commit(): why the stored object could not be fully verified after a successful
    # commit (e.g. "read denied: ..."), in words for people. Empty when it was verified (or for stat).
    unverified: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["unverified"] = list(self.unverified)
        if self.last_modified is not None:
            data["last_modified"] = self.last_modified.isoformat()
        return data


@dataclass(frozen=True)
class CheckStep:
    name: str  # write | tag | stat | read | compare | delete
    ok: bool
    message: str


@dataclass(frozen=True)
class CheckReport:
    url: str
    steps: tuple[CheckStep, ...]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def __str__(self) -> str:
        lines = [f"{'PASS' if self.ok else 'FAIL'} {self.url}"]
        lines += [f"  {'ok  ' if s.ok else 'FAIL'} {s.name}: {s.message}" for s in self.steps]
        return "\n".join(lines)
