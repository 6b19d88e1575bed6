"""Address guard for URLs that arrive in untrusted request bodies (server-side request forgery).

The webhook that names a recording is unauthenticated input: without this guard anyone who can
reach the endpoint could make the worker fetch http://169.254.169.254/ (cloud credentials) or an
internal service and archive the answer. The checks are split in two:

* ``check_target`` looks only at the URL (scheme, credentials, host allow-list), no DNS;
* ``resolve_checked`` resolves the host and refuses if ANY address is non-public, returning the
  checked addresses so the caller connects to one of those and never resolves again (a DNS answer
  that changes between check and connect, "DNS rebinding", then cannot redirect the connection).

URLs are parsed with httpx, the same parser that builds the request, so the guard and the HTTP
client cannot disagree about which host a URL names.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence

import httpx

from archiver.observability.redaction import redact_source as redact

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> IP address strings. Injectable so tests can map names without real DNS.
Resolver = Callable[[str, int], Sequence[str]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT: internal to the provider


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class Refused(ValueError):
    """The URL or one of its addresses is not allowed; the message says why."""


class Unresolvable(LookupError):
    """DNS gave no usable answer (may well be temporary)."""


class RedirectError(Exception):
    """A redirect that cannot be followed; ``code`` is "redirects", "http_status" or "bad_url"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(Exception):
    """No checked address answered; the message is the redacted URL, ``__cause__`` the httpx error."""


def host_name(url: httpx.URL) -> str:
    """The host as matched and verified: IDNA-encoded, lower case, without a trailing dot."""
    return url.raw_host.decode("ascii").lower().rstrip(".")


def parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Exact match, or ``*.suffix`` matching any subdomain (not the bare suffix itself)."""
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if parse_ip(host) is None and host.endswith(pattern[1:]):
                return True
        elif parse_ip(pattern) is not None and parse_ip(host) is not None:
            # compare addresses, not spellings: "::1" and "0:0::1" are the same host
            if parse_ip(pattern) == parse_ip(host):
                return True
        elif host == pattern:
            return True
    return False


def check_target(url: httpx.URL, allow_hosts: Sequence[str], allow_http: bool) -> None:
    """Scheme, credentials and host allow-list; raises Refused. No DNS."""
    if url.scheme not in ("https", "http"):
        raise Refused(f"scheme {url.scheme or '(none)'!r} is not allowed")
    if url.scheme == "http" and not allow_http:
        raise Refused("plain http is not allowed")
    if url.userinfo:
        # credentials in a webhook URL are never legitimate and would be sent to whoever answers
        raise Refused("credentials in the URL are not allowed")
    host = host_name(url)
    if not host:
        raise Refused("the URL has no host")
    if not host_allowed(host, allow_hosts):
        raise Refused(f"host {host!r} is not in the allowed hosts")


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def address_problem(ip: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``ip`` must not be contacted, or None if it is public (or explicitly exempted)."""
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 wrapped in IPv6 reaches the IPv4 host: judge the embedded address instead, so
        # ::ffff:127.0.0.1 and 64:ff9b::a9fe:a9fe are refused but NAT64 to a public CDN works.
        if ip.ipv4_mapped is not None:
            return address_problem(ip.ipv4_mapped, allowed)
        if ip in _NAT64:
            return address_problem(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), allowed)
        if ip.sixtofour is not None:
            problem = address_problem(ip.sixtofour, allowed)
            if problem:
                return problem
        if ip.is_site_local:
            return "site-local"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (100.64.0.0/10)"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "not globally routable"),
    )
    return next((why for bad, why in checks if bad), None)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # unique, in resolver order


def resolve_checked(host: str, port: int, resolver: Resolver, allowed: Sequence[IPNetwork]) -> list[str]:
    """Resolve ``host`` and return its addresses if every one of them is allowed; raises Refused.

    All addresses are checked, not only the one used: a name answering with a public and a private
    address would otherwise be a coin toss away from reaching the private one.
    """
    literal = parse_ip(host)
    if literal is not None:
        addresses = [str(literal)]  # no resolver: an IP literal names itself
    else:
        try:
            addresses = list(resolver(host, port))
        except (OSError, UnicodeError) as exc:
            raise Unresolvable(f"cannot resolve {host!r}: {exc}") from exc
        if not addresses:
            raise Unresolvable(f"{host!r} resolved to no addresses")
    for address in addresses:
        ip = parse_ip(address)
        if ip is None:
            raise Refused(f"{host!r} resolved to {address!r}, which is not an IP address")
        problem = address_problem(ip, allowed)
        if problem:
            raise Refused(f"{host!r} resolves to {ip} ({problem})")
    return addresses


class GuardedClient:
    """GET that follows redirects by hand; every hop is checked and sent to the checked address.

    The request URL carries the checked IP, so nothing resolves the name again between check and
    connect. ``Host`` keeps the name (virtual hosting) and the ``sni_hostname`` extension makes
    httpcore hand the name to ssl as ``server_hostname``, so TLS sends SNI for, and verifies the
    certificate against, the name rather than the IP.
    """

    def __init__(self, client: httpx.Client, *, allow_hosts: Sequence[str], allow_http: bool,
                 networks: Sequence[IPNetwork], resolver: Resolver, max_redirects: int,
                 timeout: httpx.Timeout) -> None:
        self.client = client
        self.allow_hosts, self.allow_http, self.networks = allow_hosts, allow_http, networks
        self.resolver, self.max_redirects, self.timeout = resolver, max_redirects, timeout

    def get(self, url: httpx.URL, headers: Mapping[str, str]) -> tuple[httpx.Response, httpx.URL]:
        """The first non-redirect response (streaming, caller closes it) and the URL that gave it."""
        current = url
        for _ in range(self.max_redirects + 1):
            try:
                check_target(current, self.allow_hosts, self.allow_http)
            except Refused as exc:
                raise Refused(f"{redact(current)}: refused: {exc}") from None
            response = self._send(current, headers)
            if response.status_code not in REDIRECT_STATUSES:
                return response, current
            response.close()
            location = response.headers.get("location")
            if not location:
                raise RedirectError("http_status", f"{redact(current)}: redirect without Location")
            try:
                current = current.join(location)
            except httpx.InvalidURL:
                raise RedirectError("bad_url", f"{redact(current)}: invalid redirect Location") from None
        raise RedirectError("redirects", f"{redact(url)}: more than {self.max_redirects} redirects")

    def _send(self, url: httpx.URL, headers: Mapping[str, str]) -> httpx.Response:
        where, host = redact(url), host_name(url)
        try:
            addresses = resolve_checked(host, url.port or (443 if url.scheme == "https" else 80),
                                        self.resolver, self.networks)
        except Refused as exc:
            raise Refused(f"{where}: refused: {exc}") from None
        except Unresolvable as exc:
            raise Unresolvable(f"{where}: {exc}") from None
        host_header = (f"[{host}]" if ":" in host else host) + (f":{url.port}" if url.port else "")
        extensions = {} if parse_ip(host) is not None else {"sni_hostname": host}
        error: httpx.TransportError | None = None
        for address in addresses:
            request = self.client.build_request(
                "GET", url.copy_with(host=address, fragment=None), timeout=self.timeout, extensions=extensions,
                headers={**headers, "Host": host_header, "Accept-Encoding": "identity"})
            try:
                return self.client.send(request, stream=True, follow_redirects=False)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = exc  # try the next checked address, as browsers do
            except httpx.TransportError as exc:
                raise Unreachable(where) from exc
        raise Unreachable(where) from error
