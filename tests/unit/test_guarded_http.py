"""The guarded fetcher: every spelling of an internal address is refused before anything
connects, on every redirect hop, and only what is explicitly allowed gets through."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from genrail_runtime.guarded_http import AddressNotAllowed, FetchPolicy, guarded_client, is_public

INTERNAL = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
            "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
            "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe"]
PUBLIC = ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allow_entries_are_networks_or_one_address_and_port() -> None:
    policy = FetchPolicy.allowing(["127.0.0.2/32", " 127.0.0.1:8003", "[::1]:9000", ""])
    loopback, second, v6 = (ipaddress.ip_address(a) for a in ("127.0.0.1", "127.0.0.2", "::1"))
    assert policy.allows(second, 1) and policy.allows(loopback, 8003) and policy.allows(v6, 9000)
    assert not policy.allows(loopback, 8004) and not policy.allows(v6, 9001)
    assert not FetchPolicy().allows(loopback, 8003)


class Listener:
    """A loopback TCP server that counts connections and answers one fixed HTTP response."""

    def __init__(self, host: str, response: bytes):
        self.host, self.response, self.connections = host, response, 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.response)
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\ninternal"


@pytest.fixture
async def internal() -> AsyncIterator[Listener]:
    async with Listener("127.0.0.1", OK) as listener:
        yield listener


@pytest.mark.parametrize("spelling", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433", "0x7f000001",
                                      "127.1", "0177.0.0.1", "0"])
async def test_every_spelling_of_loopback_is_refused_before_connecting(internal: Listener, spelling: str) -> None:
    async with guarded_client(FetchPolicy()) as client:
        with pytest.raises((AddressNotAllowed, httpx.InvalidURL)) as refused:  # httpx refuses octal itself
            await client.get(f"http://{spelling}:{internal.port}/admin")
    assert internal.connections == 0
    assert str(internal.port) not in str(refused.value)  # nothing about what listens there


async def test_a_redirect_to_an_internal_address_is_refused_at_that_hop(internal: Listener) -> None:
    redirect = f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{internal.port}/\r\nContent-Length: 0\r\n\r\n"
    async with Listener("127.0.0.2", redirect.encode()) as site:
        async with guarded_client(FetchPolicy.allowing(["127.0.0.2/32"])) as client:
            with pytest.raises(AddressNotAllowed):
                await client.get(f"http://127.0.0.2:{site.port}/go", follow_redirects=True)
    assert site.connections == 1 and internal.connections == 0


async def test_an_explicitly_allowed_endpoint_is_fetched_with_its_name_kept(internal: Listener) -> None:
    async with guarded_client(FetchPolicy.allowing([f"127.0.0.1:{internal.port}"])) as client:
        response = await client.get(f"http://localhost:{internal.port}/ok")
    assert response.text == "internal" and response.request.headers["host"] == f"localhost:{internal.port}"


async def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    async with guarded_client(FetchPolicy()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://no-such-host.invalid/")
