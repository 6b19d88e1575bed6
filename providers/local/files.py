"""What the local provider's reader and writer share: the temp-file name, the extended attribute that
carries content type and metadata, and the translation of OSError into the provider error vocabulary."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from typing import Any

from providers.errors import (
    AccessDenied,
    ConfigurationError,
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientError,
    make_error,
)
from providers.local.paths import SymlinkRefused

XATTR = "user.archiver"
TEMP_MARK = ".archiver-tmp-"


def temp_name(full_key: str) -> str:
    """``.archiver-tmp-<16 hex of the file's name><8 random hex>``: a fixed 38 bytes, so any legal name
    (up to NAME_MAX) can be written, and tied to the name, so a dead writer's leftover can be found."""
    return f"{TEMP_MARK}{name_tag(full_key)}{secrets.token_hex(4)}"


def name_tag(full_key: str) -> str:
    return hashlib.sha256(full_key.rsplit("/", 1)[-1].encode()).hexdigest()[:16]


def translate(exc: OSError, what: str) -> StorageError:
    if isinstance(exc, StorageError):  # raised by this module already (ObjectNotFound is an OSError too)
        return exc
    if isinstance(exc, SymlinkRefused):  # never retried: someone put a link inside the destination
        return ConfigurationError(f"refused: {exc.strerror} ({what})", code="symlink")
    table: dict[int, type[StorageError]] = {
        errno.ENOENT: ObjectNotFound, errno.EEXIST: ObjectExists, errno.EACCES: AccessDenied,
        errno.EPERM: AccessDenied, errno.EROFS: AccessDenied, errno.ENOSPC: TransientError,
        errno.EIO: TransientError, errno.ENOTDIR: ConfigurationError, errno.EISDIR: ConfigurationError,
        errno.ENAMETOOLONG: InvalidKey,  # a name segment over the file system's NAME_MAX (255 bytes)
    }
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    return make_error(table.get(exc.errno or 0, StorageError), name, what)


def read_attrs(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.getxattr(fd, XATTR))  # type: ignore[no-any-return]
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return {}
        raise
