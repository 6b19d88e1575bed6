"""Reaching a key's folder under a local destination without ever following a symbolic link.

A symlink planted inside the destination (at any level, or at the file's own name) would otherwise
let a write, read, stat or delete land outside it. Each folder of the key is opened relative to the
one before with O_NOFOLLOW (`openat`), and the file itself is then reached through that folder's
descriptor with calls that do not follow a link either (`O_NOFOLLOW`, `O_EXCL`, `linkat`, `renameat`,
`unlinkat`, `fstatat(AT_SYMLINK_NOFOLLOW)`). A link swapped in after a folder was opened changes
nothing: the descriptor still names the folder that was checked, so there is no check-then-act race.

Limits: the destination's own folder (the URL's path) and its parents are the operator's choice and
are followed as given. A hard link inside the destination to a file outside it cannot be told apart
from a file: a create-only write never opens an existing name, and an overwrite renames over the
name rather than writing through it, but a read or stat sees the linked file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

FOLDER_MODE = 0o750  # new folders under a destination: owner and group (files are `file_mode`, 0o640)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class SymlinkRefused(OSError):
    """A symbolic link where the key needs a folder or a file; `where` is the key's path up to it."""

    def __init__(self, where: str) -> None:
        super().__init__(errno.ELOOP, f"symbolic link at {where!r}: links inside a destination are never followed")
        self.where = where


def open_root(root: Path, *, create: bool) -> int:
    """A descriptor of the destination's folder (followed as configured), created 0750 if missing."""
    if create and not root.is_dir():
        missing = [p for p in (root, *root.parents) if not p.exists()]
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, FOLDER_MODE)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))


def open_parent(root: Path, full_key: str, *, create: bool) -> tuple[int, str]:
    """(descriptor of the key's folder, the file's name in it). Folders are created 0750 when
    `create`; a symlink at any level raises SymlinkRefused, a missing folder FileNotFoundError. The
    caller closes the descriptor."""
    *folders, name = full_key.split("/")
    fd = open_root(root, create=create)
    try:
        for depth, folder in enumerate(folders):
            try:
                child = os.open(folder, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
                    os.mkdir(folder, FOLDER_MODE, dir_fd=fd)
                child = _open_dir(folder, fd, "/".join(folders[:depth + 1]))
            except OSError as exc:
                raise _why(exc, folder, fd, "/".join(folders[:depth + 1])) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def _open_dir(folder: str, dir_fd: int, where: str) -> int:
    try:
        return os.open(folder, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _why(exc, folder, dir_fd, where) from None


def _why(exc: OSError, name: str, dir_fd: int, where: str) -> OSError:
    """O_NOFOLLOW | O_DIRECTORY on a link fails with ELOOP or ENOTDIR: say which it was."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and is_symlink(name, dir_fd):
        return SymlinkRefused(where)
    return exc


def is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_file(dir_fd: int, name: str, full_key: str, flags: int = os.O_RDONLY) -> int:
    """Open the file `name` in `dir_fd` without following a link (SymlinkRefused if it is one)."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkRefused(full_key) from None
        raise
