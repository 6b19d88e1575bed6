"""A large file from a server that proves ranges is fetched as parallel ranges into S3, Azure and GCS
(issue 16): parts completing out of order, a range cut mid-way, a file replaced between ranges, a range
that fails for good, and the memory bound, against the real emulators and the stand-in CDN."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from archiver.copy import job as copy_job
from archiver.copy.verification import OK, verify_copies
from archiver.intake.record import accept_event
from archiver.runtime import Runtime
from providers.pool import pool_for
from tests import http_source
from tests.backends import create_az_container, create_gcs_bucket, unique_name
from tests.copy_runtime import runtime_for, s3_destination
from tests.http_source import HttpSource

MIB = 1 << 20
PART = 5 * MIB
SIZE = 4 * PART + 12345  # five parts, the last one short
CONCURRENCY = 2
RANGES = 3
AZ_VARIABLE = "ARCHIVER_TEST_AZ_CONNECTION"


def destination(kind: str, request: pytest.FixtureRequest, part: int = PART) -> str:
    tuning = f'part_size = {part}\nconcurrency = {CONCURRENCY}\nsingle_request_max = "{part}"\n'
    if kind == "s3":
        return s3_destination(request.getfixturevalue("moto_url"), name="d", template="rec/{meetingId}/") + tuning
    name = unique_name()
    if kind == "az":
        conn = request.getfixturevalue("azurite_connection_string")
        create_az_container(conn, name)
        os.environ[AZ_VARIABLE] = conn  # secrets come from the environment, never the config file
        return (f'[[destinations]]\nname = "d"\nurl = "az://{name}/rec/{{meetingId}}/"\n'
                f'connection_string_env = "{AZ_VARIABLE}"\n{tuning}')
    endpoint = request.getfixturevalue("gcs_emulator_url")
    create_gcs_bucket(endpoint, name)
    return (f'[[destinations]]\nname = "d"\nurl = "gs://{name}/rec/{{meetingId}}/"\nendpoint = "{endpoint}"\n'
            f'project = "test"\n{tuning}')


def runtime(tmp_path: Path, kind: str, request: pytest.FixtureRequest, part: int = PART) -> Runtime:
    return runtime_for(tmp_path, destination(kind, request, part),
                       environ={"ARCHIVER_SOURCE_PARALLEL_RANGES": str(RANGES)})


def copy(rt: Runtime, url: str, meeting: str = "m1") -> tuple[Any, Any]:
    body = json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "filePath": "/encoded/videos/x.mp4",
                                "fileUrl": url}})
    _, accepted = accept_event(rt.ledger, rt.settings, body, verified=False)
    job_id = accepted.created[0]
    outcome = copy_job.run_copy_job(rt, job_id)
    return outcome, rt.ledger.job(job_id)


def stored(rt: Runtime, key: str) -> bytes:
    provider = rt.provider(rt.settings.destination("d"))
    with provider.open_reader(key) as reader:
        return reader.read()


def ranged(source: HttpSource, name: str) -> list[str]:
    return [h.range for h in source.hits(f"/files/{name}") if h.range]


@pytest.mark.parametrize("kind", ["s3", "az", "gs"])
def test_parts_completing_out_of_order_make_the_same_object_and_identity(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rt = runtime(tmp_path, kind, request)
    with HttpSource() as source:
        # part 1 answers last: parts 2 and 3 complete before it, the writer still gets them in order
        url = source.file_url("big.mp4", SIZE, rangeslow=f"{PART}:1.0")
        outcome, job = copy(rt, url)
        asked = ranged(source, "big.mp4")
    assert outcome.state == "succeeded", outcome.error
    assert sorted(asked) == sorted(f"bytes={k * PART}-{min((k + 1) * PART, SIZE) - 1}" for k in range(1, 5))
    assert all(h.if_range for h in source.hits("/files/big.mp4") if h.range)  # every range pinned to the version
    expected = http_source.sha256("big.mp4", SIZE)
    assert job.sha256 == expected and job.bytes == SIZE  # the identity is the plain SHA-256 of the file
    assert outcome.size_proven is True
    data = stored(rt, job.object_key)
    assert data == http_source.content("big.mp4", SIZE)
    [verdict] = verify_copies(rt, since=None, deep=True)  # reads it back and hashes it: the same identity
    assert (verdict.job_id, verdict.result) == (job.job_id, OK), verdict


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_a_range_cut_mid_way_resumes_that_range(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rt = runtime(tmp_path, kind, request)
    with HttpSource() as source:
        url = source.file_url("cut.mp4", SIZE, rangedrop=f"{2 * PART}:1000000")
        outcome, job = copy(rt, url)
        asked = ranged(source, "cut.mp4")
    assert outcome.state == "succeeded", outcome.error
    assert f"bytes={2 * PART + 1000000}-{3 * PART - 1}" in asked  # only the rest of that range again
    assert job.sha256 == http_source.sha256("cut.mp4", SIZE)
    assert stored(rt, job.object_key) == http_source.content("cut.mp4", SIZE)


def test_a_file_replaced_between_ranges_restarts_from_byte_0(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rt = runtime(tmp_path, "s3", request)
    with HttpSource() as source:
        # the 3rd request on finds another version: the ranges asked with If-Range get the whole file
        url = source.file_url("swap.mp4", SIZE, changeat=3)
        outcome, job = copy(rt, url)
        firsts = [h for h in source.hits("/files/swap.mp4") if not h.range]
    assert outcome.state == "succeeded", outcome.error
    assert len(firsts) == 2  # started again from byte 0, never splicing two versions
    assert job.sha256 == http_source.sha256("swap.mp4", SIZE)


def test_a_range_that_fails_for_good_fails_the_attempt_and_gives_every_buffer_back(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rt = runtime(tmp_path, "s3", request)
    pool = pool_for(PART)
    with HttpSource() as source:
        copy(rt, source.file_url("warm.mp4", SIZE), meeting="warm")  # the pool holds its buffers now
        free, created = pool.free, pool.created
        outcome, job = copy(rt, source.file_url("gone.mp4", SIZE, rangestatus=f"{3 * PART}:404"), meeting="m2")
    assert outcome.state in ("pending", "failed") and job.state != "succeeded"
    assert pool.free == free and pool.created == created  # every buffer back in the pool, none new
    provider = rt.provider(rt.settings.destination("d"))
    assert not provider.exists(job.object_key)


def test_payload_memory_is_bounded_by_the_writers_slots_with_ranges_on(request: pytest.FixtureRequest,
                                                                tmp_path: Path) -> None:
    part = 6 * MIB  # a pool of its own: buffers this test did not create cannot hide in it
    rt = runtime(tmp_path, "s3", request, part)
    with HttpSource() as source:
        outcome, _ = copy(rt, source.file_url("many.mp4", 12 * part + 1, rangeslow=f"{part}:0.5"))
    assert outcome.state == "succeeded", outcome.error
    # ranges being fetched and parts being sent share the writer's slots: no more buffers than one stream
    assert pool_for(part).created <= CONCURRENCY
