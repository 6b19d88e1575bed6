"""Create the buckets of a trial configuration on the storage emulators (the `trial-buckets` service).

Reads the same archiver.toml as the workers (ARCHIVER_CONFIG) and, for every s3://, az:// and gs://
destination, creates its bucket or container with the destination's own endpoint and credentials.
Already existing is fine. Meant for moto, Azurite and fake-gcs-server only: a production bucket is
created (with its lifecycle rules, encryption and access policy) by whoever owns the account.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from archiver.settings.config import load_settings
from providers import split_url


def _option(options: dict[str, Any], name: str) -> Any:
    """An option's value, given directly or through `<name>_env`."""
    if f"{name}_env" in options:
        return os.environ[options[f"{name}_env"]]
    return options.get(name)


def create_s3(bucket: str, options: dict[str, Any]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=options.get("endpoint_url"), region_name=options.get("region"),
                          aws_access_key_id=options.get("access_key_id"),
                          aws_secret_access_key=_option(options, "secret_access_key"))
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)


def create_az(container: str, options: dict[str, Any]) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    conn = _option(options, "connection_string") or os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    with contextlib.suppress(ResourceExistsError):
        BlobServiceClient.from_connection_string(conn).create_container(container)


def create_gs(bucket: str, options: dict[str, Any]) -> None:
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    endpoint = options.get("endpoint") or os.environ["STORAGE_EMULATOR_HOST"]
    client = storage.Client(project=options.get("project") or "trial", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    with contextlib.suppress(Conflict):
        client.create_bucket(bucket)


CREATORS = {"s3": create_s3, "az": create_az, "gs": create_gs}


def main() -> int:
    settings = load_settings()
    for dest in settings.destinations:
        scheme, bucket, _ = split_url(dest.provider_url)
        if scheme in CREATORS:
            CREATORS[scheme](bucket, dict(dest.options))
            print(f"{dest.name}: {scheme}://{bucket} ready", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
