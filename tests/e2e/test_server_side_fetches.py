"""Server-side fetches as an attacker would aim them: a scrape of an internal address, in any
spelling or behind a public page's redirect, never connects there; the job fails with an
error that says nothing of what listens, and its credits come back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.helpers import register, wait_for_job
from tests.sites import PUBLIC_STAND_IN


class Internal:
    """An internal HTTP service on 127.0.0.1: it must never see a connection."""

    def __init__(self) -> None:
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 40\r\n\r\n"
                     b"<html><title>internal admin</title></html>")
        await writer.drain()
        writer.close()


async def balance_becomes(api, user, expected: int, timeout_s: float = 15) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if (await api.get("/api/credits", headers=user.headers)).json()["balance"] == expected:
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.fixture
async def internal() -> AsyncIterator[tuple[Internal, int]]:
    service = Internal()
    server = await asyncio.start_server(service._serve, "127.0.0.1", 0)
    yield service, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def redirector(internal) -> AsyncIterator[str]:
    """A 'public' page (on the stand-in address the test stack may fetch) redirecting inside."""
    _, port = internal

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/admin\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, PUBLIC_STAND_IN, 0)
    yield f"http://{PUBLIC_STAND_IN}:{server.sockets[0].getsockname()[1]}/product"
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("spelling", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433", "0x7f000001"])
async def test_a_scrape_of_an_internal_address_never_connects_and_is_refunded(api, internal, spelling) -> None:
    service, port = internal
    user = await register(api)
    answer = await api.post("/api/generate/scrape", headers=user.headers,
                            json={"url": f"http://{spelling}:{port}/admin"})
    assert answer.status_code == 202, answer.text
    job = await wait_for_job(api, user, answer.json()["id"], {"failed"})

    assert service.connections == 0
    assert "not a public address" in job["error"] and str(port) not in job["error"].split("/admin")[-1]
    assert await balance_becomes(api, user, 10)  # the signup grant, the scrape refunded


async def test_a_public_page_redirecting_inside_is_refused_at_the_redirect(api, internal, redirector) -> None:
    service, _ = internal
    user = await register(api)
    answer = await api.post("/api/generate/scrape", headers=user.headers, json={"url": redirector})
    job = await wait_for_job(api, user, answer.json()["id"], {"failed"})

    assert service.connections == 0 and "not a public address" in job["error"]


async def test_an_open_and_a_closed_internal_port_fail_alike(api, internal) -> None:
    _, open_port = internal
    user = await register(api)
    errors = []
    for port in (open_port, 9):  # 9: discard, closed here
        answer = await api.post("/api/generate/scrape", headers=user.headers,
                                json={"url": f"http://127.0.0.1:{port}/"})
        job = await wait_for_job(api, user, answer.json()["id"], {"failed"})
        errors.append(job["error"].replace(str(port), "<port>"))
    assert errors[0] == errors[1]
