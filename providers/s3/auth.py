"""Credentials for the S3 provider: explicit keys, a named profile or boto3's ambient chain, optionally
exchanged for an assumed role that botocore refreshes before it expires.

Kept apart from s3.py so the provider reads as storage logic; nothing here logs or formats a secret.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)

DEFAULT_ROLE_SESSION_NAME = "videosdk-archiver"


class _Given(CredentialProvider):  # type: ignore[misc]
    """Hands botocore credentials we built, through its public credential-provider component."""

    METHOD = "archiver"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def make_session(options: Mapping[str, Any], sts_config: Config) -> botocore.session.Session:
    """A botocore session whose credentials follow the provider's options.

    Precedence: access_key_id/secret_access_key, else `profile`, else the ambient chain (environment,
    shared files, web identity, container and instance roles). With role_arn those become the *source*
    credentials of an STS AssumeRole whose result is refreshed 15 minutes before it expires, so an
    upload that outlives one role session keeps signing with valid credentials.
    """
    session = botocore.session.Session(profile=options["profile"])
    if options["access_key_id"]:
        source: Credentials | None = Credentials(options["access_key_id"], options["secret_access_key"],
                                                 options["session_token"])
    else:
        source = None  # the session's own (ambient or profile) chain
    if options["role_arn"]:
        # A separate session resolves the ambient chain so that our resolver below does not replace it.
        source_session = botocore.session.Session(profile=options["profile"])
        if source is None:
            source = source_session.get_credentials()
        if source is None:
            return session  # no credentials anywhere: the first request raises NoCredentialsError
        extra: dict[str, str] = {"RoleSessionName": options["role_session_name"] or DEFAULT_ROLE_SESSION_NAME}
        if options["external_id"]:
            extra["ExternalId"] = options["external_id"]
        create_sts = functools.partial(source_session.create_client, region_name=options["region"],
                                       endpoint_url=options["sts_endpoint_url"], config=sts_config)
        fetcher = AssumeRoleCredentialFetcher(create_sts, source, options["role_arn"], extra_args=extra)
        source = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")
    if source is not None:
        session.register_component("credential_provider", CredentialResolver([_Given(source)]))
    return session
