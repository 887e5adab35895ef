"""An error that says the event log or the database is out of reach is told apart from a
bug (a 503 to come back later, not a 500), wherever it is in the chain of causes."""

from __future__ import annotations

import asyncpg
import nats.errors
import nats.js.errors
import pytest
import sqlalchemy.exc

from genrail_runtime.dependencies import readiness, unavailable


def caused_by(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as raised:
        return raised


@pytest.mark.parametrize("error, what", [
    (nats.errors.TimeoutError(), "the event log"),
    (nats.errors.NoRespondersError(), "the event log"),
    (nats.errors.ConnectionClosedError(), "the event log"),
    (nats.js.errors.APIError(code=503, description="JetStream system temporarily unavailable"), "the event log"),
    (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")), "the database"),
    (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), "the database"),
    (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), "the database"),
    (ConnectionRefusedError(111, "Connection refused"), "a server it depends on"),
    (caused_by(RuntimeError("while loading the job"), nats.errors.TimeoutError()), "the event log"),
])
def test_unreachable_dependencies_are_named(error, what):
    assert unavailable(error) == what


@pytest.mark.parametrize("error", [
    ValueError("a bug"), KeyError("user_id"),
    sqlalchemy.exc.ProgrammingError("SELECT nonsense", {}, Exception("syntax error")),
    nats.js.errors.APIError(code=400, description="bad request"),
])
def test_bugs_are_not_taken_for_an_outage(error):
    assert unavailable(error) is None


async def test_readiness_reports_each_dependency_within_its_time():
    import asyncio

    async def fine() -> None:
        return None

    async def hangs() -> None:
        await asyncio.sleep(10)

    async def refuses() -> None:
        raise ConnectionRefusedError("refused")

    report = await readiness({"a": fine, "b": hangs, "c": refuses}, timeout_s=0.1)
    assert report == {"a": "ok", "b": "no answer within 0.1s", "c": "ConnectionRefusedError: refused"}
