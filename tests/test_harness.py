"""The harness itself: every service starts, answers on its own port, and all start quickly."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from tests import emulators


def test_all_services_start_together_in_under_15_seconds() -> None:
    started = time.monotonic()
    with emulators.moto_server() as s3, emulators.azurite() as az, emulators.fake_gcs() as gcs, \
            emulators.redis() as redis:
        elapsed = time.monotonic() - started
        assert emulators.http_answers(s3 + "/moto-api/")
        assert emulators.http_answers(gcs + "/storage/v1/b")
        blob_endpoint = next(p.split("=", 1)[1] for p in az.split(";") if p.startswith("BlobEndpoint="))
        assert emulators.http_answers(blob_endpoint + "?comp=list")
        port = urlsplit(redis).port
        assert port is not None and emulators._redis_ping(port)
        assert elapsed < 15, f"services took {elapsed:.1f} s to start"
    # Stopped afterwards: the emulators' ports no longer accept connections.
    for url in (s3, gcs):
        port = urlsplit(url).port
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
