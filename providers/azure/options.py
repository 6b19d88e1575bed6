"""The options of az:// destinations and their validation, done when the provider is opened.

No message here ever shows a secret's value; a malformed one is only named.
"""

from __future__ import annotations

import binascii
import os
import re
from base64 import b64decode
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from providers.errors import ConfigurationError, MissingSecret
from providers.options import Option

MIB = 1 << 20
MAX_BLOCK_SIZE = 4000 * MIB
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
TIERS = ("Hot", "Cool", "Cold", "Archive")
CREDENTIALS = ("connection_string", "account_key", "sas_token")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$|^\$root$|^\$web$")
_TAG_TEXT = re.compile(r"^[A-Za-z0-9 +\-./:=_]*$")

OPTIONS: dict[str, Option] = {
    "connection_string": Option("str", secret=True, doc="storage account connection string (names the endpoint "
                                f"too); default: ${ENV_CONNECTION_STRING} when no other option names an account"),
    "account_url": Option("str", doc="blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net or "
                          "http://127.0.0.1:10000/devstoreaccount1; alone it means Azure AD (azure-identity)"),
    "account_key": Option("str", secret=True, doc="shared key of the account at account_url"),
    "sas_token": Option("str", secret=True, doc="shared access signature for account_url (read, create, "
                        "write, delete; also tag when tags are set)"),
    "access_tier": Option("str", choices=TIERS, doc="tier of every blob written (default: the account's); "
                          "Archive blobs cannot be read back before rehydration"),
    "tags": Option("dict", doc="blob index tags set on every blob written (at most 10)"),
}


def check_options(opts: Mapping[str, Any], container: str, where: str, *,
                  resolved: bool = False) -> tuple[bool, str]:
    """Raise ConfigurationError naming the option; return (use $AZURE_STORAGE_CONNECTION_STRING, account name).

    Before `resolved` a secret from `<option>_env` is an EnvSecret (given, value unknown) and
    $AZURE_STORAGE_CONNECTION_STRING is not read: a process that never makes a client needs neither.
    With `resolved` (at the first client) the values are checked too, and a missing variable is
    MissingSecret."""
    if not _CONTAINER.match(container):
        raise ConfigurationError(f"{container!r} is not an Azure container name (3-63 lowercase letters, "
                                 f"digits and single hyphens) in {where}")
    if opts["part_size"] is not None and opts["part_size"] > MAX_BLOCK_SIZE:
        raise ConfigurationError(f"option 'part_size' for {where} must be at most 4000MiB, Azure's largest "
                                 f"block; got {opts['part_size']}")
    given = [name for name in CREDENTIALS if opts[name] is not None]
    if len(given) > 1:
        raise ConfigurationError(f"give one credential for {where}, not both {given[0]!r} and {given[1]!r}")
    url = opts["account_url"]
    if given == ["connection_string"] and url is not None:
        raise ConfigurationError(f"option 'account_url' for {where} cannot be combined with "
                                 "'connection_string', which names the endpoint itself")
    if given and given != ["connection_string"] and url is None:
        raise ConfigurationError(f"option {given[0]!r} for {where} needs 'account_url' "
                                 "(e.g. https://ACCOUNT.blob.core.windows.net)")
    # The environment is used only when nothing at all is configured: an explicit account_url without
    # a credential means Azure AD, never a connection string that may name another account.
    from_env = not given and url is None
    if from_env and resolved:
        if not os.environ.get(ENV_CONNECTION_STRING):
            raise MissingSecret(f"no credentials for {where}: give 'connection_string' (or "
                                "'connection_string_env'), or 'account_url' with 'account_key', 'sas_token' "
                                f"or nothing for Azure AD; {ENV_CONNECTION_STRING} is not set either",
                                what=ENV_CONNECTION_STRING)
        _check_connection_string(os.environ[ENV_CONNECTION_STRING], ENV_CONNECTION_STRING, where)
    # Only values known here are checked: an EnvSecret is checked once resolved.
    if isinstance(opts["connection_string"], str):
        _check_connection_string(opts["connection_string"], "option 'connection_string'", where)
    account = _account_name(url, where, needed=opts["account_key"] is not None) if url is not None else ""
    if isinstance(opts["account_key"], str) and not _is_base64(opts["account_key"]):
        raise ConfigurationError(f"option 'account_key' for {where} is not base64")
    if isinstance(opts["sas_token"], str) and "sig=" not in opts["sas_token"]:
        raise ConfigurationError(f"option 'sas_token' for {where} is not a SAS token (it has no sig=)")
    if url is not None and not given:
        _require_azure_identity(url, where)
    _check_tags(opts["tags"] or {}, where)
    return from_env, account


def _is_base64(text: str) -> bool:
    try:
        b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_connection_string(conn: str, what: str, where: str) -> None:
    from azure.storage.blob import ContainerClient

    try:
        ContainerClient.from_connection_string(conn, "probe").close()  # parses only; no request is made
    except ValueError:
        raise ConfigurationError(f"{what} for {where} is malformed") from None
    pairs = dict(part.split("=", 1) for part in conn.split(";") if "=" in part)
    key = next((v for k, v in pairs.items() if k.strip().lower() == "accountkey"), None)
    if key is not None and not _is_base64(key):
        raise ConfigurationError(f"{what} for {where} has an AccountKey that is not base64")


def _account_name(url: str, where: str, *, needed: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"option 'account_url' for {where} must be an http(s) URL such as "
                                 "https://ACCOUNT.blob.core.windows.net")
    if parts.query:  # never echoed: a query here is most likely a SAS
        raise ConfigurationError(f"option 'account_url' for {where} must not carry a query; give a SAS as "
                                 "'sas_token'")
    if ".blob." in parts.hostname:
        return parts.hostname.split(".")[0]
    name = parts.path.strip("/").split("/")[0]  # emulators: http://host:port/ACCOUNT
    if needed and not name:
        raise ConfigurationError(f"option 'account_url' for {where} names no account: use "
                                 "https://ACCOUNT.blob.core.windows.net or http://host:port/ACCOUNT")
    return name


def _require_azure_identity(url: str, where: str) -> None:
    if urlsplit(url).scheme != "https":
        raise ConfigurationError(f"Azure AD credentials need an https 'account_url' for {where}; for an "
                                 "emulator give account_key, sas_token or connection_string")
    try:
        import azure.identity  # noqa: F401
    except ImportError:
        raise ConfigurationError(f"no credential for {where}: install azure-identity or give "
                                 "account_key/sas_token/connection_string") from None


def _check_tags(tags: Mapping[str, str], where: str) -> None:
    if len(tags) > 10:
        raise ConfigurationError(f"option 'tags' for {where} has {len(tags)} tags; Azure allows 10")
    for name, value in tags.items():
        if not (1 <= len(name) <= 128 and len(value) <= 256 and _TAG_TEXT.match(name) and _TAG_TEXT.match(value)):
            raise ConfigurationError(f"option 'tags' for {where}: tag {name!r} is not valid on Azure (names "
                                     "1-128, values 0-256 characters of letters, digits, space and +-./:=_)")
