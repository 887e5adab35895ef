"""The CRUD design's API process: `POST /api/generate/copy` is one SQL statement (authenticate,
debit if the balance covers the cost, insert the job and its ledger row) and one Celery publish.

    python -m bench.crud.api --data DIR     (configuration in the environment, see below)

CRUD_DATABASE_DSN  postgresql://user@host:port/db   CRUD_BROKER_URL  redis://host:port/0
CRUD_HOST, CRUD_PORT                                 CRUD_PUBLISH     thread (default) | inline
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Literal

import asyncpg
import uvicorn
from fastapi import FastAPI, Header
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from .celeryapp import COPY_TASK, app as celery
from .schema import CREATE_JOB, FAIL_AND_REFUND

COPY_COST = 1  # genrail's default COST_COPY
PUBLISH_THREADS = int(celery.conf.broker_pool_limit)
# The refund, with asyncpg's placeholders, for a job whose task could not be published.
UNPUBLISHED_REFUND = FAIL_AND_REFUND % ("$1::text", "$2::uuid")


class CopyRequest(BaseModel):
    """The same fields and limits as genrail's CopyRequest (no idempotency key here)."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    product_name: str = Field(min_length=1, max_length=200)
    product_description: str = Field("", max_length=5000)
    tone: Literal["professional", "playful", "bold", "luxury", "friendly"] = "professional"
    length: Literal["short", "medium", "long"] = "medium"


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def publish(job_id: str, job_input: dict) -> None:
    """One Celery publish through the app's producer pool (kombu ProducerPool, at most
    broker_pool_limit connections, each held by one thread at a time). Empty argsrepr and
    kwargsrepr: Celery otherwise saferepr()s the arguments into every message for monitors
    we do not run, about a sixth of a publish's CPU here."""
    celery.send_task(COPY_TASK, args=(job_id, job_input), argsrepr="", kwargsrepr="")


def create_app() -> FastAPI:
    dsn = os.environ["CRUD_DATABASE_DSN"]
    inline = os.environ.get("CRUD_PUBLISH", "thread") == "inline"
    # Publishing is a blocking socket write + read through kombu/redis-py, so it runs on a
    # small thread pool of its own, one thread per pooled producer: the event loop never
    # waits on Redis, and no thread ever waits for a producer. The executor is ours, not
    # asyncio's default one, so its size matches the producer pool. (A hand-written async
    # LPUSH of Celery's message format would skip the thread hop, but then it is no longer
    # Celery's producer; `CRUD_PUBLISH=inline` measures the blocking call in the loop.)
    executor = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="celery-publish")
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # reset=no_reset: asyncpg otherwise sends RESET ALL, UNLISTEN *, CLOSE ALL... on every
        # release, a round trip per request; every statement here is a single autocommit one
        # that leaves no session state behind.
        state["pool"] = await asyncpg.create_pool(dsn, min_size=10, max_size=10, reset=no_reset)
        # Open the producer pool's connections now rather than on the first requests.
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(executor, _warm_producer) for _ in range(PUBLISH_THREADS)))
        yield
        await state["pool"].close()
        executor.shutdown(wait=True)

    api = FastAPI(title="CRUD peer", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/api/generate/copy", status_code=202)
    async def generate_copy(body: CopyRequest, authorization: str | None = Header(None)) -> Response:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return _json(401, {"detail": "missing API key: send 'Authorization: Bearer <api_key>'"})
        key_hash = hashlib.sha256(key.strip().encode()).hexdigest()
        job_id = uuid.uuid4()
        job_input = body.model_dump()
        row = await state["pool"].fetchrow(CREATE_JOB, key_hash, COPY_COST, job_id, "copy", json.dumps(job_input))
        if row is None:
            return _json(401, {"detail": "unknown API key"})
        if row["balance"] is None:
            return _json(402, {"detail": "not enough credits", "cost": COPY_COST})
        try:
            if inline:
                publish(str(job_id), job_input)
            else:
                await asyncio.get_running_loop().run_in_executor(executor, publish, str(job_id), job_input)
        except Exception as e:  # the broker is away: give the credit back rather than strand the job
            await state["pool"].execute(UNPUBLISHED_REFUND, f"not queued: {type(e).__name__}", job_id)
            return _json(503, {"detail": "the job queue is unavailable; nothing was charged"})
        return _json(202, {"job_id": str(job_id), "status": "queued"})

    return api


async def no_reset(_conn: asyncpg.Connection) -> None:
    pass


def _warm_producer() -> None:
    with celery.producer_pool.acquire(block=True) as producer:
        producer.connection.ensure_connection(max_retries=3)


def main() -> None:
    uvicorn.run(create_app(), host=os.environ.get("CRUD_HOST", "127.0.0.1"), port=int(os.environ["CRUD_PORT"]),
                loop="uvloop", http="httptools", access_log=False, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()  # `--data DIR` only marks the command line as this stack's; uvicorn reads the env
