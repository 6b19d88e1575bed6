"""An in-process runtime for copy tests: a config file, a migrated SQLite ledger, destinations given as
TOML tables, a source policy that allows the stand-in CDN on 127.0.0.1 over http."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.notifications.routing import outbox_for
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from providers import StorageProvider
from tests.backends import create_s3_bucket, unique_name

S3_SECRET_VARIABLE = "ARCHIVER_TEST_S3_SECRET"


def write_config(root: Path, destinations: str, extra: str = "", database_url: str | None = None) -> Path:
    path = root / "archiver.toml"
    path.write_text(f"""
database_url = "{database_url or f'sqlite:///{root}/ledger.db'}"
broker_url = "sqla+sqlite:///{root}/broker.db"
{extra}
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
not_found_grace_minutes = 0

[retry]
base_delay = 0.1
max_delay = 0.5
max_attempts = 4
{destinations}
""")
    return path


def runtime_for(root: Path, destinations: str, extra: str = "", environ: dict[str, str] | None = None,
                database_url: str | None = None) -> Runtime:
    """``database_url``: a ledger to use (the ``database_url`` fixture's), else SQLite under ``root``."""
    path = write_config(root, destinations, extra, database_url)
    # provider options read their *_env secrets from the process environment (tests.stack sets the same)
    os.environ.setdefault(S3_SECRET_VARIABLE, "moto-secret-key")
    settings = load_settings(path, environ=environ or {})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine, outbox=outbox_for(settings)))  # as Runtime.create


def local_destination(root: Path, name: str = "local", template: str = "{meetingId}/{participantId|room}/",
                      manifest: bool = True) -> str:
    return f"""
[[destinations]]
name = "{name}"
url = "file://{root}/archive/{template}"
manifest = {str(manifest).lower()}
"""


def s3_destination(moto_url: str, name: str = "s3", template: str = "rec/{meetingId}/{participantId|room}/",
                   manifest: bool = True) -> str:
    bucket = unique_name()
    create_s3_bucket(moto_url, bucket)
    return f"""
[[destinations]]
name = "{name}"
url = "s3://{bucket}/{template}"
endpoint_url = "{moto_url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "testing"
secret_access_key_env = "{S3_SECRET_VARIABLE}"
manifest = {str(manifest).lower()}
"""


def read(provider: StorageProvider, key: str) -> bytes:
    with provider.open_reader(key) as reader:
        return reader.read()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
