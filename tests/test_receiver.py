"""The webhook receiver over real HTTP with a real Redis broker."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_client
from sqlalchemy import func, select

from archiver.ledger.models import CopyJob, Event
from tests.receiver_harness import PATH, Receiver, new_key, running_receiver, write_receiver_config

SAMPLES = Path(__file__).resolve().parent / "samples" / "webhooks"


@pytest.fixture
def receiver(tmp_path: Path, redis_url: str) -> Iterator[Receiver]:
    redis_client.Redis.from_url(redis_url).flushdb()
    private, pem = new_key()
    (tmp_path / "webhook.pem").write_text(pem)
    config = write_receiver_config(tmp_path, redis_url, f'[videosdk]\nwebhook_public_key = "{tmp_path}/webhook.pem"')
    with running_receiver(config, private) as running:
        yield running


def broker_work(receiver: Receiver) -> tuple[list[int], list[int]]:
    """(copy job ids, lookup ids) the broker holds: copy and lookup messages, and the receiver's relay
    messages naming batches of both (archiver.intake.relay; a worker fans those out)."""
    client = redis_client.Redis.from_url(receiver.settings.broker_url)
    jobs: list[int] = []
    lookups: list[int] = []
    for queue in ("archive", "events"):
        for raw in client.lrange(queue, 0, -1):
            envelope = json.loads(raw)
            args = json.loads(base64.b64decode(envelope["body"]))[0]
            task = envelope["headers"]["task"]
            if task == "archiver.relay":
                jobs += args[0]
                lookups += args[1]
            elif task == "archiver.copy_file":
                jobs.append(args[0])
            elif task == "archiver.run_lookup":
                lookups.append(args[0])
    return jobs, lookups


def queued(receiver: Receiver, queue: str = "archive", expect: int = 0, timeout: float = 10) -> int:
    """How many copy jobs ("archive") or lookups ("events") are on the broker, once `expect` are (the
    relay sends them just after the 202) or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        jobs, lookups = broker_work(receiver)
        found = len(jobs if queue == "archive" else lookups)
        if found >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def rows(receiver: Receiver, table: type) -> int:
    with receiver.ledger.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(table)) or 0)


def stopped(meeting: str = "abc-xyzw-lmno", path: str = "/encoded/videos/62d148951a1eb20029fc9b05.mp4") -> dict:
    return {"webhookType": "recording-stopped",
            "data": {"meetingId": meeting, "sessionId": "62d148951a1eb20029fc9b00", "filePath": path,
                     "fileUrl": f"https://cdn.videosdk.live{path}"}}


EXPECTED = {  # sample -> (status, jobs)
    "recording-stopped.json": (202, 1),
    "participant-recording-stopped.json": (202, None),
    "participant-track-recording-stopped.json": (202, None),
    "merge-recording-completed.json": (202, 0),
    "recording-failed.json": (200, 0),
    "recording-started.json": (200, 0),
    "session-started.json": (200, 0),
}


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_every_sample_is_answered_as_documented(receiver: Receiver, sample: str) -> None:
    raw = (SAMPLES / sample).read_bytes()
    body = json.loads(raw)
    response = receiver.post(raw)
    status, jobs = EXPECTED[sample]
    assert response.status_code == status, response.text
    answer = response.json()
    assert isinstance(answer["event_id"], int)
    if status == 202:
        files = body["data"].get("fileDetails") or ([body["data"]] if "fileUrl" in body["data"] else [])
        assert [f["file_path"] for f in answer["files"]] == [f["filePath"] for f in files]
        assert len(answer["jobs"]) == (len(files) if jobs is None else jobs)
        assert queued(receiver, expect=len(answer["jobs"])) == len(answer["jobs"])
    else:
        assert answer["ignored"] == body["webhookType"]
        assert answer.get("failure", False) == (body["webhookType"] == "recording-failed")
    if sample == "merge-recording-completed.json":
        assert answer["lookup"] == "merge" and queued(receiver, "events", expect=1) == 1


def test_the_queue_holds_one_message_per_job_and_duplicates_add_nothing(receiver: Receiver) -> None:
    answers = [receiver.post(stopped(f"room-{n}")) for n in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    again = [receiver.post(stopped(f"room-{n}")) for n in range(5)]
    assert [a.status_code for a in again] == [202] * 5
    assert [a.json()["event_id"] for a in again] == [a.json()["event_id"] for a in answers]
    assert all(a.json()["duplicate"] for a in again)
    assert queued(receiver, expect=5) == 5 == rows(receiver, CopyJob)
    time.sleep(0.3)  # a duplicate's job, had one been sent late, would show now
    assert queued(receiver) == 5
    assert rows(receiver, Event) == 5


def test_signatures(receiver: Receiver) -> None:
    raw = json.dumps(stopped("sig-room"), indent=2).encode()  # not compact: only the raw form signs it
    assert receiver.post(raw).status_code == 202
    assert receiver.post(stopped("sig-missing"), sign=False).json() == {"error": "signature missing"}
    assert receiver.post(stopped("sig-bad"), signature="bm90IGEgc2lnbmF0dXJl").status_code == 401
    other, _ = new_key()
    from archiver.intake.signature import sign_body

    forged = json.dumps(stopped("sig-forged")).encode()
    assert receiver.post(forged, signature=sign_body(forged, other)).status_code == 401
    tampered = json.dumps(stopped("sig-tampered")).encode()
    signature = sign_body(tampered, receiver.private_key)  # type: ignore[arg-type]
    assert receiver.post(tampered.replace(b"sig-tampered", b"sig-tampereD"), signature=signature).status_code == 401
    # VideoSDK's older samples sign JSON.stringify(body): the compact re-serialisation.
    compact = json.dumps(stopped("sig-compact"), separators=(",", ":")).encode()
    pretty = json.dumps(stopped("sig-compact"), indent=4).encode()
    assert receiver.post(pretty, signature=sign_body(compact, receiver.private_key)).status_code == 202  # type: ignore[arg-type]
    assert rows(receiver, Event) == 2  # refused requests leave no trace in the ledger


def test_bad_input_is_refused_with_the_offending_fields(receiver: Receiver) -> None:
    bad = receiver.post(b'{"webhookType": "recording-stopped", "data": {"meetingId": 5, "sessionId": "s", '
                        b'"fileUrl": "https://cdn.videosdk.live/x.mp4"}}')
    assert bad.status_code == 400
    assert bad.json()["fields"] == ["data.meetingId: must be a string", "data.filePath: required"]
    broken = receiver.post(b'{"webhookType": ')
    assert broken.status_code == 400 and broken.json()["fields"][0].startswith("body: not valid JSON")
    # The signature, not the Content-Type, decides trust; a body that is not JSON is still refused.
    plain = receiver.post(b"meetingId=x&fileUrl=y", content_type="application/x-www-form-urlencoded")
    assert plain.status_code == 400 and plain.json()["fields"][0].startswith("body: not valid JSON")
    import httpx

    assert httpx.get(receiver.url + PATH).status_code == 405
    assert rows(receiver, Event) == 0


def test_a_body_over_the_limit_is_refused_before_it_is_read(receiver: Receiver) -> None:
    raw = json.dumps({**stopped(), "padding": "x" * (1 << 20)}).encode()
    assert receiver.post(raw).status_code == 413
    host, port = receiver.url.removeprefix("http://").split(":")
    # A declared 50 MiB body: refused on its headers alone.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {50 << 20}\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
    # 50 MiB sent slowly without a declared length: refused once past the limit, long before the end.
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        sent, chunk, answer = 0, b"x" * (64 << 10), b""
        sock.settimeout(0.05)
        while sent < (50 << 20) and not answer:
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(100)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert sent <= 2 << 20, f"the receiver read {sent} bytes before refusing"
    assert time.monotonic() - started < 10
    assert rows(receiver, Event) == 0


def test_health_metrics_and_openapi(receiver: Receiver) -> None:
    import httpx

    receiver.post(stopped("metrics-room"))
    receiver.post(stopped("metrics-room"), sign=False)
    assert httpx.get(receiver.url + "/healthz").json() == {"status": "alive"}
    assert httpx.get(receiver.url + "/readyz").json() == {"broker": "ok", "ledger": "ok", "webhook_key": "ok"}
    metrics = httpx.get(receiver.url + "/metrics").text
    assert 'archiver_webhook_requests_total{status="202",webhook_type="recording-stopped"} 1.0' in metrics
    assert 'archiver_webhook_requests_total{status="401",webhook_type="-"} 1.0' in metrics
    spec = httpx.get(receiver.url + "/openapi.json").json()
    assert set(spec["paths"][PATH]["post"]["responses"]) >= {"202", "200", "400", "401", "413", "415", "503"}


def test_unverified_mode_records_events_as_unverified(tmp_path: Path, redis_url: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    config = write_receiver_config(tmp_path, redis_url, "[videosdk]\nverify_signatures = false")
    with caplog.at_level("WARNING"), running_receiver(config, None) as receiver:
        assert receiver.post(stopped("unsigned-room"), sign=False).status_code == 202
        with receiver.ledger.sessions() as db:
            assert db.scalar(select(Event.signature_verified)) is False
    assert "NOT verified" in caplog.text


class _CollectingPublisher:
    def __init__(self) -> None:
        self.jobs: list[int] = []

    def copies(self, job_ids: list[int], **_: object) -> None:
        self.jobs += list(job_ids)

    def lookups(self, *_: object, **__: object) -> None: ...

    def ping(self, *_: object) -> None: ...


def test_a_value_the_ledger_cannot_store_is_400_on_every_database(tmp_path: Path, database_url: str) -> None:
    """PostgreSQL refuses an over-long id or a NUL inside the transaction: that was a 503 ("retry
    later") for a delivery that can never succeed. Now it is 400 naming the field, on both databases,
    and a value of exactly the limit is stored."""
    from starlette.testclient import TestClient

    from archiver.intake.receiver import create_receiver
    from archiver.ledger.database import create_ledger_engine
    from archiver.ledger.store import Ledger
    from archiver.settings.config import load_settings

    config = tmp_path / "archiver.toml"
    config.write_text(f'database_url = "{database_url}"\n[videosdk]\nverify_signatures = false\n'
                      f'[[destinations]]\nname = "local"\nurl = "file://{tmp_path}/archive/{{meetingId}}/"\n')
    settings = load_settings(config, environ={})
    ledger, publisher = Ledger(create_ledger_engine(settings.database_url)), _CollectingPublisher()
    client = TestClient(create_receiver(settings, ledger, publisher=publisher))

    def post(body: dict) -> tuple[int, dict]:
        answer = client.post(PATH, content=json.dumps(body), headers={"content-type": "application/json"})
        return answer.status_code, answer.json()

    track = json.loads((SAMPLES / "participant-track-recording-stopped.json").read_text())
    refused = {
        "data.meetingId": (stopped(meeting="m" * 201), 200),
        "data.sessionId": ({**stopped(), "data": {**stopped()["data"], "sessionId": "s" * 201}}, 200),
        "data.filePath": (stopped(path="/" + "p" * 1024), 1024),
        "webhookType": ({**stopped(), "webhookType": "recording-stopped" + "x" * 90}, 100),
        "data.kind": ({**track, "data": {**track["data"], "kind": "k" * 51}}, 50),
        "data.participantId": ({**track, "data": {**track["data"], "participantId": "p" * 201}}, 200),
    }
    for field, (body, limit) in refused.items():
        status, answer = post(body)
        assert (status, answer.get("fields")) == (400, [f"{field}: longer than {limit} characters, the most the "
                                                        "ledger stores"]), (field, status, answer)
    status, answer = post(stopped(meeting="nul\x00room"))
    assert status == 400 and answer["fields"] == ["data.meetingId: must not contain NUL characters (\\u0000)"]
    assert publisher.jobs == [] and rows_in(ledger, Event) == 0

    status, answer = post(stopped(meeting="m" * 200, path="/" + "p" * 1023))  # exactly the limits
    assert status == 202, answer  # stored (its key is too long to render: that job fails visibly, once)
    status, _ = post({**track, "data": {**track["data"], "kind": "k" * 50, "participantId": "p" * 200}})
    assert status == 202 and len(ledger.jobs()) == 3


def rows_in(ledger: object, table: type) -> int:
    with ledger.sessions() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(table)) or 0)
