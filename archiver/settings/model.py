"""Every setting, declared once: name (the field), type (the annotation), default, variable and check.

Variables are ARCHIVER_<SECTION>_<KEY> (ARCHIVER_<KEY> at the top level) unless `env=` says otherwise;
`env=None` means the setting has no variable. archiver.settings.sections reads these declarations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archiver.domain.source_policy import SourcePolicy
from archiver.settings.destinations import Destination
from archiver.settings.fields import (
    absolute_http_url,
    at_least,
    between,
    more_than,
    one_of,
    optional,
    setting,
    zero_or_more,
)
from archiver.settings.notifications import Notification
from archiver.settings.urls import api_base_problem, broker_url_problem, database_url_problem
from providers import StorageProvider, open_provider

DEFAULT_BROKER_URL = "sqla+sqlite:///./.archiver/broker.db"
DEFAULT_DATABASE_URL = "sqlite:///./.archiver/ledger.db"
DEFAULT_DESTINATION_URL = "file:./archive/{meetingId}/{sessionId}/"
RETENTION_MODES = ("off", "after-verified")


def _networks(values: tuple[str, ...]) -> str | None:
    for cidr in values:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            return f"{cidr!r} is not a network (e.g. 10.1.0.0/16)"
    return None


@dataclass(frozen=True)
class SourceSettings(SourcePolicy):
    """[source]: the one source policy type (archiver.domain.source_policy), its settings declared here with
    their checks and variables; what the download reads is this value."""

    allow_hosts: tuple[str, ...] = setting(("cdn.videosdk.live", "*.videosdk.live"))
    allow_private_addresses: bool = setting(False, env="ARCHIVER_SOURCE_ALLOW_PRIVATE")
    allow_http: bool = setting(False)
    allowed_networks: tuple[str, ...] = setting((), check=_networks)  # CIDRs exempt from the private-address refusal
    # minutes after a webhook during which the CDN's 404 (410, 401, 403) means "not there yet": retried
    not_found_grace_minutes: float = setting(10.0, check=zero_or_more("a 404 is final at once"))
    # the largest file (bytes) copied: a webhook naming a bigger one (or a source sending more) fails
    max_file_bytes: int = setting(50 << 30, check=at_least(1, "byte"))
    # ranges of one large file fetched at once (a CDN throttles each connection); 1: one stream
    parallel_ranges: int = setting(4, check=between(1, 32, "(1: one stream)"))


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = setting(10, check=at_least(1))
    max_delay: float = setting(600.0)  # seconds between two attempts, at most
    base_delay: float = setting(5.0)
    # How often beat runs the lease sweeper, and how long a pending job (or lookup) may stay unchanged
    # before the sweeper takes its broker message for lost and enqueues it again (a second message is
    # harmless: the claim skips it). None: max_delay + 300, long enough for every retry's own message.
    sweep_seconds: float = setting(300.0, check=more_than(0))
    requeue_after_seconds: float | None = setting(None, check=optional(more_than(0)))

    @property
    def requeue_after(self) -> float:
        return self.requeue_after_seconds if self.requeue_after_seconds is not None else self.max_delay + 300


@dataclass(frozen=True)
class ReconcileSettings:
    # how often beat runs `archiver.maintenance.reconcile`; 0 turns the schedule off
    interval_minutes: float = setting(15.0, check=zero_or_more("no schedule"))
    window_hours: float = setting(48.0, check=more_than(0))  # rooms seen in the ledger this recently are listed again


@dataclass(frozen=True)
class RetentionSettings:
    # Deleting from VideoSDK cannot be undone, so it is opt-in and only after every copy verified.
    delete_from_videosdk: str = setting("off", check=one_of(RETENTION_MODES))


@dataclass(frozen=True)
class StorageSource:
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def open(self) -> StorageProvider:
        return open_provider(self.url, **self.options)


@dataclass(frozen=True)
class VideoSDKSettings:
    api_base: str = setting("https://api.videosdk.live/v2", check=api_base_problem)
    api_key: str | None = setting(None)  # the secret comes only from VIDEOSDK_SECRET_KEY
    webhook_public_key: str | None = setting(None)  # PEM text or a file path; fetched from api_base when absent
    verify_signatures: bool = setting(True, env="ARCHIVER_VERIFY_SIGNATURES")
    rooms: tuple[str, ...] = setting(())  # always reconciled, even when no webhook named them
    timeout: float = setting(30.0, check=more_than(0, "seconds"))
    key_refetch_seconds: float = setting(60.0)  # after a mismatch, the key is fetched again at most this often
    # The customer's own bucket that VideoSDK writes recordings to (fileUrl null or on its host), as a
    # source: a provider URL with its options, validated like a destination's (config._storage_source).
    storage: StorageSource | None = setting(None, env=None, own_reader=True)  # noqa: RUF009 - frozen


def _path(value: str) -> str | None:
    return None if value.startswith("/") else f"must start with '/', got {value!r}"


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"must be 1-65535, got {value}"


@dataclass(frozen=True)
class ReceiverSettings:
    host: str = setting("127.0.0.1")
    port: int = setting(8000, check=_port)
    path: str = setting("/webhooks/videosdk", check=_path)
    max_body_bytes: int = setting(1 << 20, check=at_least(1, "byte"))
    # Bounds on what one client can hold (archiver.intake.protocol enforces them): seconds to send
    # a request's line and headers after connecting or after the previous response; seconds an idle
    # keep-alive connection stays open; seconds, and bytes per second, for a request's body.
    header_timeout: float = setting(10.0, check=more_than(0, "seconds"))
    keepalive_timeout: float = setting(5.0, check=more_than(0, "seconds"))
    body_timeout: float = setting(30.0, check=more_than(0, "seconds"))
    # bytes/s averaged over the body so far; 0 turns the rate check off
    min_body_rate: int = setting(1024, check=zero_or_more("no rate check"))
    # open connections; one more is answered 503 at once and closed
    max_connections: int = setting(512, check=at_least(1))
    # rooms whose webhooks are accepted: exact ids or "prefix*"; empty: every room. Narrows who can use
    # the receiver when the worker cannot ask VideoSDK's API which recordings are ours (no api_key).
    allow_rooms: tuple[str, ...] = setting(())
    # Where VideoSDK reaches this receiver from the Internet (https://archiver.example.com, or a full
    # URL with a path): the webhookUrl `archiver recording start` and `room create` give VideoSDK.
    # No path: `path` above is appended. Unset: those verbs need an explicit --webhook-url.
    public_url: str | None = setting(None, check=optional(absolute_http_url))

    def room_allowed(self, room: str | None) -> bool:
        if not self.allow_rooms or room is None:
            return True
        return any(room == p or (p.endswith("*") and room.startswith(p[:-1])) for p in self.allow_rooms)


@dataclass(frozen=True)
class Settings:
    broker_url: str = setting(DEFAULT_BROKER_URL, check=broker_url_problem)
    database_url: str = setting(DEFAULT_DATABASE_URL, check=database_url_problem)
    visibility_timeout: int = setting(3600, check=at_least(10, "seconds"))
    # a dead worker's job is taken over this long after its last heartbeat
    lease_seconds: int = setting(60, check=at_least(3, "seconds"))
    source: SourceSettings = SourceSettings()
    retry: RetrySettings = RetrySettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    retention: RetentionSettings = RetentionSettings()
    videosdk: VideoSDKSettings = VideoSDKSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    destinations: tuple[Destination, ...] = ()
    notifications: tuple[Notification, ...] = ()  # [[notifications]]: see archiver.settings.notifications
    origin: str = "defaults"  # the config file's absolute path, or "defaults" when none was found
    # Things that work but are probably not meant (an unknown ARCHIVER_* variable, keys that collide):
    # `config validate` and the services print them as `warning:` lines.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def destination(self, name: str) -> Destination:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise KeyError(name)


# The sections of Settings, in order: name -> dataclass.
SECTIONS: dict[str, type] = {"source": SourceSettings, "retry": RetrySettings, "reconcile": ReconcileSettings,
                             "retention": RetentionSettings, "videosdk": VideoSDKSettings,
                             "receiver": ReceiverSettings}
