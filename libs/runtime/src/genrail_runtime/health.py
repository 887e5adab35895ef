"""`/healthz` (the process is alive: restart it if not) and `/readyz` (it can serve: its
event log and database answer; send it traffic only then) for the HTTP services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .dependencies import readiness

Checks = Callable[[Request], dict[str, Callable[[], Awaitable[object]]]]


class Ready(BaseModel):
    status: str = Field(examples=["ready"], description="`ready`, or `unavailable` (answered with 503)")
    checks: dict[str, str] = Field(examples=[{"event log": "ok", "database": "ok"}],
                                   description="Each dependency: `ok`, or why not")


def add_health_routes(app: FastAPI, checks: Checks) -> None:
    @app.get("/healthz", tags=["health"], summary="The process is alive (liveness)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=Ready, summary="The process can serve (readiness)",
             responses={503: {"model": Ready, "description": "A dependency does not answer: send traffic elsewhere"}})
    async def readyz(request: Request) -> JSONResponse:
        results = await readiness(checks(request))
        ready = all(state == "ok" for state in results.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": results},
                            status_code=200 if ready else 503, headers={} if ready else {"Retry-After": "2"})
