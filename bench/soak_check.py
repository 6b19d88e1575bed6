"""The soak's invariant checker: every announced file against every destination, after the drain.

For each file a webhook got a 202 for (its files are "announced"), and each destination:
  ok          exactly one object, at the key the template gives, whose bytes are ONE whole version of
              the source (sha256 of the bytes the CDN served for that version), and a `succeeded` job
              whose bytes and sha256 are the object's (S3: plus KEY.json naming the same sha256)
  lost        no job, a `failed` job, a succeeded job without its object, a missing manifest, or a
              webhook never accepted after every retry
  corrupted   bytes equal to no version (a splice or a truncation), a ledger sha256/size that is not the
              object's, a key other than the template's, a manifest disagreeing with the object
  duplicated  a second object for the file in the destination, a second ledger row for the file, or
              a duplicate webhook answered with other jobs
  stuck       a job still `pending` or `running` after the drain
  stray       anything in a bucket nobody announced: probe or temp objects, orphaned S3 multipart
              uploads, Azure blobs with uncommitted blocks, an object of a file deleted on purpose
A file deleted on purpose (cdn_gone) must have `failed` jobs with a source_* code (`gone_failed`);
one still retrying is `gone_pending`, not stuck. Superseded: copies holding an older version of a
replaced file (correct: the download finished before the replacement), counted for information.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.soak_cdn import Recording
from bench.soak_send import Delivery
from bench.soak_stack import DESTINATIONS, Storage, expected_key

CATEGORIES = ("lost", "duplicated", "corrupted", "stuck", "stray")


@dataclass
class Verdict:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[dict[str, Any]] = field(default_factory=list)
    copied_bytes: int = 0

    def add(self, category: str, detail: str, **where: Any) -> None:
        self.counts[category] += 1
        self.problems.append({"category": category, "detail": detail, **where})

    @property
    def failed(self) -> bool:
        return any(self.counts[c] for c in CATEGORIES)


class Stores:
    """Direct (unproxied) read access to every destination: list, hash, leftovers."""

    def __init__(self, store: Storage, local_root: Path) -> None:
        import boto3
        from azure.storage.blob import ContainerClient
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.buckets, self.local = store.buckets, local_root
        self.s3 = boto3.client("s3", endpoint_url=store.s3_url, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="moto-secret-key")
        self.azure = ContainerClient.from_connection_string(store.azure_connection, store.buckets["azure"])
        self.gcs = storage.Client(project="soak", credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": store.gcs_url}).bucket(store.buckets["gcs"])

    def listing(self, dest: str) -> dict[str, int]:
        """key -> size of every committed object."""
        if dest == "s3":
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.buckets["s3"])
            return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}
        if dest == "azure":
            return {b.name: b.size for b in self.azure.list_blobs()}
        if dest == "gcs":
            return {b.name: b.size for b in self.gcs.list_blobs()}
        return {str(p.relative_to(self.local)): p.stat().st_size for p in self.local.rglob("*") if p.is_file()} \
            if self.local.exists() else {}

    def leftovers(self) -> list[tuple[str, str]]:
        """(destination, description) of unfinished uploads: S3 multipart uploads, Azure uncommitted blocks."""
        found = []
        pages = self.s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.buckets["s3"])
        found += [("s3", f"multipart upload {u['UploadId'][:12]}... of {u['Key']}")
                  for page in pages for u in page.get("Uploads", [])]
        for blob in self.azure.list_blobs(include=["uncommittedblobs"]):
            _, uncommitted = self.azure.get_blob_client(blob.name).get_block_list("uncommitted")
            if uncommitted:
                found.append(("azure", f"{len(uncommitted)} uncommitted blocks of {blob.name}"))
        return found

    def chunks(self, dest: str, key: str) -> Iterator[bytes]:
        if dest == "s3":
            yield from self.s3.get_object(Bucket=self.buckets["s3"], Key=key)["Body"].iter_chunks(1 << 20)
        elif dest == "azure":
            yield from self.azure.download_blob(key).chunks()
        elif dest == "gcs":
            yield self.gcs.blob(key).download_as_bytes()
        else:
            with (self.local / key).open("rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

    def sha256(self, dest: str, key: str) -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        for chunk in self.chunks(dest, key):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()


def ledger_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """file_path -> its rows (one per job; a file row without jobs gives one row with job fields None)."""
    query = text("SELECT f.id AS file_id, f.file_path, j.id AS job_id, j.destination, j.state, j.object_key, "
                 "j.bytes, j.sha256, j.error_code, j.error_message, j.attempts FROM recording_files f "
                 "LEFT JOIN copy_jobs j ON j.file_id = f.id ORDER BY f.id, j.id")
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with engine.connect() as db:
        for row in db.execute(query).mappings():
            rows[row["file_path"].lstrip("/")].append(dict(row))
    return rows


def check(deliveries: list[Delivery], engine: Engine, stores: Stores,
          progress: Callable[[str], None] = lambda _: None) -> Verdict:
    verdict = Verdict()
    rows = ledger_rows(engine)
    listings = {d: stores.listing(d) for d in DESTINATIONS}
    expected: dict[tuple[str, str], tuple[Recording, Delivery]] = {}
    names: dict[str, Recording] = {}
    for delivery in deliveries:
        for rec in delivery.event.files:
            names[rec.path.rsplit("/", 1)[-1]] = rec
            if delivery.status != 202:
                verdict.add("lost", f"webhook never accepted (last answer {delivery.status})", file=rec.path)
                continue
            for dest in DESTINATIONS:
                ev = delivery.event
                expected[(dest, expected_key(dest, ev.meeting_id, ev.session_id, ev.participant_id, ev.kind,
                                             "/" + rec.path))] = (rec, delivery)
    jobs_done = _check_jobs(verdict, expected, rows, listings)
    progress(f"hashing {len(jobs_done)} copies")
    versions: dict[tuple[str, int], str] = {}
    with ThreadPoolExecutor(4) as pool:
        hashed = dict(zip(jobs_done, pool.map(lambda k: stores.sha256(*k), jobs_done), strict=True))
    for (dest, key), (size, sha) in hashed.items():
        rec, _ = expected[(dest, key)]
        job = jobs_done[(dest, key)]
        shas = [versions.setdefault((rec.path, v), rec.sha256(v)) for v in range(len(rec.sizes))]
        where = {"file": rec.path, "destination": dest, "faults": list(rec.faults), "job": job["job_id"]}
        if sha not in shas:
            verdict.add("corrupted", f"{size} bytes equal to no version of the source (sizes {list(rec.sizes)})",
                        **where)
            continue
        if (job["sha256"], job["bytes"]) != (sha, size):
            verdict.add("corrupted", f"ledger says {job['bytes']} bytes sha256 {job['sha256']}, object has "
                                     f"{size} {sha}", **where)
            continue
        if dest == "s3" and not _manifest_ok(verdict, stores, key, sha, where):
            continue
        verdict.counts["ok"] += 1
        verdict.copied_bytes += size
        if shas.index(sha) != rec.version:
            verdict.counts["superseded"] += 1
    _check_extras(verdict, expected, listings, names)
    for dest, what in stores.leftovers():
        verdict.add("stray", what, destination=dest)
    return verdict


def _check_jobs(verdict: Verdict, expected: dict[tuple[str, str], tuple[Recording, Delivery]],
                rows: dict[str, list[dict[str, Any]]],
                listings: dict[str, dict[str, int]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Ledger state of every expected copy; returns the succeeded ones whose object exists, to hash."""
    to_hash: dict[tuple[str, str], dict[str, Any]] = {}
    for (dest, key), (rec, _) in expected.items():
        mine = [r for r in rows.get(rec.path, []) if r["destination"] == dest]
        where = {"file": rec.path, "destination": dest, "faults": list(rec.faults)}
        if len({r["file_id"] for r in rows.get(rec.path, [])}) > 1 and dest == "s3":
            verdict.add("duplicated", "the ledger holds this file more than once", **where)
        if not mine:
            verdict.add("lost", "no copy job in the ledger", **where)
            continue
        job = mine[0]
        where["job"] = job["job_id"]
        error = f"{job['error_code']}: {(job['error_message'] or '')[:300]}"
        present = key in listings[dest]
        if "cdn_gone" in rec.faults:
            if job["state"] == "failed" and (job["error_code"] or "").startswith("source_"):
                verdict.counts["gone_failed"] += 1
            elif job["state"] == "pending" or (job["state"], job["error_code"]) == ("running", "source_not_found_yet"):
                # still inside the grace window for files that reach the CDN late: retrying, maybe right now
                verdict.counts["gone_pending"] += 1
            else:
                verdict.add("stuck" if job["state"] == "running" else "corrupted",
                            f"a file deleted on purpose ended {job['state']} ({error})", **where)
            continue
        if job["state"] in ("pending", "running"):
            verdict.add("stuck", f"{job['state']} after the drain, attempt {job['attempts']}, last error {error}",
                        **where)
        elif job["state"] == "failed":
            verdict.add("lost", f"failed after {job['attempts']} attempts: {error}", **where)
        elif job["object_key"] != key:
            verdict.add("corrupted", f"ledger key {job['object_key']!r}, template gives {key!r}", **where)
        elif not present:
            verdict.add("lost", "succeeded in the ledger but no object at its key", **where)
        else:
            to_hash[(dest, key)] = job
    return to_hash


def _manifest_ok(verdict: Verdict, stores: Stores, key: str, sha: str, where: dict[str, Any]) -> bool:
    try:
        manifest = json.loads(b"".join(stores.chunks("s3", key + ".json")))
    except Exception as exc:  # missing or unreadable: the copy's catalogue entry is gone
        verdict.add("lost", f"manifest {key}.json unreadable: {type(exc).__name__}", **where)
        return False
    if manifest.get("sha256") != sha or manifest.get("object_key") != key:
        verdict.add("corrupted", f"manifest names {manifest.get('object_key')} sha256 {manifest.get('sha256')}",
                    **where)
        return False
    return True


def _check_extras(verdict: Verdict, expected: dict[tuple[str, str], tuple[Recording, Delivery]],
                  listings: dict[str, dict[str, int]], names: dict[str, Recording]) -> None:
    """Objects no expected copy accounts for: a second copy of a known file, or a stray."""
    for dest, listing in listings.items():
        for key in listing:
            if (dest, key) in expected or (dest == "s3" and key.endswith(".json")
                                           and (dest, key[:-5]) in expected):
                rec = expected.get((dest, key), expected.get((dest, key[:-5]), (None, None)))[0]
                if rec is not None and "cdn_gone" in rec.faults:
                    verdict.add("stray", "an object for a file deleted on purpose", destination=dest, key=key)
                continue
            base = key.rsplit("/", 1)[-1]
            known = next((n for n in names if n in base), None)
            if known and not base.startswith(".archiver-tmp-"):
                verdict.add("duplicated", f"a second object for {known}", destination=dest, key=key)
            else:
                verdict.add("stray", f"an object nobody announced ({listing[key]} bytes)", destination=dest, key=key)
