"""Slow readers cannot take the API from everyone else: 60 ZIP downloads that read nothing
stay open (more than the API's 40 database connections), and another user's job list still
answers in well under a second, because a download lets go of its connection before it
streams. The API here allows 100 downloads per user so that all 60 really stream; with the
default cap of 2 the other 58 would be 429s."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from PIL import Image

from tests.helpers import api_process, grant, register, wait_until

pytestmark = pytest.mark.e2e
SLOW_READERS = 60


def noise_png(side: int) -> bytes:
    import io

    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
    return out.getvalue()


async def slow_reader(url: str, path: str, api_key: str) -> socket.socket:
    """A download whose client reads its answer's first bytes and then nothing more, with a
    tiny receive window, so the server cannot finish sending."""
    where = urlparse(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (where.hostname, where.port))
    request = f"GET {path} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {api_key}\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    head = await asyncio.wait_for(loop.sock_recv(sock, 512), timeout=30)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sock


async def test_sixty_slow_downloads_leave_other_users_reads_fast(stack, api, log):
    owner, other = await register(api), await register(api)
    await grant(log, owner, 10)
    keys = []
    for _ in range(2):  # two incompressible images: a ZIP far larger than the sockets' buffers
        answer = await api.post("/api/uploads", headers=owner.headers,
                                files={"file": ("noise.png", noise_png(1100), "image/png")})
        assert answer.status_code == 201, answer.text
        keys.append(answer.json()["key"])
    created = await api.post("/api/batches", headers=owner.headers, json={"prompt": "sepia", "image_keys": keys})
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]

    async def finished() -> bool:
        return (await api.get(f"/api/batches/{batch_id}", headers=owner.headers)).json()["status"] != "processing"

    await wait_until(finished, timeout_s=90, interval_s=0.2)
    assert (await api.post("/api/generate/copy", headers=other.headers,
                           json={"product_name": "Trailblazer 2"})).status_code == 202

    proc, url = await api_process(stack, {"MAX_DOWNLOADS_PER_USER": "100"})
    readers: list[socket.socket] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            whole = await client.get(f"/api/batches/{batch_id}/download", headers=owner.headers)
            assert whole.status_code == 200 and len(whole.content) > 6_000_000, len(whole.content)
            readers = list(await asyncio.gather(*(slow_reader(url, f"/api/batches/{batch_id}/download",
                                                              owner.api_key) for _ in range(SLOW_READERS))))
            slowest = 0.0
            for _ in range(5):
                started = time.perf_counter()
                listed = await client.get("/api/jobs", headers=other.headers)
                slowest = max(slowest, time.perf_counter() - started)
                assert listed.status_code == 200 and len(listed.json()["items"]) == 1
            assert slowest < 1.0, f"another user's job list took {slowest:.2f} s behind {SLOW_READERS} slow downloads"
            # The downloads were really still open: none could have been sent whole yet.
            assert all(reader.fileno() != -1 for reader in readers)
    finally:
        for reader in readers:
            reader.close()
        proc.terminate()
        proc.wait(timeout=30)
