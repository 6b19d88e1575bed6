"""Amazon S3 and S3-compatible stores: one PutObject for small objects, a multipart upload otherwise.

Create-only writes use `If-None-Match: *` on PutObject and CompleteMultipartUpload, so two archivers
racing on one key cannot both publish. Integrity: in the default `crc32` mode every part carries its
CRC32 (`sha256` mode: its SHA-256), which S3 checks on arrival, and the composite checksum S3 reports
afterwards is compared with the one computed from the streamed parts; a single PutObject carries the
SHA-256 of the stream. That SHA-256, computed once as the bytes stream, is the object's identity.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from typing import Any, BinaryIO, ClassVar
from urllib.parse import urlencode

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from providers.base import StorageProvider
from providers.errors import AccessDenied, ConfigurationError, ObjectNotFound, TransientError
from providers.options import Option
from providers.readback import DEPTHS, RANGES
from providers.reader import chunk_reader
from providers.s3.auth import make_session
from providers.s3.errors import translate
from providers.s3.verify import object_info
from providers.s3.writer import MAX_PARTS, S3Writer
from providers.types import ObjectInfo
from providers.writer import ObjectWriter, WriteRequest

MiB = 1 << 20
MIN_PART = 5 * MiB  # S3's floor for every part but the last
MAX_PART = 5 << 30
_ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # readable only after a restore
_TAG = re.compile(r"[\w\s.:/=+\-@]*")  # what S3 accepts in tag keys and values


class S3Provider(StorageProvider):
    scheme = "s3"
    permissions: ClassVar[dict[str, str]] = {"write": "s3:PutObject", "read": "s3:GetObject",
                                             "delete": "s3:DeleteObject", "tag": "s3:PutObjectTagging"}
    credentials_hint: ClassVar[str] = (
        "give the destination access_key_id with secret_access_key_env = \"VARIABLE\", or profile, or role_arn; "
        "or leave them out for boto3's chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, "
        "an instance or task role")
    options_spec: ClassVar[dict[str, Option]] = {
        "region": Option("str", doc="AWS region of the bucket (default: from the environment or profile)"),
        "endpoint_url": Option("str", doc="S3-compatible endpoint, e.g. https://minio.example.com:9000"),
        "addressing_style": Option("str", choices=("path", "virtual", "auto"),
                                   doc="bucket in the path or in the host name (default auto)"),
        "profile": Option("str", doc="named profile from ~/.aws/config and ~/.aws/credentials"),
        "access_key_id": Option("str", doc="access key id (default: boto3's credential chain)"),
        "secret_access_key": Option("str", secret=True, doc="secret access key for access_key_id"),
        "session_token": Option("str", secret=True, doc="session token for temporary keys"),
        "role_arn": Option("str", doc="IAM role to assume with STS; refreshed before it expires"),
        "external_id": Option("str", doc="external id the role's trust policy requires"),
        "role_session_name": Option("str", doc="assumed role's session name (default videosdk-archiver)"),
        "sts_endpoint_url": Option("str", doc="STS endpoint for role_arn (default: AWS's regional STS)"),
        "storage_class": Option("str", doc="e.g. STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR, "
                                           "DEEP_ARCHIVE (default: the bucket's, normally STANDARD)"),
        "sse": Option("str", choices=("AES256", "aws:kms"), doc="server-side encryption to request"),
        "kms_key_id": Option("str", doc="KMS key id or ARN for sse = 'aws:kms' (default: aws/s3 key)"),
        "acl": Option("str", choices=("private", "public-read", "public-read-write", "authenticated-read",
                                      "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control"),
                      doc="canned ACL (buckets with object ownership 'enforced' reject any)"),
        "tags": Option("dict", doc="object tags, e.g. {retention = '7y'} (at most 10)"),
        "content_disposition": Option("str", doc="Content-Disposition header stored with every object"),
        "checksum_mode": Option("str", "crc32", choices=("crc32", "sha256", "md5", "off"),
                                doc="crc32: per-part CRC32 and composite check (a single PutObject carries the "
                                    "stream's SHA-256); sha256: per-part SHA-256 (a second SHA-256 pass over "
                                    "every byte) and composite check; md5: Content-MD5 per part, then the ETag "
                                    "where it is an MD5 of the body (else readback), for stores without the "
                                    "newer checksums; off: size only. The object's identity is the SHA-256 of the "
                                    "stream in every mode"),
        "readback": Option("str", RANGES, choices=DEPTHS,
                           doc="how a commit is verified when S3's answer cannot prove the bytes (ETag not an "
                               "MD5 of the body: R2 multipart, MinIO SSE, SSE-KMS, SSE-C; no SHA-256 kept): "
                               "ranges: size and ranged GetObject of the first, middle and last part against "
                               "their streamed digests; full: GetObject of the whole object (a download per "
                               "copy; also with checksum_mode 'off')"),
    }

    def _validate(self) -> None:
        o = self.options
        pairs = [("kms_key_id", o["sse"] == "aws:kms", "sse = 'aws:kms'"),
                 ("secret_access_key", o["access_key_id"], "access_key_id"),
                 ("access_key_id", o["secret_access_key"], "secret_access_key"),
                 ("session_token", o["access_key_id"], "access_key_id"),
                 ("external_id", o["role_arn"], "role_arn"),
                 ("role_session_name", o["role_arn"], "role_arn"),
                 ("sts_endpoint_url", o["role_arn"], "role_arn")]
        for name, needed, what in pairs:
            if o[name] and not needed:
                raise ConfigurationError(f"option '{name}' for {self.url} needs {what}")
        if o["access_key_id"] and not o["secret_access_key"]:
            raise ConfigurationError(f"option 'access_key_id' for {self.url} needs secret_access_key")
        if o["profile"] and o["access_key_id"]:
            raise ConfigurationError(f"give option 'profile' or 'access_key_id' for {self.url}, not both")
        for name in ("endpoint_url", "sts_endpoint_url"):
            if o[name] and not o[name].startswith(("http://", "https://")):
                raise ConfigurationError(f"option '{name}' for {self.url} must start with http(s)://")
        if o["part_size"] is not None and not MIN_PART <= o["part_size"] <= MAX_PART:
            raise ConfigurationError(f"option 'part_size' for {self.url} must be 5MiB to 5GiB (S3's limits)")
        tags = o["tags"] or {}
        if len(tags) > 10 or not all(_TAG.fullmatch(k) and len(k) <= 128 and _TAG.fullmatch(v)
                                     and len(v) <= 256 for k, v in tags.items()):
            raise ConfigurationError(f"option 'tags' for {self.url}: S3 allows at most 10 tags of letters, "
                                     "digits, spaces and _ . : / = + - @ (keys up to 128, values 256)")

    def service_endpoint(self) -> str | None:
        """The endpoint the client signs for (botocore's public ``meta.endpoint_url``)."""
        return str(self.client.meta.endpoint_url)

    def _new_client(self) -> Any:
        o = self.options
        lenient = o["checksum_mode"] in ("md5", "off")  # only send/validate checksums the store requires
        common: dict[str, Any] = {"connect_timeout": o["timeout"], "read_timeout": o["timeout"],
                                  "retries": {"mode": "standard"}, "user_agent_extra": "videosdk-archiver"}
        # Over plain http (MinIO in a VPC, the emulators) botocore would SHA-256 every body once more
        # to sign it. Each part already carries a signed checksum header that the store verifies, and
        # the assembled object is compared with the stream after commit, so UNSIGNED-PAYLOAD loses
        # nothing and saves that pass (0.6 s of CPU per GiB here). Over https botocore already skips
        # it; with checksum_mode off (size check only) the payload stays signed.
        s3 = {"addressing_style": o["addressing_style"] or "auto",
              "payload_signing_enabled": o["checksum_mode"] == "off"}
        config = Config(**common, max_pool_connections=max(10, self._concurrency() + 2), s3=s3,
                        request_checksum_calculation="when_required" if lenient else "when_supported",
                        response_checksum_validation="when_required" if lenient else "when_supported")
        # The classic client, never the CRT transfer manager: the CRT's threads do not survive fork().
        return make_session(o, Config(**common)).create_client(
            "s3", region_name=o["region"], endpoint_url=o["endpoint_url"], config=config)

    def probe_variant(self, *, tags: bool) -> StorageProvider:
        probe = super().probe_variant(tags=tags)
        if self.options["storage_class"] not in _ARCHIVE_CLASSES:
            return probe
        # An archived object cannot be read back without a restore (and would bill 90-180 days), so
        # the probe is written as STANDARD; everything else about the destination is checked as usual.
        probe = copy.copy(probe)
        probe.options = {**probe.options, "storage_class": None}
        return probe

    def _concurrency(self) -> int:
        return int(self.options["concurrency"] or self.default_concurrency)

    def _part_size(self, size_hint: int | None) -> int:
        size = max(int(self.options["part_size"] or self.default_part_size), MIN_PART)
        if size_hint and -(-size_hint // size) > MAX_PARTS:
            per_part = -(-size_hint // MAX_PARTS)  # ceiling division throughout
            size = -(-per_part // MiB) * MiB
        return size

    def call(self, key: str, action: Callable[..., Any], **kwargs: Any) -> Any:
        """Run one client call for `key`, translating any failure into the provider's vocabulary."""
        try:
            return action(Bucket=self.location, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self.describe(key), self.location) from exc

    def _writer(self, request: WriteRequest) -> ObjectWriter:
        return S3Writer(self, request)

    def _stat(self, full_key: str, key: str) -> ObjectInfo:
        return object_info(key, self.head(full_key, key))

    def head(self, full_key: str, key: str, **extra: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.call(key, self.client.head_object, Key=full_key,
                                           ChecksumMode="ENABLED", **extra)
        return answer

    def _open_reader(self, full_key: str) -> BinaryIO:
        return self.open_version(full_key)

    def open_version(self, full_key: str, **extra: Any) -> BinaryIO:
        """GetObject as a stream; `extra` may pin it (VersionId, IfMatch) or ask for a Range."""
        key = full_key[len(self.prefix):]
        body = self.call(key, self.client.get_object, Key=full_key, **extra)["Body"]
        what = self.describe(key)
        # In sha256 and crc32 modes botocore also checks a single-PUT object's SHA-256 as the body streams by.
        return chunk_reader(body.iter_chunks(MiB), lambda exc: translate(exc, what, self.location),
                            body.close)

    def _delete(self, full_key: str) -> None:
        with contextlib.suppress(ObjectNotFound):  # S3 already answers 204 for a missing key
            self.call(full_key[len(self.prefix):], self.client.delete_object, Key=full_key)

    def _discard_incomplete(self, full_key: str) -> int:
        # Unlike Azure's and GCS's, an S3 multipart upload is billed until aborted, however old.
        key, discarded = full_key[len(self.prefix):], 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.location, Prefix=full_key)
            uploads = [u for page in pages for u in page.get("Uploads", []) if u["Key"] == full_key]
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, self.describe(key), self.location)
            if isinstance(error, AccessDenied):
                # A least-privilege policy on bucket/prefix/* cannot grant the bucket-level
                # ListBucketMultipartUploads; leftovers then fall to the bucket's lifecycle rule.
                return 0
            raise error from exc
        for upload in uploads:
            try:
                self.call(key, self.client.abort_multipart_upload, Key=full_key, UploadId=upload["UploadId"])
            except TransientError as exc:
                if exc.code != "NoSuchUpload":  # finished or aborted meanwhile: nothing left to do
                    raise
                continue
            discarded += 1
        return discarded

    def object_args(self) -> dict[str, Any]:
        """Headers every new object gets, on PutObject and CreateMultipartUpload alike."""
        o, args = self.options, {}
        for option, param in (("storage_class", "StorageClass"), ("sse", "ServerSideEncryption"),
                              ("kms_key_id", "SSEKMSKeyId"), ("acl", "ACL"),
                              ("content_disposition", "ContentDisposition")):
            if o[option]:
                args[param] = o[option]
        if o["tags"]:
            args["Tagging"] = urlencode(o["tags"])
        return args
