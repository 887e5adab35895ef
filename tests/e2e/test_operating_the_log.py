"""Operating the log: replaying projections, auditing the log, dead letters and history,
driven through the `genrail` command as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import httpx
import pytest
import sqlalchemy as sa
from genrail_readmodels.registry import FACTORIES
from genrail_events import ledger
from genrail_events.jobs import JobType
from genrail_commands.accounts import load_account
from genrail_eventlog.consumers import DeadLetter, settle
from genrail_readmodels.db import make_engine
from genrail_eventlog.store import MSG_ID, EventStore, connect

from tests.conftest import new_stack
from tests.helpers import User, ledger_events, register, wait_for_job, wait_until

pytestmark = pytest.mark.e2e

COPY = {"product_name": "Trailblazer 2 hiking boots", "product_description": "Waterproof leather, Vibram sole.",
        "tone": "bold", "length": "short"}
LIVE_TABLES = [t for factory in FACTORIES for t in factory().tables]


def cli_env(stack) -> dict[str, str]:
    return {**os.environ, "NATS_URL": stack.nats_url, "DATABASE_URL": stack.database_url, "COLUMNS": "250",
            "PYTHONUNBUFFERED": "1"}


async def genrail(stack, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "genrail_cli.main", *args],
                                   env=cli_env(stack), capture_output=True, text=True, timeout=timeout_s)


async def answers(api: httpx.AsyncClient, users: list[User]) -> dict:
    """Everything the API answers these users from the projections (and the log)."""
    out = {}
    for user in users:
        jobs = (await api.get("/api/jobs?limit=200", headers=user.headers)).json()
        out[user.id] = {
            "credits": (await api.get("/api/credits", headers=user.headers)).json(),
            "transactions": (await api.get("/api/credits/transactions", headers=user.headers)).json(),
            "jobs": jobs,
            "details": [(await api.get(f"/api/jobs/{j['id']}", headers=user.headers)).json() for j in jobs["items"]],
        }
    return out


async def rows(database_url: str, users: list[User]) -> dict:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            ids = [u.id for u in users]
            return {table: [tuple(r) for r in await conn.execute(sa.text(
                        f"SELECT * FROM {table} WHERE user_id = ANY(CAST(:ids AS uuid[])) ORDER BY 1"), {"ids": ids})]
                    for table in ("users", "api_keys", "balances")}
    finally:
        await engine.dispose()


async def sql(database_url: str, statement: str):
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            return (await conn.execute(sa.text(statement))).all() if statement.lstrip().upper().startswith("SELECT") \
                else await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def customers(api, shop) -> list[User]:
    """Users with completed, canceled and refunded jobs, everything settled on the log and
    in the projections."""
    busy, idle, canceler = await register(api), await register(api), await register(api)
    done = [(await api.post("/api/generate/copy", json=COPY, headers=busy.headers)).json()["id"] for _ in range(3)]
    slow = (await api.post("/api/generate/scrape", json={"url": shop.url("/slow?s=2")},
                           headers=canceler.headers)).json()["id"]
    for job_id in done:
        await wait_for_job(api, busy, job_id, {"completed"})
    await wait_for_job(api, canceler, slow, {"processing"})
    assert (await api.post(f"/api/jobs/{slow}/cancel", headers=canceler.headers)).status_code == 200

    async def settled() -> bool:
        listed = (await api.get("/api/credits/transactions", headers=canceler.headers)).json()
        return any(t["kind"] == "refunded" for t in listed["items"])

    await wait_until(settled)
    await asyncio.sleep(3)  # the slow page answers; its late result is dropped
    return [busy, idle, canceler]


async def test_dropping_every_projection_and_replaying_gives_the_same_api_answers(stack, api, customers):
    before = await answers(api, customers), await rows(stack.database_url, customers)
    stack.kill("projector")
    stack.kill("ledger")
    try:
        await sql(stack.database_url, f"DROP TABLE {', '.join(LIVE_TABLES)} CASCADE")
        await sql(stack.database_url, "DELETE FROM projection_checkpoints")
        replayed = await genrail(stack, "replay")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "swapped in" in replayed.stdout and "events/s" in replayed.stdout
    finally:
        stack.start_service("projector")
        stack.start_service("ledger")
    assert (await answers(api, customers), await rows(stack.database_url, customers)) == before
    verified = await genrail(stack, "replay", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count("same as live") == len(FACTORIES)


async def test_a_replay_killed_halfway_leaves_the_live_tables_serving_and_can_run_again(stack, api, customers):
    busier = await register(api)  # enough events that a replay of one per transaction takes a while
    for job_id in [(await api.post("/api/generate/copy", json=COPY, headers=busier.headers)).json()["id"]
                   for _ in range(10)]:
        await wait_for_job(api, busier, job_id, {"completed"})
    customers = [*customers, busier]
    before = await answers(api, customers)
    [[live_rows]] = await sql(stack.database_url, "SELECT count(*) FROM jobs")
    replay = subprocess.Popen([sys.executable, "-m", "genrail_cli.main", "replay", "--projection", "jobs",
                               "--batch-size", "1"], env=cli_env(stack), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = await asyncio.to_thread(replay.stdout.readline)
        while line and not line.startswith("replay jobs:"):
            line = await asyncio.to_thread(replay.stdout.readline)
        assert line.startswith("replay jobs:"), "the replay printed no progress"
        replay.send_signal(signal.SIGKILL)
    finally:
        replay.kill()
        replay.wait(30)
        replay.stdout.close()
    assert replay.returncode == -signal.SIGKILL
    await asyncio.sleep(0.5)  # its rebuilding process notices it is orphaned and stops
    [[halfway]] = await sql(stack.database_url, "SELECT count(*) FROM jobs__shadow")  # left behind, not swapped
    await asyncio.sleep(0.5)
    assert (await sql(stack.database_url, "SELECT count(*) FROM jobs__shadow"))[0][0] == halfway <= live_rows
    assert await answers(api, customers) == before  # the live tables never stopped serving

    again = await genrail(stack, "replay", "--projection", "jobs")
    assert again.returncode == 0, again.stdout + again.stderr
    assert await sql(stack.database_url, "SELECT to_regclass('jobs__shadow') IS NULL") == [(True,)]
    assert await answers(api, customers) == before


async def test_the_audit_passes_on_the_log_the_tests_wrote(stack, customers):
    audited = await genrail(stack, "audit")
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "the log holds every invariant" in audited.stdout


async def test_a_dead_letter_is_listed_shown_refused_a_redrive_and_discarded_once(stack, api, log, shop):
    user = await register(api)
    job_id = (await api.post("/api/generate/scrape", json={"url": shop.url("/down")}, headers=user.headers)).json()["id"]
    failed = await wait_for_job(api, user, job_id, {"failed", "completed"}, timeout_s=60)
    assert failed["status"] == "failed"
    await wait_until(lambda: _refunded(log, user))
    dead_id = await wait_until(lambda: _dead_letter_id(stack, job_id))

    listed = await genrail(stack, "dlq", "list")
    assert listed.returncode == 0 and f"job.created.scrape.{job_id}" in listed.stdout and "503" in listed.stdout
    shown = await genrail(stack, "dlq", "show", str(dead_id))
    assert shown.returncode == 0, shown.stderr
    assert "JOBS/pipeline" in shown.stdout and "job now    failed" in shown.stdout and job_id in shown.stdout

    refused = await genrail(stack, "dlq", "redrive", str(dead_id))
    assert refused.returncode == 1 and "refunded" in refused.stdout and "retry" in refused.stdout
    assert len(await log.read(f"job.created.*.{job_id}")) == 1  # nothing republished

    discarded = await genrail(stack, "dlq", "discard", str(dead_id))
    assert discarded.returncode == 0 and f"dead letter {dead_id} discarded" in discarded.stdout
    assert f"job.created.scrape.{job_id}" not in (await genrail(stack, "dlq", "list")).stdout
    assert "discarded" in (await genrail(stack, "dlq", "list", "--all")).stdout
    for again in (("discard",), ("redrive",)):
        twice = await genrail(stack, "dlq", *again, str(dead_id))
        assert twice.returncode == 1 and "already discarded" in twice.stdout

    history = await genrail(stack, "events", "--job", job_id)
    assert history.returncode == 0, history.stderr
    for expected in ("job.created", "pending → processing", "processing → failed", "ledger.debited",
                     "ledger.refunded", "dead letter", f"dead letter {dead_id} discarded"):
        assert expected in history.stdout, expected
    assert history.stdout.index("ledger.debited") < history.stdout.index("ledger.refunded")
    mine = await genrail(stack, "events", "--user", user.id)
    assert mine.returncode == 0 and "user.registered" in mine.stdout and "granted 10" in mine.stdout
    assert "processing → failed" in mine.stdout


async def test_events_tail_follows_the_log_live(stack, api):
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "genrail_cli.main", "events", "tail", "--subject", "user.>", "--subject", "ledger.>",
        "--count", "2", env=cli_env(stack), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    said = await asyncio.wait_for(tail.stderr.readline(), 60)  # it has subscribed: what comes next, it sees
    assert said.startswith(b"following"), said
    user = await register(api)
    stdout, stderr = await asyncio.wait_for(tail.communicate(), 60)
    assert tail.returncode == 0, stderr
    assert f"user.registered.{user.id}".encode() in stdout and f"ledger.{user.id}.granted".encode() in stdout


async def _refunded(log, user: User) -> bool:
    return any(e.data.kind == "refunded" for e in await ledger_events(log, user.id))


async def _dead_letter_id(stack, job_id: str) -> int | None:
    listed = await genrail(stack, "dlq", "list")
    for line in listed.stdout.splitlines():
        if "job.created." in line and job_id in line:
            return int(line.strip("│ ").split()[0])
    return None


# --- on a stack of its own: what these tests write must not reach the shared log ----------

@pytest.fixture(scope="module")
def spare(tmp_path_factory):
    stack = new_stack(tmp_path_factory.mktemp("spare"))
    stack.nats_url = stack.database_url = None  # its own embedded servers, whatever NATS_URL says
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


async def test_a_redrive_republishes_a_pending_jobs_dead_letter_exactly_once(spare):
    """A job.created dead-lettered while its job was still pending (its worker gave up
    without failing it) is processed once it is redriven, and only once."""
    async with httpx.AsyncClient(base_url=spare.api_url, timeout=30) as api:
        user = await register(api)
        spare.kill("pipeline")
        job_id = (await api.post("/api/generate/copy", json=COPY, headers=user.headers)).json()["id"]
        nc = await connect(spare.nats_url, "tests-dead-letter")
        try:
            js = nc.jetstream()
            pipeline = await js.pull_subscribe_bind("pipeline", stream="JOBS")
            [message] = await pipeline.fetch(1, timeout=10)

            async def give_up(event) -> None:
                raise DeadLetter("worker gave up")

            await settle(message, js, consumer="pipeline", max_deliver=3, work=give_up)
            await pipeline.unsubscribe()
        finally:
            await nc.close()
        spare.start_service("pipeline")
        dead_id = await wait_until(lambda: _dead_letter_id(spare, job_id))
        assert (await api.get(f"/api/jobs/{job_id}", headers=user.headers)).json()["status"] == "pending"

        redriven = await genrail(spare, "dlq", "redrive", str(dead_id))
        assert redriven.returncode == 0 and "republished as JOBS seq" in redriven.stdout, redriven.stdout
        await wait_for_job(api, user, job_id, {"completed"})
        again = await genrail(spare, "dlq", "redrive", str(dead_id))
        assert again.returncode == 1 and "already redriven" in again.stdout

        nc = await connect(spare.nats_url, "tests-dead-letter")
        try:
            store = EventStore(nc)
            copies = await store.read_raw(f"job.created.*.{job_id}")
            assert len(copies) == 2
            _subject, _data, headers = await store.get("JOBS", copies[1][0])
            assert headers[MSG_ID] == f"redrive:{dead_id}"
        finally:
            await nc.close()
        assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 9  # charged once
        assert (await genrail(spare, "audit")).returncode == 0


async def test_replay_verify_prints_every_difference_and_a_replay_repairs_them(spare):
    async with httpx.AsyncClient(base_url=spare.api_url, timeout=30) as api:
        user = await register(api)
    assert (await genrail(spare, "replay", "--verify", "--projection", "ledger")).returncode == 0
    await sql(spare.database_url, f"UPDATE balances SET balance = 7 WHERE user_id = '{user.id}'")
    await sql(spare.database_url, f"DELETE FROM users WHERE user_id = '{user.id}'")
    verified = await genrail(spare, "replay", "--verify", "--projection", "ledger", "--projection", "users")
    assert verified.returncode == 1
    assert f"balances [user_id={user.id}] balance: live 7, rebuilt 10" in verified.stdout
    assert f"users [user_id={user.id}]: row only in the rebuilt table" in verified.stdout
    assert (await genrail(spare, "replay", "--projection", "ledger", "--projection", "users")).returncode == 0
    assert (await genrail(spare, "replay", "--verify")).returncode == 0


async def test_a_service_rebuilds_a_projection_the_database_holds_at_an_older_version(spare):
    from genrail_readmodels import users
    from genrail_readmodels.runner import ensure_current_version

    await sql(spare.database_url, "UPDATE projection_checkpoints SET version = 0 WHERE name = 'users'")
    before = await sql(spare.database_url, "SELECT user_id, email FROM users ORDER BY 1")
    nc = await connect(spare.nats_url, "tests-version")
    engine = make_engine(spare.database_url, pool_size=2)
    try:
        rebuilt = await ensure_current_version(nc, engine, users.make)
        assert rebuilt is not None and rebuilt.swapped and rebuilt.events >= len(before)
        assert await sql(spare.database_url, "SELECT version FROM projection_checkpoints WHERE name = 'users'") == [(1,)]
        assert await ensure_current_version(nc, engine, users.make) is None  # current: nothing to do
    finally:
        await nc.close()
        await engine.dispose()
    assert await sql(spare.database_url, "SELECT user_id, email FROM users ORDER BY 1") == before


async def test_the_audit_catches_an_extra_debit_appended_to_the_log(spare):
    async with httpx.AsyncClient(base_url=spare.api_url, timeout=30) as api:
        user = await register(api)
        job_id = (await api.post("/api/generate/copy", json=COPY, headers=user.headers)).json()["id"]
        await wait_for_job(api, user, job_id, {"completed"})
    clean = await genrail(spare, "audit")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    nc = await connect(spare.nats_url, "tests-plant")
    try:
        store = EventStore(nc)
        account, _ = await load_account(store, user.id)
        extra = ledger.decide_debit(account, job_id, 1, 1, ledger.JobRequest(type=JobType.copy, cost=1, input=COPY))
        planted = await store.append(extra.subject, extra.event, msg_id="planted-extra-debit")
        [original] = [s for s in await store.read(f"ledger.{user.id}.debited.{job_id}.1") if s.seq != planted.seq]
    finally:
        await nc.close()
    caught = await genrail(spare, "audit")
    assert caught.returncode == 1, caught.stdout
    assert f"double_debit: job {job_id} attempt 1 debited 2 times" in caught.stdout
    assert f"LEDGER:{original.seq} " in caught.stdout and f"LEDGER:{planted.seq} " in caught.stdout
    assert "1 violation(s)" in caught.stdout
