"""A lean HTTP/1.1 keep-alive load generator, run in its own process so that the client's
own cost stays small and off the services' event loops (httpx costs several ms per request
under concurrency, which on 2 shared cores would dominate what we measure)."""

from __future__ import annotations

import asyncio
import json
import time


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        self.writer.write("\r\n".join(head).encode() + body)
        assert self.reader is not None
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def run_clients(host: str, port: int, api_keys: list[str], per_client: int, body: dict) -> dict:
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(key: str) -> None:
        conn = Connection(host, port)
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(per_client):
            t0 = time.perf_counter()
            try:
                status = await conn.post("/api/generate/copy", payload, headers)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                status, conn = 0, Connection(host, port)  # 0: the server dropped the connection
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in api_keys))
    return {"latencies": latencies, "elapsed": time.perf_counter() - start, "statuses": statuses,
            "started_at": start}


def run_in_process(host: str, port: int, api_keys: list[str], per_client: int, body: dict) -> dict:
    """Entry point for a child process (multiprocessing); wall-clock start for the caller."""
    wall_start = time.time()
    result = asyncio.run(run_clients(host, port, api_keys, per_client, body))
    result["wall_start"] = wall_start
    return result
