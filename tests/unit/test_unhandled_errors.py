"""An unexpected error in a route is a JSON 500 on a connection that stays open: a client
calling on keep-alive does not lose its next request with it."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from genrail_runtime.unhandled import AnswerUnhandledErrors
from tests.servers import serve_in_thread


def app() -> FastAPI:
    made = FastAPI()

    @made.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("a bug")

    @made.get("/fine")
    async def fine() -> dict:
        return {"ok": True}

    made.add_middleware(AnswerUnhandledErrors)
    return made


def local_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("socket").getsockname()[1]


def test_an_unexpected_error_is_a_json_500_and_the_connection_serves_the_next_request() -> None:
    with serve_in_thread(app()) as url, httpx.Client(base_url=url, limits=httpx.Limits(max_connections=1)) as client:
        failed = client.get("/boom")
        assert failed.status_code == 500 and "internal error" in failed.json()["detail"]
        assert failed.headers.get("connection", "").lower() != "close"
        after = client.get("/fine")
        assert after.json() == {"ok": True} and local_port(after) == local_port(failed)  # the same connection
