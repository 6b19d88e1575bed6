"""Files that hold webhook bodies and signed source URLs are readable by their owner only.

The ledger and the embedded broker are SQLite files (`.archiver/ledger.db`, `.archiver/broker.db`);
the bodies in them carry signed CDN URLs. Each is created 0600 before SQLite opens it, and SQLite
gives its `-wal`, `-shm` and `-journal` files the mode of the database file, so they are 0600 too.
Folders the archiver creates for them (`.archiver/` by default) are 0700.

Not changed: a folder that already exists (it may be shared on purpose; `chmod 700 .archiver` once
for one made by an older version). An existing database file is tightened to 0600, and so are its
journal files when present.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: str | Path) -> Path:
    """Create `path` and any missing parent, each new one 0700 (existing ones are left as they are)."""
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)
    return path


def private_sqlite_file(path: str | Path) -> None:
    """Make sure the SQLite database at `path` (and its journal files) is 0600, creating it empty
    (which SQLite reads as a new database) if it does not exist. Its folder is made with private_dir."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
        os.close(fd)
    except FileExistsError:
        pass
    for name in (str(path), *(f"{path}{suffix}" for suffix in _SQLITE_COMPANIONS)):
        # Tighten what exists; a file of another owner (read by `status` as another user) stays as it is.
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, PRIVATE_FILE)


def sqlite_path(url: str) -> Path | None:
    """The file a `sqlite:///...` or `sqla+sqlite:///...` URL names; None for memory or URI databases."""
    for prefix in ("sqla+sqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            name = url[len(prefix):].split("?", 1)[0]
            if name and name != ":memory:" and not name.startswith("file:"):
                return Path(name)
    return None
