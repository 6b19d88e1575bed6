"""The Python contenders of bench.copy_throughput, one per process; each prints one JSON line.

    python -m bench.copy_contenders ours    --provider s3 --target JSON --url URL --meeting ID --ledger DB
                                            [--option K=V]...
    python -m bench.copy_contenders ceiling --provider s3 --target JSON --file PATH --key KEY

`ours` is the worker's path: a Runtime over a copy of a migrated SQLite ledger, one destination, an event
recorded with accept_event, then archiver.copy.job.run_copy_job(runtime, job_id). `ceiling` is the
SDK uploading the same bytes from a local file with tuned settings. Only the copy is timed (imports,
ledger set-up and client construction are not); the caller measures the whole process's peak RSS.
`--target` is JSON: {"s3": {"endpoint", "bucket"}, "az": {"connection", "bucket"}, "gs": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

MIB = 1 << 20
CEILING_PART = 16 * MIB
CEILING_CONCURRENCY = 8
S3_SECRET = "BENCH_S3_SECRET"
AZURE_CONNECTION = "BENCH_AZURE_CONNECTION"


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def destination_toml(provider: str, target: dict[str, Any], options: dict[str, Any]) -> str:
    bucket, endpoint = target["bucket"], target.get("endpoint")
    lines = {
        "s3": [f'url = "s3://{bucket}/bench/{{meetingId}}/{{filename}}"', f'endpoint_url = "{endpoint}"',
               'region = "us-east-1"', 'addressing_style = "path"', 'access_key_id = "testing"',
               f'secret_access_key_env = "{S3_SECRET}"'],
        "az": [f'url = "az://{bucket}/bench/{{meetingId}}/{{filename}}"',
               f'connection_string_env = "{AZURE_CONNECTION}"'],
        "gs": [f'url = "gs://{bucket}/bench/{{meetingId}}/{{filename}}"', f'endpoint = "{endpoint}"',
               'project = "test"'],
    }[provider]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]  # JSON scalars are TOML
    return f'[[destinations]]\nname = "{provider}"\n' + "\n".join(lines) + "\n"


def secrets(provider: str, target: dict[str, Any]) -> dict[str, str]:
    """The environment variables the destination's *_env options name."""
    return {S3_SECRET: "moto-secret-key", **({AZURE_CONNECTION: target["connection"]} if provider == "az" else {})}


def setup(root: Path, provider: str, target: dict[str, Any], url: str, meeting: str, options: dict[str, Any],
          ledger: Path) -> tuple[Path, str]:
    """A config and a migrated ledger under ``root``, and the webhook body naming ``url``: (config, body)."""
    shutil.copyfile(ledger, root / "ledger.db")  # migrated by the caller: a worker never migrates
    database = f"sqlite:///{root}/ledger.db"
    config = root / "archiver.toml"
    config.write_text(f'broker_url = "sqla+sqlite:///{root}/broker.db"\ndatabase_url = "{database}"\n'
                      '[source]\nallow_hosts = ["127.0.0.1"]\nallow_http = true\n'
                      'allowed_networks = ["127.0.0.1/32"]\n' + destination_toml(provider, target, options))
    body = json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "filePath": "/" + url.split("/")[-1]
                                .split("?")[0], "fileUrl": url}})
    return config, body


def ours(provider: str, target: dict[str, Any], url: str, meeting: str, options: dict[str, Any],
         ledger: Path) -> dict[str, Any]:
    from archiver.copy.job import run_copy_job
    from archiver.intake.record import accept_event
    from archiver.runtime import Runtime
    from archiver.settings.config import load_settings

    root = Path(tempfile.mkdtemp(prefix="bench-ours-"))
    config, body = setup(root, provider, target, url, meeting, options, ledger)
    os.environ.update(secrets(provider, target))
    settings = load_settings(config, environ={})  # nothing from the caller's ARCHIVER_* variables
    runtime = Runtime.create(settings)  # as the worker does: checks the schema is current
    _, accepted = accept_event(runtime.ledger, settings, body, verified=True, source="bench")
    [job_id] = accepted.created
    destination = settings.destinations[0]
    provider_obj = runtime.provider(destination)
    provider_obj.client  # noqa: B018 - a running worker already has its SDK client; build it untimed
    rss_before = status_kib("VmRSS")
    started = time.perf_counter()
    outcome = run_copy_job(runtime, job_id)
    seconds = time.perf_counter() - started
    if outcome.state != "succeeded":
        raise SystemExit(f"ours: job {job_id} ended {outcome.state}: {outcome.error}")
    job = runtime.ledger.job(job_id)
    assert job is not None and job.object_key is not None
    size_hint = job.bytes
    return {"seconds": seconds, "bytes": job.bytes, "key": provider_obj.full_key(job.object_key),
            "rss_before_copy_kib": rss_before,
            "settings": {"part_size": provider_obj._part_size(size_hint),
                         "concurrency": int(provider_obj.options["concurrency"] or provider_obj.default_concurrency),
                         **({"checksum_mode": provider_obj.options["checksum_mode"]} if provider == "s3" else {}),
                         **options}}


def ceiling(provider: str, target: dict[str, Any], path: Path, key: str, part: int = CEILING_PART,
            concurrency: int = CEILING_CONCURRENCY) -> dict[str, Any]:
    size, bucket = path.stat().st_size, target["bucket"]
    if provider == "s3":
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=target["endpoint"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="moto-secret-key",
                              config=Config(max_pool_connections=concurrency + 2,
                                            s3={"addressing_style": "path"}))
        transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                                  max_concurrency=concurrency, use_threads=True,
                                  preferred_transfer_client="classic")
        settings = {"api": "boto3 upload_file", "multipart_chunksize": part,
                    "max_concurrency": concurrency}

        def upload() -> None:
            client.upload_file(str(path), bucket, key, Config=transfer)
    elif provider == "az":
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(target["connection"], max_block_size=part,
                                                           max_single_put_size=part)
        blob = service.get_blob_client(bucket, key)
        # validate_content sends each block's Content-MD5, as ours does: without it Azurite computes
        # a CRC64 of every block itself (slowly, in JavaScript) and is no longer the ceiling.
        settings = {"api": "azure upload_blob", "max_block_size": part, "max_single_put_size": part,
                    "max_concurrency": concurrency, "validate_content": True}

        def upload() -> None:
            with path.open("rb") as data:
                blob.upload_blob(data, length=size, max_concurrency=concurrency, overwrite=True,
                                 validate_content=True)
    else:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="test", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": target["endpoint"]})
        gblob = client.bucket(bucket).blob(key, chunk_size=part)
        settings = {"api": "google-cloud-storage upload_from_filename", "chunk_size": part}

        def upload() -> None:
            gblob.upload_from_filename(str(path))
    rss_before = status_kib("VmRSS")
    started = time.perf_counter()
    upload()
    return {"seconds": time.perf_counter() - started, "bytes": size, "key": key,
            "rss_before_copy_kib": rss_before, "settings": settings}


def parse_option(text: str) -> tuple[str, Any]:
    """K=V with V a TOML value (16777216, "16MiB", true); a bare word is taken as a string."""
    key, _, value = text.partition("=")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("contender", choices=("ours", "ceiling"))
    parser.add_argument("--provider", choices=("s3", "az", "gs"), required=True)
    parser.add_argument("--target", required=True, help="JSON: endpoints and buckets per provider")
    parser.add_argument("--url", help="ours: the source URL")
    parser.add_argument("--meeting", help="ours: the meeting id (names the object)")
    parser.add_argument("--option", action="append", default=[], help="ours: a destination option K=V")
    parser.add_argument("--ledger", type=Path, help="ours: a migrated SQLite ledger to start from (copied)")
    parser.add_argument("--file", type=Path, help="ceiling: the local file to upload")
    parser.add_argument("--key", help="ceiling: the object key")
    parser.add_argument("--part-mib", type=int, default=CEILING_PART // MIB, help="ceiling: part/block/chunk MiB")
    parser.add_argument("--concurrency", type=int, default=CEILING_CONCURRENCY, help="ceiling: parts at once")
    args = parser.parse_args()
    target = json.loads(args.target)[args.provider]
    if args.contender == "ours":
        result = ours(args.provider, target, args.url, args.meeting, dict(map(parse_option, args.option)),
                      args.ledger)
    else:
        result = ceiling(args.provider, target, args.file, args.key, args.part_mib * MIB, args.concurrency)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
