"""Where recording bytes may be downloaded from, and how patiently: the one source policy type.

``[source]`` in archiver.toml fills the first group of fields (archiver.settings validates them);
the second group are tuning values with no setting (tests and benchmarks change them). The copy's
download (archiver.copy.source) and intake's account check read the same value. Pure: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TUNING", "SourcePolicy"]

TUNING = {"setting": False}  # dataclass field metadata: a value with no key in archiver.toml


@dataclass(frozen=True)
class SourcePolicy:
    # ---- [source] in archiver.toml
    allow_hosts: tuple[str, ...] = ("cdn.videosdk.live", "*.videosdk.live")  # exact, or "*.suffix"
    allow_private_addresses: bool = False
    allow_http: bool = False
    # CIDRs exempt from the non-public address refusal (e.g. ("127.0.0.1/32",) for a local test CDN)
    allowed_networks: tuple[str, ...] = ()
    # minutes after a webhook during which the CDN's 404 (410, 401, 403) means "not there yet": retried
    not_found_grace_minutes: float = 10.0
    # the largest file (bytes) copied: a webhook naming a bigger one (or a source sending more) fails
    max_file_bytes: int = 50 << 30
    # ranges of one large file fetched at once (a CDN throttles each connection); 1: one stream
    parallel_ranges: int = 4
    # ---- tuning: no setting (marked so, for whatever lists the settings)
    max_redirects: int = field(default=3, metadata=TUNING)
    connect_timeout: float = field(default=10.0, metadata=TUNING)  # seconds
    read_timeout: float = field(default=60.0, metadata=TUNING)  # seconds
    # resumptions after dropped connections within one download
    max_resumes: int = field(default=5, metadata=TUNING)
    # seconds before the first resume, doubling, capped at 5 s
    resume_backoff: float = field(default=0.5, metadata=TUNING)

    @property
    def not_found_grace(self) -> float:
        """``not_found_grace_minutes`` in seconds."""
        return self.not_found_grace_minutes * 60
