"""Server-side fetches of URLs someone else chose (a page to scrape, a provider's output),
guarded against reaching inside the network (SSRF).

`GuardedTransport` is an httpx transport: for every request, and so for every redirect hop,
it resolves the host once, refuses if any address is not a public unicast one (loopback,
private, link-local, shared, multicast, reserved, unspecified, or an IPv6 address that
embeds one: IPv4-mapped, 6to4, Teredo), and then connects to the very address it checked,
keeping the name for the Host header and TLS (no second lookup for a rebinding DNS to
answer differently). Every spelling of an address (`2130706433`, `0x7f000001`, `0`,
`[::ffff:127.0.0.1]`) reaches the check as the address the resolver makes of it.

A refusal says only that the address is not public: it never depends on what listens
there, so it cannot be used to scan ports. Development and tests allow specific addresses
by explicit configuration (`FETCH_ALLOW`): a network (`127.0.0.2/32`) or one address and
port (`127.0.0.1:8003`); nothing is allowed by default.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressNotAllowed(httpx.ConnectError):
    """The host resolves to an address this process does not fetch from."""


def embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public(ip: Address) -> bool:
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback
                                 or ip.is_link_local or ip.is_private)


@dataclass(frozen=True)
class FetchPolicy:
    """Which addresses may be fetched from: public ones, plus the explicit exceptions."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    endpoints: frozenset[tuple[Address, int]] = frozenset()

    @classmethod
    def allowing(cls, entries: Iterable[str]) -> FetchPolicy:
        """From `FETCH_ALLOW`'s entries: `10.0.0.0/8`, `127.0.0.2`, `127.0.0.1:8003`, `[::1]:8003`."""
        networks, endpoints = [], set()
        for raw in (e.strip() for e in entries):
            if not raw:
                continue
            host, sep, port = raw.rpartition(":") if (raw.startswith("[") or raw.count(":") == 1) else ("", "", "")
            if sep and port.isdigit():
                endpoints.add((ipaddress.ip_address(host.strip("[]")), int(port)))
            else:
                networks.append(ipaddress.ip_network(raw, strict=False))
        return cls(tuple(networks), frozenset(endpoints))

    def allows(self, ip: Address, port: int) -> bool:
        if (ip, port) in self.endpoints or any(ip in net for net in self.networks if net.version == ip.version):
            return True
        return is_public(ip)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks the addresses of every request's host (see the module) before connecting to
    the one it checked. Connections are not kept: each request's check stands alone."""

    def __init__(self, policy: FetchPolicy, *, max_connections: int = 100) -> None:
        self.policy = policy
        self._inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        ip = await self._checked_address(host, port)
        request.url = request.url.copy_with(host=str(ip))
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def _checked_address(self, host: str, port: int) -> Address:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpx.ConnectError(f"{host} could not be resolved") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
        if not addresses or not all(self.policy.allows(ip, port) for ip in addresses):
            raise AddressNotAllowed(f"{host} is not a public address")
        return addresses[0]

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(policy: FetchPolicy, *, timeout_s: float = 30.0, max_connections: int = 100) -> httpx.AsyncClient:
    """An httpx client for fetching URLs someone else chose."""
    # A client given a transport ignores its own `limits`: the transport holds them.
    return httpx.AsyncClient(transport=GuardedTransport(policy, max_connections=max_connections),
                             timeout=httpx.Timeout(timeout_s, connect=5.0))
