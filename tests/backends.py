"""Builds a provider of each kind against the live emulators, each test in a fresh bucket/container."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from providers import StorageProvider, open_provider

KINDS = ("s3", "az", "gs", "file")


def unique_name() -> str:
    return f"t-{secrets.token_hex(6)}"


def s3_options(moto_url: str) -> dict[str, Any]:
    return {"endpoint_url": moto_url, "region": "us-east-1", "access_key_id": "testing",
            "secret_access_key": "moto-secret-key", "addressing_style": "path"}


def boto(url: str, service: str = "s3", **keys: str) -> Any:
    """A plain boto3 client for `url` (moto), to look at or arrange what a test needs."""
    import boto3

    keys = keys or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", **keys)


def create_s3_bucket(moto_url: str, bucket: str) -> None:
    boto(moto_url).create_bucket(Bucket=bucket)


def create_az_container(conn: str, container: str) -> None:
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(conn).create_container(container)


def create_gcs_bucket(endpoint: str, bucket: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    client.create_bucket(bucket)


ProviderFactory = Callable[..., StorageProvider]


def provider_factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> ProviderFactory:
    """Return `make(prefix="pre", **options)` creating a provider on a fresh bucket of `kind`."""
    name = unique_name()
    if kind == "s3":
        moto_url = request.getfixturevalue("moto_url")
        create_s3_bucket(moto_url, name)
        return lambda prefix="pre", **o: open_provider(f"s3://{name}/{prefix}", **{**s3_options(moto_url), **o})
    if kind == "az":
        conn = request.getfixturevalue("azurite_connection_string")
        create_az_container(conn, name)
        return lambda prefix="pre", **o: open_provider(f"az://{name}/{prefix}", connection_string=conn, **o)
    if kind == "gs":
        endpoint = request.getfixturevalue("gcs_emulator_url")
        create_gcs_bucket(endpoint, name)
        return lambda prefix="pre", **o: open_provider(f"gs://{name}/{prefix}", endpoint=endpoint,
                                                       project="test", **o)
    if kind == "file":
        return lambda prefix="pre", **o: open_provider(f"file://{tmp_path}/{name}/{prefix}", **o)
    raise AssertionError(kind)


def visible_keys(provider: StorageProvider) -> list[str]:
    """Every object a lister sees under the provider's prefix (relative keys), whatever wrote it."""
    prefix = provider.prefix
    if provider.scheme == "s3":
        pages = provider.client.get_paginator("list_objects_v2").paginate(Bucket=provider.location, Prefix=prefix)
        return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))
    if provider.scheme == "az":
        return sorted(b.name[len(prefix):] for b in provider.client.list_blobs(name_starts_with=prefix))
    if provider.scheme == "gs":
        return sorted(b.name[len(prefix):] for b in provider.bucket.list_blobs(prefix=prefix))
    root = provider.path_of(prefix)  # type: ignore[attr-defined]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def billed_leftovers(provider: StorageProvider) -> list[str]:
    """What an aborted write could leave that is billed or visible yet is no object: S3 multipart
    uploads, local temp files. (Azure's uncommitted blocks are invisible and dropped by the service;
    GCS sessions are neither visible nor listable: tests/test_gcs.py watches their cancellation.)"""
    if provider.scheme == "s3":
        answer = provider.client.list_multipart_uploads(Bucket=provider.location, Prefix=provider.prefix)
        return [u["Key"] for u in answer.get("Uploads", [])]
    if provider.scheme == "file":
        return [k for k in visible_keys(provider) if ".archiver-tmp-" in k]
    return []
