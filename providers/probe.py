"""`StorageProvider.check()`: write a probe, read it back, compare, delete it; one step per permission.

Each failing step names the permission it needed in the provider's own words (`permissions`), so a
write-only credential reads "stat denied ... (needs s3:GetObject)", not "write failed". When the
destination sets tags, a second probe is written with them ("tag" step), so a credential that may
write but not tag is told so. Every probe that may have been written is deleted, whatever failed
before; one that cannot be deleted is named in the report, for removal by hand.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from providers.errors import AccessDenied, AuthenticationError, ObjectNotFound, StorageError
from providers.types import CheckReport, CheckStep

if TYPE_CHECKING:
    from providers.base import StorageProvider

PROBE_BYTES = 1024
PROBE_PREFIX = ".archiver-probe-"


def run_check(provider: StorageProvider, under: str = "") -> CheckReport:
    key = f"{under}{PROBE_PREFIX}{secrets.token_hex(8)}"
    payload = secrets.token_bytes(PROBE_BYTES)
    where = provider.describe(under)
    needs = provider.permissions
    hint = provider.credentials_hint
    steps: list[CheckStep] = []
    written: list[str] = []  # probes that are (or may be) in the bucket

    def step(name: str, verb: str, kind: str, action: Callable[[], Any]) -> Any:
        try:
            result = action()
        except StorageError as exc:
            steps.append(CheckStep(name, False, _failed(verb, exc, _at(provider, where), kind, needs[kind], hint)))
            return None
        except OSError as exc:  # e.g. DNS failure before any SDK error mapping
            steps.append(CheckStep(name, False, f"{verb} failed: {type(exc).__name__} on {_at(provider, where)}"))
            return None
        steps.append(CheckStep(name, True, f"{verb} ok"))
        return result if result is not None else True

    def write(target: StorageProvider, probe: str, name: str, verb: str, kind: str) -> Any:
        def upload() -> Any:
            try:
                return target.upload(probe, io.BytesIO(payload), content_type="application/octet-stream")
            except StorageError as exc:
                if exc.left_visible is not None:
                    written.append(probe)
                raise
        info = step(name, verb, kind, upload)
        if info is not None:
            written.append(probe)
            if info.unverified:  # committed, but the commit's own check could not read it back
                steps[-1] = CheckStep(name, True, f"{verb} ok; not verified: {'; '.join(info.unverified)}")
        return info

    plain = provider.probe_variant(tags=False)
    if write(plain, key, "write", "write", "write") is not None:
        if provider.sets_tags:
            write(provider.probe_variant(tags=True), f"{key}-tags", "tag", "write with tags", "tag")
        step("stat", "stat", "read", lambda: provider.stat(key))
        data = step("read", "read", "read", lambda: _read_all(provider.open_reader(key)))
        if isinstance(data, bytes):
            same = data == payload
            steps.append(CheckStep("compare", same, "read back the same bytes" if same else
                                   f"read back {len(data)} bytes that differ from the {PROBE_BYTES} written"))
    if written:
        _delete_all(provider, written, steps, _at(provider, where), needs["delete"])
    return CheckReport(url=where, steps=tuple(steps))


def _delete_all(provider: StorageProvider, keys: list[str], steps: list[CheckStep], where: str,
                permission: str) -> None:
    left, failure = [], None
    for key in keys:
        try:
            provider.delete(key)
        except StorageError as exc:
            left.append(provider.describe(key))
            failure = _failed("delete", exc, where, "delete", permission, provider.credentials_hint)
    if failure is None:
        steps.append(CheckStep("delete", True, "delete ok"))
    else:
        steps.append(CheckStep("delete", False, f"{failure}; remove {', '.join(left)} by hand"))


def _at(provider: StorageProvider, where: str) -> str:
    """``where`` with the endpoint the requests went to, for a failure's message."""
    try:
        endpoint = provider.service_endpoint()
    except Exception:  # a message's detail must not fail the check (e.g. a client that cannot be made)
        endpoint = None
    return f"{where} (endpoint {endpoint})" if endpoint else where


def _failed(verb: str, exc: StorageError, where: str, kind: str, permission: str, credentials: str = "") -> str:
    """E.g. "stat denied: AccessDenied on s3://b/pre/ (endpoint https://s3.eu-west-1.amazonaws.com)
    (missing the read permission: s3:GetObject)"; credentials missing or refused say where they go."""
    hint = f" (missing the {kind} permission: {permission})" if isinstance(exc, AccessDenied) else ""
    if isinstance(exc, AuthenticationError) and credentials:
        hint = f"; credentials: {credentials}"
    return f"{verb} {_failure_word(exc)}: {exc.code or exc} on {where}{hint}"


def _failure_word(exc: StorageError) -> str:
    if isinstance(exc, AccessDenied):
        return "denied"
    if isinstance(exc, AuthenticationError):
        return "unauthenticated"
    if isinstance(exc, ObjectNotFound):
        return "not found"
    return "failed"


def _read_all(reader: BinaryIO) -> bytes:
    with reader:
        return reader.read()
