"""archiver.toml + ARCHIVER_* environment variables -> validated Settings.

Loading validates everything at once and reports every problem with its location
(`destinations[1].url: unknown variable {roomID}`). Secrets are never read from the file: a secret
provider option must come as `<option>_env = "VARIABLE"` or from the SDK's own credential chain.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from archiver.settings.destinations import Destination, parse_destination
from providers import ConfigurationError, StorageProvider, open_provider, provider_class, split_url
from providers.options import COMMON_OPTIONS

DEFAULT_BROKER_URL = "sqla+sqlite:///./.archiver/broker.db"
DEFAULT_DATABASE_URL = "sqlite:///./.archiver/ledger.db"
DEFAULT_DESTINATION_URL = "file:./archive/{meetingId}/{sessionId}/"


class ConfigError(ValueError):
    def __init__(self, problems: list[str], origin: str) -> None:
        self.problems = problems
        super().__init__(f"{origin}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n  "
                         + "\n  ".join(problems))


@dataclass(frozen=True)
class SourceSettings:
    allow_hosts: tuple[str, ...] = ("cdn.videosdk.live", "*.videosdk.live")
    allow_private_addresses: bool = False
    allow_http: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs exempt from the private-address refusal
    # minutes after a webhook during which the CDN's 404 (410, 401, 403) means "not there yet": retried
    not_found_grace_minutes: float = 10.0
    # the largest file (bytes) copied: a webhook naming a bigger one (or a source sending more) fails
    max_file_bytes: int = 50 << 30
    # ranges of one large file fetched at once (a CDN throttles each connection); 1: one stream
    parallel_ranges: int = 4


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 10
    max_delay: float = 600.0  # seconds between two attempts, at most
    base_delay: float = 5.0
    # How often beat runs the lease sweeper, and how long a pending job (or lookup) may stay unchanged
    # before the sweeper takes its broker message for lost and enqueues it again (a second message is
    # harmless: the claim skips it). None: max_delay + 300, long enough for every retry's own message.
    sweep_seconds: float = 300.0
    requeue_after_seconds: float | None = None

    @property
    def requeue_after(self) -> float:
        return self.requeue_after_seconds if self.requeue_after_seconds is not None else self.max_delay + 300


@dataclass(frozen=True)
class ReconcileSettings:
    interval_minutes: float = 15.0  # how often beat runs `archiver.maintenance.reconcile`; 0 turns the schedule off
    window_hours: float = 48.0  # rooms seen in the ledger this recently are listed again


RETENTION_MODES = ("off", "after-verified")


@dataclass(frozen=True)
class RetentionSettings:
    # Deleting from VideoSDK cannot be undone, so it is opt-in and only after every copy verified.
    delete_from_videosdk: str = "off"


@dataclass(frozen=True)
class VideoSDKSettings:
    api_base: str = "https://api.videosdk.live/v2"
    api_key: str | None = None  # the secret comes only from VIDEOSDK_SECRET_KEY
    webhook_public_key: str | None = None  # PEM text or a file path; fetched from api_base when absent
    verify_signatures: bool = True
    rooms: tuple[str, ...] = ()  # always reconciled, even when no webhook named them
    timeout: float = 30.0
    key_refetch_seconds: float = 60.0  # after a mismatch, the key is fetched again at most this often
    # The customer's own bucket that VideoSDK writes recordings to (fileUrl null or on its host), as a
    # source: a provider URL with its options, validated like a destination's.
    storage: StorageSource | None = None


@dataclass(frozen=True)
class StorageSource:
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def open(self) -> StorageProvider:
        return open_provider(self.url, **self.options)


@dataclass(frozen=True)
class ReceiverSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "/webhooks/videosdk"
    max_body_bytes: int = 1 << 20
    # Bounds on what one client can hold (archiver.intake.protocol enforces them): seconds to send
    # a request's line and headers after connecting or after the previous response; seconds an idle
    # keep-alive connection stays open; seconds, and bytes per second, for a request's body.
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    body_timeout: float = 30.0
    min_body_rate: int = 1024  # bytes/s averaged over the body so far; 0 turns the rate check off
    max_connections: int = 512  # open connections; one more is answered 503 at once and closed
    # rooms whose webhooks are accepted: exact ids or "prefix*"; empty: every room. Narrows who can use
    # the receiver when the worker cannot ask VideoSDK's API which recordings are ours (no api_key).
    allow_rooms: tuple[str, ...] = ()

    def room_allowed(self, room: str | None) -> bool:
        if not self.allow_rooms or room is None:
            return True
        return any(room == p or (p.endswith("*") and room.startswith(p[:-1])) for p in self.allow_rooms)


@dataclass(frozen=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    database_url: str = DEFAULT_DATABASE_URL
    visibility_timeout: int = 3600
    lease_seconds: int = 60  # a dead worker's job is taken over this long after its last heartbeat
    source: SourceSettings = SourceSettings()
    retry: RetrySettings = RetrySettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    retention: RetentionSettings = RetentionSettings()
    videosdk: VideoSDKSettings = VideoSDKSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    destinations: tuple[Destination, ...] = ()
    origin: str = "defaults"

    def destination(self, name: str) -> Destination:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise KeyError(name)


# (section, key) -> (environment variable, parser)
def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _hosts(text: str) -> list[str]:
    return [h.strip() for h in text.split(",") if h.strip()]


ENVIRONMENT: dict[tuple[str | None, str], tuple[str, Callable[[str], Any]]] = {
    (None, "broker_url"): ("ARCHIVER_BROKER_URL", str),
    (None, "database_url"): ("ARCHIVER_DATABASE_URL", str),
    (None, "visibility_timeout"): ("ARCHIVER_VISIBILITY_TIMEOUT", int),
    (None, "lease_seconds"): ("ARCHIVER_LEASE_SECONDS", int),
    ("source", "allow_hosts"): ("ARCHIVER_SOURCE_ALLOW_HOSTS", _hosts),
    ("source", "allow_private_addresses"): ("ARCHIVER_SOURCE_ALLOW_PRIVATE", _bool),
    ("source", "allow_http"): ("ARCHIVER_SOURCE_ALLOW_HTTP", _bool),
    ("source", "allowed_networks"): ("ARCHIVER_SOURCE_ALLOWED_NETWORKS", _hosts),
    ("source", "not_found_grace_minutes"): ("ARCHIVER_SOURCE_NOT_FOUND_GRACE_MINUTES", float),
    ("source", "max_file_bytes"): ("ARCHIVER_SOURCE_MAX_FILE_BYTES", int),
    ("source", "parallel_ranges"): ("ARCHIVER_SOURCE_PARALLEL_RANGES", int),
    ("retry", "max_attempts"): ("ARCHIVER_RETRY_MAX_ATTEMPTS", int),
    ("retry", "max_delay"): ("ARCHIVER_RETRY_MAX_DELAY", float),
    ("retry", "base_delay"): ("ARCHIVER_RETRY_BASE_DELAY", float),
    ("retry", "sweep_seconds"): ("ARCHIVER_RETRY_SWEEP_SECONDS", float),
    ("retry", "requeue_after_seconds"): ("ARCHIVER_RETRY_REQUEUE_AFTER_SECONDS", float),
    ("reconcile", "interval_minutes"): ("ARCHIVER_RECONCILE_INTERVAL_MINUTES", float),
    ("reconcile", "window_hours"): ("ARCHIVER_RECONCILE_WINDOW_HOURS", float),
    ("retention", "delete_from_videosdk"): ("ARCHIVER_RETENTION_DELETE_FROM_VIDEOSDK", str),
    ("videosdk", "api_base"): ("ARCHIVER_VIDEOSDK_API_BASE", str),
    ("videosdk", "api_key"): ("ARCHIVER_VIDEOSDK_API_KEY", str),
    ("videosdk", "webhook_public_key"): ("ARCHIVER_VIDEOSDK_WEBHOOK_PUBLIC_KEY", str),
    ("videosdk", "verify_signatures"): ("ARCHIVER_VERIFY_SIGNATURES", _bool),
    ("videosdk", "rooms"): ("ARCHIVER_VIDEOSDK_ROOMS", _hosts),
    ("videosdk", "timeout"): ("ARCHIVER_VIDEOSDK_TIMEOUT", float),
    ("videosdk", "key_refetch_seconds"): ("ARCHIVER_VIDEOSDK_KEY_REFETCH_SECONDS", float),
    ("receiver", "host"): ("ARCHIVER_RECEIVER_HOST", str),
    ("receiver", "port"): ("ARCHIVER_RECEIVER_PORT", int),
    ("receiver", "path"): ("ARCHIVER_RECEIVER_PATH", str),
    ("receiver", "max_body_bytes"): ("ARCHIVER_RECEIVER_MAX_BODY_BYTES", int),
    ("receiver", "allow_rooms"): ("ARCHIVER_RECEIVER_ALLOW_ROOMS", _hosts),
    ("receiver", "header_timeout"): ("ARCHIVER_RECEIVER_HEADER_TIMEOUT", float),
    ("receiver", "keepalive_timeout"): ("ARCHIVER_RECEIVER_KEEPALIVE_TIMEOUT", float),
    ("receiver", "body_timeout"): ("ARCHIVER_RECEIVER_BODY_TIMEOUT", float),
    ("receiver", "min_body_rate"): ("ARCHIVER_RECEIVER_MIN_BODY_RATE", int),
    ("receiver", "max_connections"): ("ARCHIVER_RECEIVER_MAX_CONNECTIONS", int),
}


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if env := (os.environ if environ is None else environ).get("ARCHIVER_CONFIG"):
        return Path(env)
    default = Path("archiver.toml")
    return default if default.exists() else None


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    origin = "defaults"
    raw: dict[str, Any] = {}
    resolved = config_path(str(path) if path else None, environ)
    if resolved is not None:
        origin = str(resolved)
        try:
            raw = tomllib.loads(resolved.read_text())
        except FileNotFoundError:
            raise ConfigError([f"config file {resolved} does not exist"], origin) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"not valid TOML: {exc}"], origin) from None
    problems: list[str] = []
    for (section, key), (variable, parse) in ENVIRONMENT.items():
        if variable in environ:
            try:
                value = parse(environ[variable])
            except ValueError:
                kind = {int: "an integer", float: "a number", _bool: "true or false"}.get(parse, "valid")
                problems.append(f"{variable}: must be {kind}, got {environ[variable]!r}")
                continue
            (raw.setdefault(section, {}) if section else raw)[key] = value
    settings = _build(raw, problems, origin)
    if problems:
        raise ConfigError(problems, origin)
    return settings


def _build(raw: dict[str, Any], problems: list[str], origin: str) -> Settings:
    known = {"broker_url", "database_url", "visibility_timeout", "lease_seconds", "source", "retry", "videosdk",
             "receiver", "destinations", "reconcile", "retention"}
    problems += [f"{key}: unknown setting (known: {', '.join(sorted(known))})" for key in raw if key not in known]
    top = {k: _typed(raw, k, t, k, problems) for k, t in
           (("broker_url", str), ("database_url", str), ("visibility_timeout", int), ("lease_seconds", int))}
    if top["broker_url"] is not None and (why := broker_url_problem(top["broker_url"])):
        problems.append(f"broker_url: {why}")
    if top["visibility_timeout"] is not None and top["visibility_timeout"] < 10:
        problems.append("visibility_timeout: must be at least 10 seconds")
    if top["lease_seconds"] is not None and top["lease_seconds"] < 3:
        problems.append("lease_seconds: must be at least 3 seconds")
    source = _section(raw, "source", SourceSettings, {"allow_hosts": list, "allow_private_addresses": bool,
                                                      "allow_http": bool, "allowed_networks": list,
                                                      "not_found_grace_minutes": (int, float),
                                                      "max_file_bytes": int, "parallel_ranges": int}, problems)
    if source.not_found_grace_minutes < 0:
        problems.append("source.not_found_grace_minutes: must be 0 (a 404 is final at once) or more")
    if source.max_file_bytes < 1:
        problems.append(f"source.max_file_bytes: must be at least 1 byte, got {source.max_file_bytes}")
    if not 1 <= source.parallel_ranges <= 32:
        problems.append(f"source.parallel_ranges: must be 1 (one stream) to 32, got {source.parallel_ranges}")
    retry = _section(raw, "retry", RetrySettings, {"max_attempts": int, "max_delay": (int, float),
                                                   "base_delay": (int, float), "sweep_seconds": (int, float),
                                                   "requeue_after_seconds": (int, float)}, problems)
    if retry.sweep_seconds <= 0:
        problems.append(f"retry.sweep_seconds: must be more than 0, got {retry.sweep_seconds}")
    if retry.requeue_after_seconds is not None and retry.requeue_after_seconds <= 0:
        problems.append(f"retry.requeue_after_seconds: must be more than 0, got {retry.requeue_after_seconds}")
    reconcile = _section(raw, "reconcile", ReconcileSettings, {"interval_minutes": (int, float),
                                                               "window_hours": (int, float)}, problems)
    if reconcile.interval_minutes < 0:
        problems.append("reconcile.interval_minutes: must be 0 (no schedule) or more")
    if reconcile.window_hours <= 0:
        problems.append("reconcile.window_hours: must be more than 0")
    retention = _section(raw, "retention", RetentionSettings, {"delete_from_videosdk": str}, problems)
    if retention.delete_from_videosdk not in RETENTION_MODES:
        problems.append(f"retention.delete_from_videosdk: must be one of {', '.join(map(repr, RETENTION_MODES))}, "
                        f"got {retention.delete_from_videosdk!r}")
    storage = _storage_source(raw.get("videosdk", {}), problems)
    videosdk = _section(raw, "videosdk", VideoSDKSettings, {
        "api_base": str, "api_key": str, "webhook_public_key": str, "verify_signatures": bool, "rooms": list,
        "timeout": (int, float), "key_refetch_seconds": (int, float), "storage": (str, dict)}, problems)
    videosdk = dataclasses.replace(videosdk, storage=storage)
    receiver = _section(raw, "receiver", ReceiverSettings, {
        "host": str, "port": int, "path": str, "max_body_bytes": int, "header_timeout": (int, float),
        "keepalive_timeout": (int, float), "body_timeout": (int, float), "min_body_rate": int,
        "max_connections": int, "allow_rooms": list}, problems)
    problems += [f"receiver.{key}: must be more than 0 seconds, got {getattr(receiver, key)}"
                 for key in ("header_timeout", "keepalive_timeout", "body_timeout") if not getattr(receiver, key) > 0]
    if receiver.min_body_rate < 0:
        problems.append(f"receiver.min_body_rate: must be 0 (no rate check) or more bytes per second, "
                        f"got {receiver.min_body_rate}")
    if receiver.max_connections < 1:
        problems.append(f"receiver.max_connections: must be at least 1, got {receiver.max_connections}")
    if not receiver.path.startswith("/"):
        problems.append(f"receiver.path: must start with '/', got {receiver.path!r}")
    if not 0 < receiver.port < 65536:
        problems.append(f"receiver.port: must be 1-65535, got {receiver.port}")
    if not videosdk.api_base.startswith(("https://", "http://")):
        problems.append(f"videosdk.api_base: must be an http(s) URL, got {videosdk.api_base!r}")
    dest_tables = raw.get("destinations", [{"name": "local", "url": DEFAULT_DESTINATION_URL}])
    if not isinstance(dest_tables, list):
        problems.append("destinations: must be an array of tables ([[destinations]])")
        dest_tables = []
    destinations = [d for i, t in enumerate(dest_tables) if (d := parse_destination(i, t, problems))]
    names = [t.get("name") for t in dest_tables if isinstance(t, dict) and isinstance(t.get("name"), str)]
    problems += [f"destinations: name {n!r} is used more than once" for n in sorted({n for n in names
                                                                                    if names.count(n) > 1})]
    return Settings(**{k: v for k, v in top.items() if v is not None}, source=source, retry=retry,
                    reconcile=reconcile, retention=retention, videosdk=videosdk, receiver=receiver,
                    destinations=tuple(destinations), origin=origin)


def broker_url_problem(url: str) -> str | None:
    """Why kombu could not read `url`, in words that never quote it (it may hold a password). kombu
    splits failover and Sentinel lists at every ";" and reads each part with urllib, whose error would
    quote the text after a ":" it takes for a port: often a piece of the password."""
    for part in url.split(";"):
        try:
            _ = urlsplit(part.strip()).port
        except ValueError:
            return ("not a URL the broker client can read (its port is not a number): percent-encode any ';', "
                    "'/', '?', '#' or '@' in the password (e.g. '@' as %40)")
    return None


def _typed(table: Mapping[str, Any], key: str, kind: Any, where: str, problems: list[str]) -> Any:
    if key not in table:
        return None
    value = table[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "number"
        problems.append(f"{where}: must be {name}, got {type(value).__name__}")
        return None
    return value


def _section(raw: dict[str, Any], name: str, cls: Any, keys: dict[str, Any], problems: list[str]) -> Any:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name}: must be a table")
        return cls()
    problems += [f"{name}.{k}: unknown setting (known: {', '.join(keys)})" for k in table if k not in keys]
    values = {k: v for k, t in keys.items() if (v := _typed(table, k, t, f"{name}.{k}", problems)) is not None}
    for key in ("allow_hosts", "allowed_networks", "rooms", "allow_rooms"):
        if key in values:
            values[key] = tuple(values[key])
    for cidr in values.get("allowed_networks", ()):
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            problems.append(f"{name}.allowed_networks: {cidr!r} is not a network (e.g. 10.1.0.0/16)")
    if values.get("max_attempts", 1) < 1:
        problems.append(f"{name}.max_attempts: must be at least 1")
    return cls(**values)


def _storage_source(table: Any, problems: list[str]) -> StorageSource | None:
    """``storage = "s3://bucket"`` or ``[videosdk.storage]`` with ``url`` and provider options (secrets only
    as ``<option>_env``, exactly as for destinations)."""
    if not isinstance(table, dict) or table.get("storage") is None:
        return None
    value = table["storage"]
    where = "videosdk.storage"
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict) or not isinstance(value.get("url"), str):
        problems.append(f"{where}: must be a storage URL (e.g. \"s3://bucket\") or a table with url = ...")
        return None
    url, options = value["url"], {k: v for k, v in value.items() if k != "url"}
    try:
        spec = {**COMMON_OPTIONS, **provider_class(split_url(url)[0]).options_spec}
        secrets = [k for k in options if k in spec and spec[k].secret]
        problems += [f"{where}.{k}: secrets are not read from the config file; set {k}_env = \"VARIABLE\""
                     for k in secrets]
        open_provider(url, **options)  # validates every option; no network until first use
    except ConfigurationError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return StorageSource(url=url, options=options)
