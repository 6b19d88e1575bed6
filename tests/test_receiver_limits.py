"""One client cannot stop the receiver: idle and slow connections are closed within their timeouts,
connections past max_connections are answered 503 at once, running out of descriptors costs a few
log lines and no traceback, and a genuine signed webhook is accepted afterwards.

`archiver serve` runs as a real process with RLIMIT_NOFILE lowered (512, then 256), and more idle
connections are opened than it may hold. Timing: no assertion needs a connection to close sooner than
its timeout plus SLACK, which a busy machine cannot break.
"""

from __future__ import annotations

import contextlib
import re
import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archiver.intake.overload import ACCEPT_BACKLOG
from archiver.ledger.models import Event
from archiver.settings.config import ConfigError, load_settings
from tests.receiver_harness import PATH, ServedReceiver, served_receiver

SLACK = 15.0  # seconds a busy machine may add to any bound
HEADER, KEEPALIVE, BODY, RATE, CAP = 5.0, 1.0, 3.0, 100, 40
LIMITS = (f"header_timeout = {HEADER}\nkeepalive_timeout = {KEEPALIVE}\nbody_timeout = {BODY}\n"
          f"min_body_rate = {RATE}\n")


def stopped(meeting: str) -> dict:
    path = f"/encoded/videos/{meeting}.mp4"
    return {"webhookType": "recording-stopped", "data": {
        "meetingId": meeting, "sessionId": "s1", "filePath": path, "fileUrl": f"https://cdn.videosdk.live{path}"}}


def events(receiver: ServedReceiver) -> int:
    with receiver.ledger.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(Event)) or 0)


@contextlib.contextmanager
def idle_sockets(port: int, count: int, batch: int = 50) -> Iterator[list[socket.socket]]:
    """`count` connections that never send a byte, opened `batch` at a time (fewer than the receiver's
    listen queue, ACCEPT_BACKLOG): after each batch a probe request waits for its answer, which proves
    the receiver has accepted every connection before it (the queue is first in, first out). A burst
    beyond the queue would leave connections in the kernel's SYN-ACK retries, never seen by the server."""
    assert batch < ACCEPT_BACKLOG
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            for _ in range(min(batch, count - len(socks))):
                sock = socket.socket()
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", port))
                socks.append(sock)
            with socket.create_connection(("127.0.0.1", port), timeout=30) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert probe.recv(4096).startswith(b"HTTP/1.1 ")
        yield socks
    finally:
        for sock in socks:
            sock.close()


def until_closed(socks: list[socket.socket], since: float, limit: float) -> dict[int, tuple[float, bytes]]:
    """socket index -> (seconds from `since` until the server closed it, what it sent first); sockets
    still open `limit` seconds after `since` are missing."""
    got: dict[int, bytes] = {}
    closed: dict[int, tuple[float, bytes]] = {}
    with selectors.DefaultSelector() as sel:  # epoll: more descriptors than select() takes
        for i, sock in enumerate(socks):
            sel.register(sock, selectors.EVENT_READ, i)
        while len(closed) < len(socks) and time.monotonic() - since < limit:
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:  # reset: closed too
                    data = b""
                if data:
                    got[key.data] = got.get(key.data, b"") + data
                else:
                    closed[key.data] = (time.monotonic() - since, got.get(key.data, b""))
                    sel.unregister(key.fileobj)
    return closed


def client(port: int, script: Callable[[socket.socket], bytes]) -> tuple[float, bytes]:
    """Run `script` (what the client sends, and when; it returns what it read) on a new connection,
    then read until the server closes it: (seconds from connecting until EOF, all the server sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER + BODY + SLACK) as sock:
        started = time.monotonic()
        answer = script(sock)
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(4096):
                answer += data
        return time.monotonic() - started, answer


def trickle(head: bytes, drip: bytes, every: float, *, after_answer: bool = False) -> Callable[[socket.socket], bytes]:
    """Send `head`, then `drip` every `every` seconds until the server answers (or, `after_answer`,
    until it closes the connection), for HEADER + BODY + SLACK seconds at most."""
    def script(sock: socket.socket) -> bytes:
        sock.sendall(head)
        sock.settimeout(every)
        answer, give_up = b"", time.monotonic() + HEADER + BODY + SLACK
        while time.monotonic() < give_up:
            try:
                data = sock.recv(4096) if after_answer else sock.recv(1, socket.MSG_PEEK)
                if not (after_answer and data):
                    break  # closed, or answered: client() reads the rest
                answer += data
            except TimeoutError:
                pass
            try:
                sock.sendall(drip)
            except OSError:  # closed meanwhile
                break
        sock.settimeout(HEADER + BODY + SLACK)
        return answer
    return script


def after_a_response(then: bytes) -> Callable[[socket.socket], bytes]:
    """One complete request and its answer, then `then` (b"" for nothing) and silence."""
    def script(sock: socket.socket) -> bytes:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b'"alive"}' not in answer:
            answer += sock.recv(4096)
        sock.sendall(then)
        return answer
    return script


SLOW_CLIENTS = {  # name -> (script, shortest and longest seconds until closed, what the answer holds)
    "headers trickling": (trickle(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode(), b"a", 0.5),
                          HEADER, HEADER, b"HTTP/1.1 408 "),
    "silent after a response": (after_a_response(b""), KEEPALIVE, KEEPALIVE, b"200 OK"),
    "next request stalled after a response": (after_a_response(b"GET /hea"), HEADER, HEADER, b"HTTP/1.1 408 "),
    "body slower than min_body_rate": (trickle(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{{"
                                               .encode(), b" ", 0.5), 2.0, BODY, b"slower than 100 bytes/s"),
    "body longer than body_timeout": (trickle(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{{"
                                              .encode(), b" " * 200, 0.25), BODY, BODY, b"within 3 s"),
    "body nobody reads, trickling on after the answer": (
        trickle(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b" ", 0.5, after_answer=True),
        KEEPALIVE, HEADER, b"200 OK"),
}


def test_idle_and_slow_connections_are_closed_past_the_cap_503_and_a_webhook_then_gets_through(
        tmp_path: Path) -> None:
    # 40 connections, a burst being accepted and the process fit in 512 descriptors (no warning).
    with served_receiver(tmp_path, LIMITS + f"max_connections = {CAP}", nofile=512) as receiver:
        opened = time.monotonic()  # before any is accepted: none can be closed by its timeout sooner
        with idle_sockets(receiver.port, 50) as first:
            # The cap is full (for HEADER seconds): a connection is answered at once, whatever it sends.
            refused = receiver.post(stopped("during-the-flood"))
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5", refused.text
            assert refused.headers["connection"] == "close" and "max_connections" in refused.json()["error"]
            with idle_sockets(receiver.port, 550) as rest:
                flood = first + rest
                closed = until_closed(flood, opened, HEADER + SLACK)
            assert len(closed) == len(flood), f"{len(flood) - len(closed)} idle connections still open"
            busy = [answer for _, answer in closed.values() if answer]
            held = [seconds for seconds, answer in closed.values() if not answer]  # closed silently: EOF
            assert len(held) <= CAP and len(busy) == len(flood) - len(held)
            assert all(re.match(rb"HTTP/1.1 503 .*\r\nRetry-After: 5\r\nConnection: close\r\n", a, re.S) for a in busy)
            assert held and min(held) >= HEADER * 0.9, "idle connections are held until the header timeout"
        # Everything the flood held is closed: a genuine signed webhook is accepted.
        accepted = receiver.post(stopped("after-the-flood"))
        assert accepted.status_code == 202, accepted.text
        with ThreadPoolExecutor(len(SLOW_CLIENTS)) as pool:
            slow = {name: pool.submit(client, receiver.port, script) for name, (script, *_) in SLOW_CLIENTS.items()}
            for name, (_, shortest, longest, holds) in SLOW_CLIENTS.items():
                seconds, answer = slow[name].result(timeout=HEADER + BODY + 2 * SLACK)
                assert shortest * 0.9 <= seconds <= longest + SLACK and holds in answer, (name, seconds, answer)
        # Requests anyone can send that uvicorn warns about, one line each: a few lines in all.
        for garbage in [b"NOT HTTP AT ALL\r\n\r\n"] * 100 + [
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\r\n"] * 100:
            with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
                sock.sendall(garbage)
                assert sock.recv(4096).startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 200 "))
        assert receiver.post(stopped("after-the-slow-clients")).status_code == 202
        assert events(receiver) == 2
        log = receiver.log()
        assert "Traceback" not in log and len(log.splitlines()) < 20, log[-3000:]
        assert log.count("connections are answered 503") == 1
        assert "file descriptors" not in log  # the cap kept the process within its descriptors


def test_running_out_of_descriptors_logs_a_line_not_a_traceback_and_the_receiver_recovers(
        tmp_path: Path) -> None:
    # max_connections above what RLIMIT_NOFILE allows: the process runs out of descriptors first.
    header = 2.0
    with served_receiver(tmp_path, f"header_timeout = {header}\nmax_connections = 1000", nofile=256) as receiver:
        with idle_sockets(receiver.port, 600) as flood:
            opened = time.monotonic()
            deadline = opened + 30
            while "out of file descriptors" not in receiver.log() and time.monotonic() < deadline:
                assert receiver.stderr.stat().st_size < 100_000, receiver.log()[-3000:]
                time.sleep(0.2)
            # Every idle connection is accepted once descriptors free up, then closed by its timeout.
            closed = until_closed(flood, opened, 60)
            assert len(closed) == len(flood), f"{len(flood) - len(closed)} idle connections still open"
            assert not any(answer for _, answer in closed.values())
        accepted = receiver.post(stopped("after-running-out"))
        assert accepted.status_code == 202, accepted.text
        # The episode's count follows within 10 s of its first line (one line per 10 s at most).
        deadline = time.monotonic() + 10 + SLACK
        while not re.search(r"refused \d+ times", receiver.log()) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = receiver.log()
        assert re.search(r"refused \d+ times", log), log[-3000:]
        assert "Traceback" not in log and len(log.splitlines()) < 20, log[-3000:]
        assert log.count("out of file descriptors (EMFILE") == 1
        assert "receiver.max_connections = 1000 needs about 1464 file descriptors" in log  # said at start
        assert receiver.post(stopped("still-serving")).status_code == 202
        assert events(receiver) == 2


def test_limits_are_settings_with_variables_and_validated() -> None:
    settings = load_settings(None, environ={
        "ARCHIVER_RECEIVER_HEADER_TIMEOUT": "7.5", "ARCHIVER_RECEIVER_KEEPALIVE_TIMEOUT": "2",
        "ARCHIVER_RECEIVER_BODY_TIMEOUT": "20", "ARCHIVER_RECEIVER_MIN_BODY_RATE": "0",
        "ARCHIVER_RECEIVER_MAX_CONNECTIONS": "100"}).receiver
    assert (settings.header_timeout, settings.keepalive_timeout, settings.body_timeout, settings.min_body_rate,
            settings.max_connections) == (7.5, 2.0, 20.0, 0, 100)
    with pytest.raises(ConfigError) as refused:
        load_settings(None, environ={"ARCHIVER_RECEIVER_HEADER_TIMEOUT": "0", "ARCHIVER_RECEIVER_MAX_CONNECTIONS": "0",
                                     "ARCHIVER_RECEIVER_MIN_BODY_RATE": "-1"})
    # A bad value from a variable names the variable (what to change), and the setting it sets.
    assert {p.split(":")[0] for p in refused.value.problems} == {
        "ARCHIVER_RECEIVER_HEADER_TIMEOUT", "ARCHIVER_RECEIVER_MAX_CONNECTIONS", "ARCHIVER_RECEIVER_MIN_BODY_RATE"}
    assert all(p.endswith(("(receiver.header_timeout)", "(receiver.max_connections)", "(receiver.min_body_rate)"))
               for p in refused.value.problems)


@pytest.mark.parametrize(("hard", "warned"), [(4096, False), (256, True)])
def test_a_low_descriptor_limit_is_raised_when_allowed_and_warned_about_otherwise(hard: int, warned: bool) -> None:
    code = ("import resource; from archiver.intake.overload import check_descriptors; "
            "print(check_descriptors(512)); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))).stdout
    warning, soft = out.strip().splitlines()
    assert (warning != "None", int(soft)) == (warned, 256 if warned else 512 + 400 + 64)
    if warned:
        assert "Raise the limit to 976" in warning and "lower" not in warning
