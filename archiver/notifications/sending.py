"""One signed POST of an outbox message to its configured endpoint.

Signing is the `standardwebhooks` library's (webhook-id, webhook-timestamp, webhook-signature: v1 =
HMAC-SHA256 of "id.timestamp.body" with the endpoint's secret), so receivers verify with any
Standard Webhooks library. The webhook-id is the message's own, the same on every attempt; the
timestamp is the attempt's (receivers refuse old ones).

The target comes from the configuration only, and passes the same address policy as [source]
downloads (archiver.copy.source.ssrf): every address the name resolves to must be public unless the
endpoint allows private addresses or lists the network; the POST goes to the checked address (Host
and TLS SNI keep the name), so DNS cannot change between check and connect. Redirects are not
followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from archiver.copy.source.ssrf import (
    Refused,
    Resolver,
    Unresolvable,
    check_target,
    host_name,
    parse_ip,
    parse_networks,
    redact,
    resolve_checked,
    system_resolver,
)
from archiver.settings.notifications import Notification

USER_AGENT = "videosdk-archiver-notifications"


class SendError(Exception):
    """The attempt failed; ``code`` says how (secret, refused, unresolvable, unreachable, http_status),
    ``status`` is the endpoint's HTTP status when it answered. The message names no secret."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class Sent:
    status: int


def signed_headers(secret: str, webhook_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``; raises SendError("secret") for a bad secret."""
    moment = now or datetime.now(UTC)
    try:
        signature = Webhook(secret).sign(webhook_id, moment, body)
    except Exception:  # binascii, EmptyWebhookSecretError...: never echo the secret
        raise SendError("secret", "the signing secret is not a Standard Webhooks secret (whsec_ + base64)") from None
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature}


def read_secret(endpoint: Notification, environ: Mapping[str, str] | None = None) -> str:
    secret = (os.environ if environ is None else environ).get(endpoint.secret_env)
    if not secret:
        raise SendError("secret", f"{endpoint.secret_env} is not set in this process: set it to the endpoint's "
                                  "signing secret (whsec_...)")
    return secret


def send(client: httpx.Client, endpoint: Notification, webhook_id: str, body: str, *,
         resolver: Resolver = system_resolver, environ: Mapping[str, str] | None = None) -> Sent:
    """POST ``body`` signed; a 2xx answer is Sent, anything else raises SendError."""
    headers = {**signed_headers(read_secret(endpoint, environ), webhook_id, body),
               "content-type": "application/json", "user-agent": USER_AGENT}
    url = httpx.URL(endpoint.url)
    where = redact(url)
    host = host_name(url)
    try:
        check_target(url, (host,), endpoint.allow_http)  # the host is configured: scheme and credentials
        port = url.port or (443 if url.scheme == "https" else 80)
        if endpoint.allow_private_addresses:
            addresses = [host] if parse_ip(host) else list(resolver(host, port))
        else:
            addresses = resolve_checked(host, port, resolver, parse_networks(endpoint.allowed_networks))
    except Refused as exc:
        raise SendError("refused", f"{where}: refused: {exc} (allow it with allow_private_addresses or "
                                   "allowed_networks on this [[notifications]] endpoint)") from None
    except (Unresolvable, OSError) as exc:
        raise SendError("unresolvable", f"{where}: {exc}") from None
    host_header = (f"[{host}]" if ":" in host else host) + (f":{url.port}" if url.port else "")
    extensions = {} if parse_ip(host) is not None else {"sni_hostname": host}
    error: Exception | None = None
    for address in addresses:
        request = client.build_request("POST", url.copy_with(host=address, fragment=None), content=body.encode(),
                                       headers={**headers, "Host": host_header}, extensions=extensions,
                                       timeout=endpoint.timeout)
        try:
            response = client.send(request, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            error = exc  # the next checked address, as for downloads
            continue
        except httpx.TransportError as exc:
            raise SendError("unreachable", f"{where}: {type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return Sent(response.status_code)
        raise SendError("http_status", f"{where} answered {response.status_code}", response.status_code)
    raise SendError("unreachable", f"{where}: {type(error).__name__ if error else 'no address'}")
