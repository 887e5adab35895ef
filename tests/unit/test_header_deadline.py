"""Slow clients (slowloris) cannot hold the HTTP services' connections: the headers of a
request must be in within the deadline, on a fresh connection and on a kept-alive one,
while a client that sends its request in time is served as usual."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from genrail_cli.embedded import free_port
from genrail_runtime.http_server import header_deadline_protocol

DEADLINE_S = 0.5


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server():
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=header_deadline_protocol(DEADLINE_S),
                            log_config=None, access_log=False, timeout_keep_alive=30, lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.01)
    yield port
    running.should_exit = True
    thread.join(timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True  # EOF: the server closed it
    except TimeoutError:
        return False


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(("127.0.0.1", server)) as sock:
        assert closed_within(sock, DEADLINE_S * 6)


def test_headers_dripped_a_byte_at_a_time_are_cut_off(server):
    with socket.create_connection(("127.0.0.1", server)) as sock:
        started = time.monotonic()
        with pytest.raises(OSError):
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                sock.send(bytes([byte]))
                time.sleep(0.05)
        assert time.monotonic() - started < DEADLINE_S * 6


def test_a_kept_alive_connection_serves_requests_sent_in_time_and_guards_the_next(server):
    with socket.create_connection(("127.0.0.1", server)) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(DEADLINE_S * 1.5)  # idle between requests is the keep-alive timeout's business
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... but a request begun must finish its headers
        assert closed_within(sock, DEADLINE_S * 6)
