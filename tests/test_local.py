"""Local-disk specifics: temp files, exclusive publish under a race, permission errors as a real user."""

from __future__ import annotations

import io
import os
import pwd
import tempfile
import threading
from pathlib import Path

import pytest

from providers import AccessDenied, ConfigurationError, InvalidKey, ObjectExists, open_provider


def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = open_provider("file:rel/dir")
    rel.upload("a.bin", io.BytesIO(b"a"))
    assert (tmp_path / "rel/dir/a.bin").read_bytes() == b"a"
    absolute = open_provider(f"file://{tmp_path}/abs")
    absolute.upload("x/y.bin", io.BytesIO(b"y"))
    assert (tmp_path / "abs/x/y.bin").read_bytes() == b"y"
    with pytest.raises(ConfigurationError, match="names a host"):
        open_provider("file://somehost/dir")


def test_abort_removes_the_temp_file(tmp_path: Path) -> None:
    provider = open_provider(f"file://{tmp_path}", part_size=1024)
    with pytest.raises(ValueError), provider.open_writer("m/a.bin") as writer:
        writer.write(os.urandom(5000))
        assert any(".archiver-tmp-" in p.name for p in (tmp_path / "m").iterdir())
        raise ValueError("source failed")
    assert list((tmp_path / "m").iterdir()) == []


def test_only_one_of_two_racing_writers_publishes(tmp_path: Path) -> None:
    provider = open_provider(f"file://{tmp_path}", fsync=False)
    writers = [provider.open_writer("race.bin") for _ in range(2)]
    for n, writer in enumerate(writers):
        writer.write(f"writer {n}".encode() * 1000)
    outcomes: list[str] = []

    def commit(writer: object) -> None:
        try:
            writer.commit()  # type: ignore[attr-defined]
            outcomes.append("published")
        except ObjectExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["exists", "published"]
    assert [p.name for p in tmp_path.iterdir()] == ["race.bin"]


def test_file_mode_is_applied(tmp_path: Path) -> None:
    provider = open_provider(f"file://{tmp_path}", file_mode=0o600)
    provider.upload("a.bin", io.BytesIO(b"a"))
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o600


def test_write_into_a_folder_the_user_cannot_write_is_access_denied(tmp_path: Path) -> None:
    # Root ignores permission bits, so the write runs in a child process as an unprivileged user.
    target = tmp_path / "locked"
    target.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        message = b""
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            provider = open_provider(f"file://{target}")
            try:
                provider.upload("a.bin", io.BytesIO(b"a"))
                message = b"no error"
            except AccessDenied as exc:
                message = f"AccessDenied|{exc}|{provider.check().steps[0].message}".encode()
        finally:
            os.write(write_end, message)
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        kind, error, check_message = pipe.read().decode().split("|")
    assert kind == "AccessDenied"
    assert error == f"denied: EACCES on file://{target}/a.bin"
    assert check_message.startswith(f"write denied: EACCES on file://{target}/")


# Names a file system accepts (NAME_MAX is 255 bytes) must never be refused because of our temp file.
LEGAL_NAMES = {
    "229-bytes": "a" * 225 + ".mp4",
    "250-bytes": "b" * 246 + ".mp4",
    "255-bytes": "c" * 251 + ".mp4",
    "255-bytes-2-byte-utf8": "é" * 125 + "x.mp4",
    "255-bytes-3-byte-utf8": "録" * 85,
    "255-bytes-4-byte-utf8": "🎥" * 62 + "xyz.mp4",
}


@pytest.mark.parametrize("name", LEGAL_NAMES.values(), ids=LEGAL_NAMES.keys())
def test_names_up_to_255_bytes_are_written(tmp_path: Path, name: str) -> None:
    assert len(name.encode()) in (229, 250, 255)
    provider = open_provider(f"file://{tmp_path}", part_size=1024)
    for key, data in ((f"single/{name}", b"one request"), (f"parts/{name}", os.urandom(5000))):
        info = provider.upload(key, io.BytesIO(data))
        assert info.size == len(data)
        assert (tmp_path / key).read_bytes() == data
        assert [p.name for p in (tmp_path / key).parent.iterdir()] == [name]  # no temp file left


def test_the_temp_name_has_a_fixed_length(tmp_path: Path) -> None:
    provider = open_provider(f"file://{tmp_path}", part_size=1024)
    for name in ("a.bin", "x" * 255):
        with provider.open_writer(name) as writer:
            writer.write(os.urandom(2000))  # the temp file exists now
            temps = [p.name for p in tmp_path.iterdir() if p.name.startswith(".archiver-tmp-")]
            assert len(temps) == 1 and len(temps[0]) == len(".archiver-tmp-") + 24
            writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_name_over_255_bytes_is_an_invalid_key(tmp_path: Path) -> None:
    provider = open_provider(f"file://{tmp_path}")
    with pytest.raises(InvalidKey, match="ENAMETOOLONG") as excinfo:
        provider.upload("d" * 256, io.BytesIO(b"x"))
    assert not excinfo.value.retryable
    assert list(tmp_path.iterdir()) == []


def test_check_names_a_missing_read_permission_and_still_removes_its_probe() -> None:
    # Files written write-only (file_mode 0o200) cannot be read back by the (unprivileged) writer.
    with tempfile.TemporaryDirectory(prefix="archiver-wo-") as folder:  # pytest's tmp_path is root-only
        target = Path(folder)
        target.chmod(0o777)
        steps = _check_as_nobody(target)
        assert list(target.iterdir()) == []
    assert [(name, ok) for name, ok, _ in steps] == [("write", "True"), ("stat", "False"), ("read", "False"),
                                                    ("delete", "True")]
    assert steps[0][2].startswith("write ok; not verified: read denied (EACCES)")
    assert steps[2][2] == (f"read denied: EACCES on file://{target}/ (missing the read permission: read (r) on "
                           "the files)")


def _check_as_nobody(target: Path) -> list[list[str]]:
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        lines = "child failed"
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            report = open_provider(f"file://{target}", file_mode=0o200).check()
            lines = "\n".join(f"{s.name}|{s.ok}|{s.message}" for s in report.steps)
        finally:
            os.write(write_end, lines.encode())
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        return [line.split("|") for line in pipe.read().decode().splitlines()]


# ---- links inside the destination are never followed; new folders are 0750 ---------------------------

def _links(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A destination with a folder link at the first level, one deeper, and a file link; all point
    outside it, at `outside`, whose secret.txt must never be read, replaced or removed."""
    root, outside = tmp_path / "dest", tmp_path / "outside"
    (root / "real" / "deep").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not yours")
    (root / "first").symlink_to(outside, target_is_directory=True)
    (root / "real" / "deep" / "second").symlink_to(outside, target_is_directory=True)
    (root / "real" / "file.mp4").symlink_to(outside / "secret.txt")
    return root, outside, outside / "secret.txt"


LINKED_KEYS = {"first level": "first/secret.txt", "deeper": "real/deep/second/secret.txt",
               "new file under a link": "first/new.mp4", "final name": "real/file.mp4"}


@pytest.mark.parametrize(("key", "overwrite"), [
    pytest.param(key, overwrite, id=f"{name}-{'overwrite' if overwrite else 'create-only'}")
    for name, key in LINKED_KEYS.items() for overwrite in (False, True)
    if not (overwrite and name == "final name")])  # that one replaces the link itself: the test below
def test_no_operation_follows_a_link_inside_the_destination(tmp_path: Path, key: str, overwrite: bool) -> None:
    root, outside, secret = _links(tmp_path)
    provider = open_provider(f"file://{root}", part_size=1024)
    for data in (b"small", os.urandom(5000)):  # one request, and parts
        with pytest.raises((ConfigurationError, ObjectExists)) as excinfo:
            provider.upload(key, io.BytesIO(data), if_absent=not overwrite)
        assert "symbolic link" in str(excinfo.value) or isinstance(excinfo.value, ObjectExists)
    for call in (provider.stat, provider.open_reader, provider.delete, provider.exists):
        with pytest.raises(ConfigurationError, match="symbolic link") as excinfo:
            call(key)
        assert excinfo.value.code == "symlink" and not excinfo.value.retryable
    assert secret.read_bytes() == b"not yours"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (root / "real" / "file.mp4").is_symlink() and (root / "first").is_symlink()
    assert not [p for p in root.rglob(".archiver-tmp-*")]


def test_an_overwrite_replaces_a_link_at_the_final_name_not_its_target(tmp_path: Path) -> None:
    root, _, secret = _links(tmp_path)
    provider = open_provider(f"file://{root}")
    # the look-first stat refuses the link; a writer told to overwrite anyway renames over the name
    with provider.open_writer("real/file.mp4", if_absent=False) as writer:
        writer.write(b"ours")
        writer.commit()
    assert not (root / "real" / "file.mp4").is_symlink()
    assert (root / "real" / "file.mp4").read_bytes() == b"ours" and secret.read_bytes() == b"not yours"


def test_new_folders_are_0750(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        provider = open_provider(f"file://{tmp_path}/dest/archive", file_mode=0o640)
        provider.upload("room/session/a.mp4", io.BytesIO(b"a"))
    finally:
        os.umask(before)
    dest = tmp_path / "dest"
    for folder in (dest, dest / "archive", dest / "archive" / "room", dest / "archive" / "room" / "session"):
        assert folder.stat().st_mode & 0o777 == 0o750, folder
    assert (dest / "archive" / "room" / "session" / "a.mp4").stat().st_mode & 0o777 == 0o640


def test_a_killed_writers_temporary_file_is_discarded_by_the_next_attempt(tmp_path: Path) -> None:
    # A SIGKILLed worker cannot abort: its temporary file stays. The next attempt (holding the lease)
    # discards the leftover of ITS key and leaves another key's in-progress file alone.
    provider = open_provider(f"file://{tmp_path}/dest", part_size=1 << 20, fsync=False)
    dead = provider.open_writer("m/rec.mp4")
    dead.write(b"x" * (3 << 20))  # parts written: the temporary file exists
    other = provider.open_writer("m/other.mp4")
    other.write(b"y" * (3 << 20))
    temps = sorted(p.name for p in (tmp_path / "dest" / "m").iterdir())
    assert len(temps) == 2 and all(len(t) == 38 for t in temps)
    assert provider.discard_incomplete("m/rec.mp4") == 1
    [left] = list((tmp_path / "dest" / "m").iterdir())
    other.write(b"y")
    assert other.commit().size == (3 << 20) + 1
    assert left.name not in {p.name for p in (tmp_path / "dest" / "m").iterdir()}  # published, not left behind
    assert provider.discard_incomplete("m/missing-folder/x.mp4") == 0
