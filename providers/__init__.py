"""One interface through which every byte reaches a customer's bucket.

    provider = open_provider("s3://bucket/prefix", region="eu-west-1")
    with provider.open_writer("meeting/file.mp4", content_type="video/mp4") as w:
        w.write(chunk)
        info = w.commit()
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import unquote, urlsplit

from providers.base import MAX_KEY_BYTES, StorageProvider
from providers.errors import (
    AccessDenied,
    AuthenticationError,
    ConfigurationError,
    IntegrityError,
    InvalidKey,
    MissingSecret,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientError,
)
from providers.readback import digest_stream
from providers.types import CheckReport, CheckStep, ObjectInfo
from providers.writer import ObjectWriter

# Imported lazily so that, say, a GCS-only deployment never pays for importing boto3.
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "s3": ("providers.s3.provider", "S3Provider", "boto3"),
    "az": ("providers.azure.provider", "AzureBlobProvider", "azure-storage-blob"),
    "gs": ("providers.gcs.provider", "GCSProvider", "google-cloud-storage"),
    "file": ("providers.local.provider", "LocalProvider", ""),
}


def provider_class(scheme: str) -> type[StorageProvider]:
    try:
        module_name, class_name, package = _REGISTRY[scheme]
    except KeyError:
        raise ConfigurationError(f"unknown storage scheme {scheme + '://'!r}; use one of "
                                 f"{', '.join(s + '://' for s in _REGISTRY)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"{scheme}:// needs the package {package!r}: pip install {package}") from exc
    return getattr(module, class_name)  # type: ignore[no-any-return]


def split_url(url: str) -> tuple[str, str, str]:
    """`s3://bucket/pre/fix` -> ("s3", "bucket", "pre/fix"); `file:rel/dir` -> ("file", "rel/dir", "")."""
    if not isinstance(url, str) or ":" not in url:
        raise ConfigurationError(f"storage URL {url!r} has no scheme; expected e.g. s3://bucket/prefix")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(f"file URL {url!r} names a host; use file:///abs/dir or file:rel/dir")
        if not path:
            raise ConfigurationError(f"file URL {url!r} has no folder")
        return scheme, path, ""
    if parts.query or parts.fragment:
        raise ConfigurationError(f"storage URL {url!r} must not have a query or fragment; pass options instead")
    if not parts.netloc:
        raise ConfigurationError(f"storage URL {url!r} has no bucket/container name")
    return scheme, parts.netloc, unquote(parts.path)


def open_provider(url: str, **options: Any) -> StorageProvider:
    scheme, location, prefix = split_url(url)
    return provider_class(scheme)(location, prefix, options)


__all__ = [
    "MAX_KEY_BYTES", "AccessDenied", "AuthenticationError", "CheckReport", "CheckStep", "ConfigurationError",
    "IntegrityError", "InvalidKey", "MissingSecret", "ObjectExists", "ObjectInfo", "ObjectNotFound", "ObjectWriter",
    "StorageError", "StorageProvider", "TransientError", "digest_stream", "open_provider", "provider_class",
    "split_url",
]
