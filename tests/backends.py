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


def create_s3_bucket(moto_url: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", **{"endpoint_url": moto_url, "region_name": "us-east-1",
                          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
                 ).create_bucket(Bucket=bucket)


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
