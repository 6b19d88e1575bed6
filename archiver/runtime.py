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
from archiver.worker.memory_tuning import map_large_buffers
from providers import StorageProvider

# Its key among the cached providers: "<" is never in a destination's name.
_SOURCE_STORAGE = "<videosdk.storage>"


@dataclass
class Runtime:
    settings: Settings
    ledger: Ledger
    _providers: dict[str, StorageProvider] = field(default_factory=dict)

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
