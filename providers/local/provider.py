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
import errno
import hashlib
import io
import json
import logging
import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from providers.base import StorageProvider
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
from providers.local.paths import SymlinkRefused, is_symlink, open_file, open_parent
from providers.options import Option
from providers.pool import Chain, views_of
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, Part, WriteRequest

_XATTR = "user.archiver"
_TEMP_MARK = ".archiver-tmp-"


def temp_name(full_key: str) -> str:
    """``.archiver-tmp-<16 hex of the file's name><8 random hex>``: a fixed 38 bytes, so any legal name
    (up to NAME_MAX) can be written, and tied to the name, so a dead writer's leftover can be found."""
    return f"{_TEMP_MARK}{_name_tag(full_key)}{secrets.token_hex(4)}"


def _name_tag(full_key: str) -> str:
    return hashlib.sha256(full_key.rsplit("/", 1)[-1].encode()).hexdigest()[:16]
_log = logging.getLogger(__name__)


def _translate(exc: OSError, what: str) -> StorageError:
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
            raise _translate(exc, self.describe(key)) from exc

    def _stat_at(self, dir_fd: int, name: str, full_key: str, key: str) -> ObjectInfo:
        """Size and attributes of the file `name` in the folder `dir_fd`, read through one
        descriptor (so both describe the same file). Raises OSError."""
        fd = open_file(dir_fd, name, full_key)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"not a file: {self.describe(key)}", code="ENOENT")
            attrs = _read_attrs(fd)
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
            raise _translate(exc, self.describe(key)) from exc

    def _discard_incomplete(self, full_key: str) -> int:
        """Remove the temporary files a writer of this key left when it was killed (SIGKILL cannot
        abort): each carries the tag of the file's name. Only call it while holding the right to
        write the key: a live writer of the same key would lose its temporary file."""
        try:
            dir_fd, _ = open_parent(self.root, full_key, create=False)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise _translate(exc, self.describe(full_key[len(self.prefix):])) from exc
        try:
            mark, removed = f"{_TEMP_MARK}{_name_tag(full_key)}", 0
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
            raise _translate(exc, self.describe(full_key[len(self.prefix):])) from exc

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
            raise _translate(exc, self.describe(full_key[len(self.prefix):])) from exc
        return st.st_dev, st.st_ino


def _read_attrs(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.getxattr(fd, _XATTR))  # type: ignore[no-any-return]
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return {}
        raise


class LocalWriter(ObjectWriter):
    """Parts are appended in order; local disk gains nothing from parallel writes to one file."""

    ordered_parts = True

    def __init__(self, provider: LocalProvider, request: WriteRequest) -> None:
        # Two slots: one part filling while the previous one is written; more buys nothing on one file.
        request.concurrency = min(request.concurrency, 2)
        super().__init__(request, provider.describe(request.key))
        self.provider = provider
        self.final = provider.path_of(request.full_key)  # for messages; files are reached through _dir_fd
        self._temp_name = temp_name(request.full_key)
        self.temp = self.final.with_name(self._temp_name)
        self._dir_fd: int | None = None  # the key's folder, opened without following links (_begin)
        self._name = self.final.name
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None  # (device, inode) of the file this writer published

    def _os(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except OSError as exc:
            raise _translate(exc, self.describe) from exc

    def _begin(self) -> None:
        self._dir_fd, self._name = self._os(open_parent, self.provider.root, self.request.full_key, create=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        if self.request.size_hint:
            try:
                self._room_for(self.request.size_hint)  # the whole file would not fit: fail before creating it
            except BaseException:
                self._close_dir()
                raise
        self._fd = self._os(os.open, self._temp_name, flags, self.provider.options["file_mode"], dir_fd=self._dir_fd)

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._dir_fd)
            self._dir_fd = None

    def _room_for(self, size: int) -> None:
        """TransientError "disk_full" when writing ``size`` more bytes would leave less than min_free_bytes:
        a file nobody can vouch for (or a webhook naming a huge one) must not fill the archive's disk."""
        where = self._fd if self._fd is not None else self._dir_fd
        assert where is not None
        stat = self._os(os.fstatvfs, where)
        free, floor = stat.f_bavail * stat.f_frsize, int(self.provider.options["min_free_bytes"])
        if free - size < floor:
            raise TransientError(f"temporarily failed: disk_full on {self.describe}: {free} bytes free, writing "
                                 f"{size} more would leave less than min_free_bytes ({floor})", code="disk_full")

    def _send_part(self, number: int, data: bytearray, sha256: bytes) -> Any:
        self._write_all(memoryview(data))
        return None

    def _write_all(self, view: memoryview) -> None:
        assert self._fd is not None
        self._room_for(len(view))
        while len(view):
            view = view[self._os(os.write, self._fd, view):]

    def _put_single(self, data: bytearray | Chain, sha256_hex: str) -> ObjectInfo:
        self._begin()
        self._began = True
        for view in views_of(data):  # written as it is, from its buffer
            self._write_all(view)
        return self._complete([], sha256_hex)

    def _complete(self, parts: list[Part], sha256_hex: str) -> ObjectInfo:
        assert self._fd is not None
        attrs = {"sha256": sha256_hex, "content_type": self.request.content_type,
                 "metadata": self.request.metadata}
        fsync = self.provider.options["fsync"]
        try:
            os.setxattr(self._fd, _XATTR, json.dumps(attrs).encode())
        except OSError as exc:
            if exc.errno != errno.ENOTSUP:
                raise _translate(exc, self.describe) from exc
        if fsync:
            self._os(os.fsync, self._fd)
        st = self._os(os.fstat, self._fd)
        self._os(os.close, self._fd)
        self._fd = None
        d = self._dir_fd
        if self.request.if_absent:
            # linkat() fails if the name exists (a link included, which it never follows): a
            # create-only publish without a check-then-act race.
            self._os(os.link, self._temp_name, self._name, src_dir_fd=d, dst_dir_fd=d, follow_symlinks=False)
        else:  # renameat() replaces the name itself, never what a link there points to
            self._os(os.replace, self._temp_name, self._name, src_dir_fd=d, dst_dir_fd=d)
        self._inode = (st.st_dev, st.st_ino)  # published: from here on, a failure must unpublish
        try:
            if self.request.if_absent:
                self._remove_temp()
            if fsync:
                self._os(os.fsync, d)
            info = self._os(self.provider._stat_at, d, self._name, self.request.full_key, self.request.key)
            self._close_dir()
            return info  # type: ignore[no-any-return]
        except AccessDenied as exc:
            self._close_dir()
            # Files written without read permission (file_mode 0o200) keep their attributes unreadable.
            return ObjectInfo(key=self.request.key, size=st.st_size, etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}",
                              content_type=self.request.content_type, metadata=dict(self.request.metadata),
                              checksums={"sha256": sha256_hex}, unverified=(
                                  f"read denied ({exc.code}): the published file was not read back; its size "
                                  "was checked on the file before it was published",))
        except StorageError as exc:
            raise self._unpublish(exc)  # noqa: B904 - the context is chained already

    def _remove_temp(self) -> None:
        if self._dir_fd is None:
            return
        try:
            os.unlink(self._temp_name, dir_fd=self._dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:  # never raised from abort(): it would hide the error being handled
            code = errno.errorcode.get(exc.errno or 0, "OSError")
            self.left_incomplete = f"the temporary file {self.temp} ({code})"
            _log.warning("could not remove the temporary file %s: %s", self.temp, code)

    def _cancel(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._remove_temp()
        self._close_dir()

    def _is_ours(self) -> bool:
        return self.provider.inode(self.request.full_key) == self._inode

    def _delete_committed(self) -> None:
        if self._is_ours():  # a file someone else published at the name since stays
            self.provider._delete(self.request.full_key)

    def _open_committed(self, start: int, length: int | None) -> BinaryIO:
        if not self._is_ours():
            raise ObjectNotFound(f"not found: replaced or removed since it was written: {self.describe}",
                                 code="ENOENT")
        reader = self.provider._open_reader(self.request.full_key)
        reader.seek(start)
        if length is None:
            return reader
        with reader:
            return io.BytesIO(reader.read(length))
