"""Serving an ASGI app for a test: uvicorn in a background thread, on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve_in_thread(app: Any = None, *, factory: Callable[[str], Any] | None = None,
                    start_timeout_s: float = 10, host: str = "127.0.0.1") -> Iterator[str]:
    """Yields the server's base URL. Give `app`, or a `factory` that builds the app from
    that URL (for apps that must know where they are served: URLs they hand out). `host`:
    tests.sites.PUBLIC_STAND_IN for a server the stack's guarded fetcher may reach."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    url = f"http://{host}:{sock.getsockname()[1]}"
    if factory is not None:
        app = factory(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
