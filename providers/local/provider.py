"""Local disk: a temp file in the destination folder, fsync, then an atomic (exclusive) rename.

Every path under the destination is reached without following a symbolic link (see local_paths), so
nothing written, read, stat'ed or deleted can land outside it; new folders are 0750.

Content type and metadata travel as extended attributes on the file itself, so they are published
by the same rename that publishes the bytes. The temp file's name has a fixed length
(`.archiver-tmp-` and 24 hex digits, 38 bytes) whatever the target's: a name derived from the target
would exceed NAME_MAX (255 bytes) for targets the file system accepts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from providers.base import StorageProvider
from providers.errors import (
    ObjectNotFound,
)
from providers.local.files import TEMP_MARK, name_tag, read_attrs, translate
from providers.local.paths import SymlinkRefused, is_symlink, open_file, open_parent
from providers.local.writer import LocalWriter
from providers.options import Option
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, WriteRequest

_log = logging.getLogger(__name__)


class LocalProvider(StorageProvider):
    scheme = "file"
    options_spec: ClassVar[dict[str, Option]] = {
        "fsync": Option("bool", True, doc="fsync file and folder before publishing"),
        "file_mode": Option("int", 0o640, doc="permission bits of written files (e.g. 0o640)"),
        "min_free_bytes": Option("size", 1 << 30, doc="free space a write must leave on the file system; a write "
                                                      "that would go below it fails (retried later) instead of "
                                                      "filling the disk"),
    }
    default_concurrency = 2  # one part filling while the previous one is written
    permissions: ClassVar[dict[str, str]] = {"write": "write and search (w, x) on the folder",
                                             "read": "read (r) on the files", "delete": "write (w) on the folder",
                                             "tag": "extended attributes (user.*) on the file system"}

    def __init__(self, location: str, prefix: str, options: dict[str, Any]) -> None:
        super().__init__(location, prefix, options)
        self.root = Path(location).resolve() if location.startswith("/") else Path(location)
        self.url = f"file://{location}" if location.startswith("/") else f"file:{location}"
        self.url = self.url.rstrip("/") + "/" + self.prefix

    def _new_client(self) -> Any:
        return None

    def path_of(self, full_key: str) -> Path:
        return self.root / full_key

    def _writer(self, request: WriteRequest) -> ObjectWriter:
        return LocalWriter(self, request)

    def _stat(self, full_key: str, key: str) -> ObjectInfo:
        try:
            dir_fd, name = open_parent(self.root, full_key, create=False)
            try:
                return self._stat_at(dir_fd, name, full_key, key)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise translate(exc, self.describe(key)) from exc

    def _stat_at(self, dir_fd: int, name: str, full_key: str, key: str) -> ObjectInfo:
        """Size and attributes of the file `name` in the folder `dir_fd`, read through one
        descriptor (so both describe the same file). Raises OSError."""
        fd = open_file(dir_fd, name, full_key)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"not a file: {self.describe(key)}", code="ENOENT")
            attrs = read_attrs(fd)
        finally:
            os.close(fd)
        checksums = {"sha256": attrs["sha256"]} if attrs.get("sha256") else {}
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}",
                          content_type=attrs.get("content_type"), metadata=attrs.get("metadata", {}),
                          checksums=checksums, storage_class=None,
                          last_modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def _open_reader(self, full_key: str) -> BinaryIO:
        key = full_key[len(self.prefix):]
        try:
            dir_fd, name = open_parent(self.root, full_key, create=False)
            try:
                fd = open_file(dir_fd, name, full_key)
            finally:
                os.close(dir_fd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ObjectNotFound(f"not a file: {self.describe(key)}", code="ENOENT")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except OSError as exc:
            raise translate(exc, self.describe(key)) from exc

    def _discard_incomplete(self, full_key: str) -> int:
        """Remove the temporary files a writer of this key left when it was killed (SIGKILL cannot
        abort): each carries the tag of the file's name. Only call it while holding the right to
        write the key: a live writer of the same key would lose its temporary file."""
        try:
            dir_fd, _ = open_parent(self.root, full_key, create=False)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise translate(exc, self.describe(full_key[len(self.prefix):])) from exc
        try:
            mark, removed = f"{TEMP_MARK}{name_tag(full_key)}", 0
            for entry in os.listdir(dir_fd):
                if entry.startswith(mark) and len(entry) == len(mark) + 8:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry, dir_fd=dir_fd)
                        removed += 1
            return removed
        finally:
            os.close(dir_fd)

    def _delete(self, full_key: str) -> None:
        try:
            dir_fd, name = open_parent(self.root, full_key, create=False)
            try:
                if is_symlink(name, dir_fd):
                    raise SymlinkRefused(full_key)
                # unlinkat never follows a link: one swapped in after the check loses only itself.
                os.unlink(name, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise translate(exc, self.describe(full_key[len(self.prefix):])) from exc

    def inode(self, full_key: str) -> tuple[int, int] | None:
        """(device, inode) of the file at `full_key` (a link is not followed), None when absent."""
        try:
            dir_fd, name = open_parent(self.root, full_key, create=False)
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            finally:
                os.close(dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise translate(exc, self.describe(full_key[len(self.prefix):])) from exc
        return st.st_dev, st.st_ino
