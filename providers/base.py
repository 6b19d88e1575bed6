"""The provider contract. A provider implements a small core; everything else is derived here."""

from __future__ import annotations

import copy
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, BinaryIO, ClassVar

from providers.errors import InvalidKey, MissingSecret, ObjectNotFound
from providers.options import COMMON_OPTIONS, EnvSecret, Option, redacted, validate_options
from providers.probe import run_check
from providers.types import CheckReport, ObjectInfo
from providers.writer import ObjectWriter, WriteRequest

MAX_KEY_BYTES = 1024  # S3, GCS and Azure all cap object names near here; the lowest common limit


class StorageProvider(ABC):
    scheme: ClassVar[str]
    options_spec: ClassVar[dict[str, Option]]
    default_part_size: ClassVar[int] = 8 << 20
    default_concurrency: ClassVar[int] = 4
    # Objects of a known length up to this are written in one request (rclone's cutoff is 200 MiB);
    # max_single_request is what one request of the service (or its SDK) may carry.
    default_single_request_max: ClassVar[int] = 200 << 20
    max_single_request: ClassVar[int] = 5 << 30
    # The permission each kind of access needs, in the service's words, for `check()` to name.
    permissions: ClassVar[dict[str, str]] = {"write": "write", "read": "read", "delete": "delete", "tag": "tag"}
    # Where this backend's credentials go, for `check()` to say when they are missing or refused.
    credentials_hint: ClassVar[str] = ""

    def __init__(self, location: str, prefix: str, options: Mapping[str, Any]) -> None:
        self.location = location
        self.prefix = _normalise_prefix(prefix)
        self.url = f"{self.scheme}://{location}/{self.prefix}"
        spec = {**COMMON_OPTIONS, **self.options_spec}
        self.options = validate_options(spec, options, f"{self.scheme}://{location}")
        # Secrets given as `<name>_env` stay EnvSecret placeholders until the first client is made
        # (resolve_secrets); they are never pickled, and read again in the process that unpickles.
        self._env_secrets = {k[:-4]: v for k, v in options.items() if k.endswith("_env") and k[:-4] in spec}
        self._client_lock = threading.Lock()
        self._client_obj: Any = None
        self._client_pid: int | None = None
        self._validate()

    # ---- the core a provider implements ---------------------------------------------------------
    def _validate(self) -> None:  # noqa: B027 - optional hook
        """Check option combinations; raise ConfigurationError naming the option. A secret taken from
        the environment is an EnvSecret here (present, value unknown): check only that it is given."""

    def _check_secrets(self) -> None:  # noqa: B027 - optional hook
        """Check what needs the secrets themselves (their values, a key file, a credential variable
        the SDK would read); `self.options` holds the resolved values. Raise MissingSecret for one
        that is unavailable in this process, ConfigurationError for one that is malformed."""

    @abstractmethod
    def _new_client(self) -> Any:
        """Create the SDK client. Called lazily, once per process (so fork and pickle are safe)."""

    @abstractmethod
    def _writer(self, request: WriteRequest) -> ObjectWriter: ...

    @abstractmethod
    def _stat(self, full_key: str, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _open_reader(self, full_key: str) -> BinaryIO: ...

    @abstractmethod
    def _delete(self, full_key: str) -> None: ...

    def _part_size(self, size_hint: int | None) -> int:
        return int(self.options["part_size"] or self.default_part_size)

    # ---- the public, derived surface ------------------------------------------------------------
    @property
    def client(self) -> Any:
        pid = os.getpid()
        if self._client_pid != pid:
            with self._client_lock:
                if self._client_pid != pid:
                    self.resolve_secrets()
                    self._client_obj = self._new_client()
                    self._client_pid = pid
        return self._client_obj

    def resolve_secrets(self) -> None:
        """Read this destination's secrets from the process's environment and check them: done
        before the first client is made, so only processes that open a client (the worker, `check`,
        `archive`, `verify`) need them. Raises MissingSecret naming each unset variable."""
        values = dict(self.options)
        missing = {name: variable for name, variable in self._env_secrets.items() if not os.environ.get(variable)}
        if missing:
            variables = ", ".join(missing.values())
            named = ", ".join(f"{name}_env = {variable!r}" for name, variable in missing.items())
            raise MissingSecret(f"environment variable {variables} is not set in this process (named by "
                                f"option {named} of {self.url})", what=variables)
        values.update({name: os.environ[variable] for name, variable in self._env_secrets.items()})
        before, self.options = self.options, values
        try:
            self._check_secrets()
        except BaseException:
            self.options = before
            raise

    def full_key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise InvalidKey(f"empty object key for {self.url}")
        segments = key.split("/")
        if key.startswith("/") or any(s in ("", ".", "..") for s in segments):
            raise InvalidKey(f"object key {key!r} has an empty, '.' or '..' segment ({self.url})")
        if any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise InvalidKey(f"object key {key!r} contains a control character ({self.url})")
        full = self.prefix + key
        if len(full.encode()) > MAX_KEY_BYTES:
            raise InvalidKey(f"object key is {len(full.encode())} bytes, over the {MAX_KEY_BYTES}-byte limit "
                             f"({self.url})")
        return full

    def describe(self, key: str = "") -> str:
        return f"{self.url}{key}"

    def open_writer(self, key: str, *, size_hint: int | None = None, content_type: str | None = None,
                    metadata: Mapping[str, str] | None = None, if_absent: bool = True) -> ObjectWriter:
        part_size = self._part_size(size_hint)
        concurrency = int(self.options["concurrency"] or self.default_concurrency)
        single = int(self.options.get("single_request_max") or self.default_single_request_max)
        request = WriteRequest(
            key=key, full_key=self.full_key(key), part_size=part_size, concurrency=concurrency,
            size_hint=size_hint, content_type=content_type, metadata=dict(metadata or {}),
            if_absent=if_absent, single_request_max=min(single, part_size * concurrency, self.max_single_request))
        writer = self._writer(request)
        # a writer may lower its concurrency (local: 2): the objects it holds whole must still fit
        request.single_request_max = min(request.single_request_max, part_size * request.concurrency)
        return writer

    def upload(self, key: str, stream: BinaryIO, *, size_hint: int | None = None,
               content_type: str | None = None, metadata: Mapping[str, str] | None = None,
               if_absent: bool = True) -> ObjectInfo:
        """Stream any binary file-like object (seekable or not, known length or not) into `key`."""
        with self.open_writer(key, size_hint=size_hint, content_type=content_type, metadata=metadata,
                              if_absent=if_absent) as writer:
            chunk = max(64 << 10, min(writer.request.part_size, 1 << 20))
            readinto = getattr(stream, "readinto", None)
            if readinto is not None:
                buf = bytearray(chunk)
                view = memoryview(buf)
                while n := readinto(view):
                    writer.write(view[:n])
            else:
                while data := stream.read(chunk):
                    writer.write(data)
            return writer.commit()

    def stat(self, key: str) -> ObjectInfo:
        return self._stat(self.full_key(key), key)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def open_reader(self, key: str) -> BinaryIO:
        return self._open_reader(self.full_key(key))

    def delete(self, key: str) -> None:
        self._delete(self.full_key(key))

    def discard_incomplete(self, key: str) -> int:
        """Cancel unfinished uploads to `key` left by a writer that died without aborting (a SIGKILLed
        worker). Only call it while holding the right to write `key`. Returns how many were discarded."""
        return self._discard_incomplete(self.full_key(key))

    def _discard_incomplete(self, full_key: str) -> int:
        # Azure's uncommitted blocks and GCS's resumable sessions are invisible and expire on their own.
        return 0

    def check(self, under: str = "") -> CheckReport:
        """Write a small probe under the prefix (and under ``under``, a key prefix such as the fixed
        start of a destination's key template, "videosdk/": a policy limited to prefix/* must pass),
        read it back, compare, delete it; report each step, naming the endpoint and the permission
        a failing step lacked, or where credentials go (see providers/probe.py)."""
        return run_check(self, under)

    def service_endpoint(self) -> str | None:
        """The service endpoint requests go to, for messages (no credentials in it); None for none."""
        return None

    @property
    def sets_tags(self) -> bool:
        """Whether objects written here carry tags (so writing needs the tag permission too)."""
        return bool(self.options.get("tags"))

    def probe_variant(self, *, tags: bool) -> StorageProvider:
        """This destination as `check()` should probe it: without its tags unless `tags`, and with
        anything that would make a probe unreadable (an archive tier) left out."""
        if tags or "tags" not in self.options:
            return self
        probe = copy.copy(self)
        probe.options = {**self.options, "tags": None}
        return probe

    # ---- pickling and printing ------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_client_obj=None, _client_pid=None, _client_lock=None)
        state["options"] = {**self.options, **{n: EnvSecret(v) for n, v in self._env_secrets.items()}}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # secrets are read again when this process makes its client
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        spec = {**COMMON_OPTIONS, **self.options_spec}
        shown = ", ".join(f"{k}={v!r}" for k, v in redacted(spec, self.options).items())
        return f"<{type(self).__name__} {self.url}{' ' + shown if shown else ''}>"


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""
