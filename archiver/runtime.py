"""What a process needs to run jobs: settings, the ledger, one provider per destination.

Built lazily once per process (after a fork, a Celery prefork child builds its own engine and SDK
clients; sharing a pooled DB connection or an SDK client across a fork corrupts both).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from archiver.domain.source_policy import SourcePolicy
from archiver.ledger.database import create_ledger_engine, require_current_schema
from archiver.ledger.store import Ledger
from archiver.notifications.routing import outbox_for
from archiver.settings.config import Destination, Settings, load_settings
from archiver.videosdk.api import VideoSDKClient
from archiver.worker.memory_tuning import map_large_buffers
from providers import StorageProvider

# Its key among the cached providers: "<" is never in a destination's name.
_SOURCE_STORAGE = "<videosdk.storage>"


@dataclass
class Runtime:
    settings: Settings
    ledger: Ledger
    _providers: dict[str, StorageProvider] = field(default_factory=dict)
    # (what it was built from, the client): see videosdk()
    _videosdk: tuple[tuple[object, ...], VideoSDKClient] | None = field(default=None, repr=False)
    _videosdk_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(cls, settings: Settings, *, check_schema: bool = True) -> Runtime:
        map_large_buffers()  # before any copy allocates a part buffer
        engine = create_ledger_engine(settings.database_url)
        if check_schema:
            require_current_schema(engine)
        return cls(settings=settings, ledger=Ledger(engine, outbox=outbox_for(settings)))

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    @property
    def worker_id(self) -> str:
        # pid changes after a fork; the id must name the process actually holding a lease.
        return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    @property
    def source_policy(self) -> SourcePolicy:
        return self.settings.source

    def source_storage(self) -> StorageProvider | None:
        """The customer's bucket that VideoSDK writes to (``[videosdk] storage``), as a source; None when
        not configured. One provider per process, like the destinations'."""
        storage = self.settings.videosdk.storage
        if storage is None:
            return None
        if _SOURCE_STORAGE not in self._providers:
            self._providers[_SOURCE_STORAGE] = storage.open()
        return self._providers[_SOURCE_STORAGE]

    def videosdk(self) -> VideoSDKClient:
        """The process's client for VideoSDK's REST API: one connection pool (one TLS handshake) for
        every job, not one per job. Built anew when [videosdk] api_base, api_key or timeout, or
        VIDEOSDK_SECRET_KEY, changed, in a forked child, and once it was closed or discarded. Do not
        close it: `discard_videosdk` it when its connections may be broken."""
        sdk = self.settings.videosdk
        made_from = (os.getpid(), sdk.api_base, sdk.api_key, os.environ.get("VIDEOSDK_SECRET_KEY"), sdk.timeout)
        with self._videosdk_lock:
            if self._videosdk is not None and self._videosdk[0] == made_from and not self._videosdk[1].closed:
                return self._videosdk[1]
            old, self._videosdk = self._videosdk, (made_from, VideoSDKClient.from_settings(self.settings))
            if old is not None and old[0][0] == os.getpid():  # a parent's pool is the parent's to close
                old[1].close()
            return self._videosdk[1]

    def discard_videosdk(self, client: VideoSDKClient) -> None:
        """Close `client` and, if it is the process's, forget it: the next `videosdk()` builds a new one."""
        with self._videosdk_lock:
            if self._videosdk is not None and self._videosdk[1] is client:
                self._videosdk = None
        client.close()

    def provider(self, destination: Destination) -> StorageProvider:
        if destination.name not in self._providers:
            self._providers[destination.name] = destination.open()
        return self._providers[destination.name]


_RUNTIME: tuple[int, Runtime] | None = None
_LOCK = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime, from ARCHIVER_CONFIG / archiver.toml / ARCHIVER_* variables."""
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None or _RUNTIME[0] != os.getpid():
            _RUNTIME = (os.getpid(), Runtime.create(load_settings()))
        return _RUNTIME[1]
