"""The local disk writer: a temp file in the key's folder, parts appended in order, fsync, then an
exclusive rename (or link) that publishes the bytes and their extended attributes together."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
from typing import TYPE_CHECKING, Any, BinaryIO

from providers.errors import AccessDenied, ObjectNotFound, StorageError, TransientError
from providers.local.files import XATTR, temp_name, translate
from providers.local.paths import open_parent
from providers.pool import Chain, views_of
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, Part, WriteRequest

if TYPE_CHECKING:
    from providers.local.provider import LocalProvider

_log = logging.getLogger("providers.local.provider")  # the provider's logger, as before the writer had a file


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
            raise translate(exc, self.describe) from exc

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
            os.setxattr(self._fd, XATTR, json.dumps(attrs).encode())
        except OSError as exc:
            if exc.errno != errno.ENOTSUP:
                raise translate(exc, self.describe) from exc
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
