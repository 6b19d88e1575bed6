"""Plain value types shared by every provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if self.last_modified is not None:
            data["last_modified"] = self.last_modified.isoformat()
        return data


@dataclass(frozen=True)
class CheckStep:
    name: str  # write | stat | read | compare | delete
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
