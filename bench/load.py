"""A lean HTTP/1.1 keep-alive load generator, run in its own process so that the client's
own cost stays small and off the services' event loops (httpx costs several ms per request
under concurrency, which on 2 shared cores would dominate what we measure).

Two loads, the same for every system measured: closed loop (`run_clients`: each client sends
its next request when the last one is answered) and open loop (`run_open_loop`: requests at
a constant offered rate, latency from each one's planned send time)."""

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
        if not status_line:
            raise ConnectionResetError("the server closed the connection before answering")
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


async def run_open_loop(host: str, port: int, api_keys: list[str], rate: float, seconds: float, body: dict,
                        max_connections: int = 4000, late_after_s: float = 0.005) -> dict:
    """Open loop: request i is planned for start + i/rate whatever the answers do, sent on
    any idle connection (a new one is opened when all are busy), its key api_keys[i % n].
    Latency counts from the *planned* time, so a slow answer or a late send is charged to
    the request it delayed (no coordinated omission). A send more than `late_after_s` behind
    plan is a late start (the generator's own lag); `max_connections` bounds the sockets."""
    payload = json.dumps(body).encode()
    headers = [{"Authorization": f"Bearer {key}"} for key in api_keys]
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    idle: list[Connection] = []
    freed = asyncio.Event()
    counts = {"opened": 0, "late": 0, "waited_for_connection": 0, "max_lag": 0.0}
    done_at = [0.0]

    async def one(i: int, planned: float, conn: Connection) -> None:
        try:
            status = await conn.post("/api/generate/copy", payload, headers[i % len(headers)])
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            status = 0  # the server dropped the connection: a fresh one replaces it
            if conn.writer is not None:
                conn.writer.close()
            conn = Connection(host, port)
        now = time.perf_counter()
        latencies.append(now - planned)
        statuses[status] = statuses.get(status, 0) + 1
        done_at[0] = max(done_at[0], now)
        idle.append(conn)
        freed.set()

    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(total):
        planned = start + i / rate
        delay = planned - time.perf_counter()
        await asyncio.sleep(max(0.0, delay))  # 0: past due, send now (but let answers be read)
        if not idle and counts["opened"] < max_connections:
            idle.append(Connection(host, port))  # it connects on its first send, in the task
            counts["opened"] += 1
        while not idle:
            counts["waited_for_connection"] += 1
            freed.clear()
            await freed.wait()
        lag = time.perf_counter() - planned
        if lag > late_after_s:
            counts["late"] += 1
        counts["max_lag"] = max(counts["max_lag"], lag)
        tasks.append(asyncio.create_task(one(i, planned, idle.pop())))
    await asyncio.gather(*tasks)
    for conn in idle:
        if conn.writer is not None:
            conn.writer.close()
    return {"latencies": latencies, "statuses": statuses, "offered": total, "rate": rate, "seconds": seconds,
            "elapsed": done_at[0] - start, **counts}


def run_open_in_process(host: str, port: int, api_keys: list[str], rate: float, seconds: float, body: dict) -> dict:
    """Entry point for a child process (multiprocessing)."""
    return asyncio.run(run_open_loop(host, port, api_keys, rate, seconds, body))
