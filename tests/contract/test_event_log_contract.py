"""One contract for every event log, run against the in-memory log and against JetStream.

`EventLogContract` holds the cases; each subclass gives it a `log` and a way to let the
duplicate window pass. JetStream runs on an embedded nats-server of this module's own, with
a short window; every case uses fresh aggregate ids, so cases never see each other's events
and assert on sequences relative to the ones their own appends returned.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NoStreamResponseError
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from genrail_cli.embedded import EmbeddedNats
from genrail_events.envelope import Event, UnknownEvent, utcnow
from genrail_eventlog.log import EventLog
from genrail_eventlog.memory import InMemoryEventLog
from genrail_eventlog.store import (
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    MSG_ID,
    Appended,
    ConcurrencyConflict,
    EventStore,
    connect,
    ensure_streams,
    retry_on_conflict,
)

DUPLICATE_WINDOW_S = 1.0
PassWindow = Callable[[], Awaitable[None]]


def counted(aggregate_id: str, **data: object) -> UnknownEvent:
    """An event no service knows: the log stores and returns it whole, whatever its type."""
    return UnknownEvent(type="counter.counted", id=uuid.uuid4(), occurred_at=utcnow(), aggregate_id=aggregate_id,
                        data=data)


def new_id() -> str:
    return uuid.uuid4().hex


class EventLogContract:
    """The cases. Not collected itself: subclasses named Test… provide the fixtures."""

    @pytest.fixture
    def log(self) -> EventLog:
        raise NotImplementedError

    @pytest.fixture
    def pass_duplicate_window(self) -> PassWindow:
        raise NotImplementedError

    async def test_an_appended_event_is_the_last_on_its_subject_with_its_sequence(
            self, log: EventLog) -> None:
        subject, event = f"job.created.{new_id()}", counted("a", n=1)
        appended = await log.append(subject, event)
        last = await log.last(subject)
        assert appended == Appended(appended.seq, duplicate=False) and appended.seq > 0
        assert last is not None and (last.seq, last.subject, last.event) == (appended.seq, subject, event)
        assert last.headers[MSG_ID] == str(event.id)
        assert await log.last_seq(subject) == appended.seq

    async def test_nothing_on_a_subject_has_no_last_and_sequence_zero(self, log: EventLog) -> None:
        subject = f"job.created.{new_id()}"
        assert await log.last(subject) is None
        assert await log.last_seq(subject) == 0
        assert not await log.exists(subject)

    async def test_an_expectation_on_the_exact_subject_is_met_or_refused(self, log: EventLog) -> None:
        subject = f"job.transitioned.{new_id()}"
        first = await log.append(subject, counted("j", n=1), expect_last_seq=0)
        second = await log.append(subject, counted("j", n=2), expect_last_seq=first.seq)
        with pytest.raises(ConcurrencyConflict):
            await log.append(subject, counted("j", n=3), expect_last_seq=first.seq)
        assert second.seq > first.seq
        assert [s.event.data["n"] for s in await log.read(subject)] == [1, 2]

    async def test_an_expectation_on_a_wildcard_filter_covers_every_subject_under_it(
            self, log: EventLog) -> None:
        user, other = new_id(), new_id()
        account = f"ledger.{user}.>"
        granted = await log.append(f"ledger.{user}.granted.signup", counted(user, balance_after=10),
                                   expect_last_seq=0, expect_filter=account)
        await log.append(f"ledger.{user}.debited.j1.1", counted(user, balance_after=9),
                         expect_last_seq=granted.seq, expect_filter=account)
        with pytest.raises(ConcurrencyConflict):
            await log.append(f"ledger.{user}.debited.j2.1", counted(user, balance_after=9),
                             expect_last_seq=granted.seq, expect_filter=account)
        # Another account is another filter: its first entry still expects nothing there.
        await log.append(f"ledger.{other}.granted.signup", counted(other, balance_after=10),
                         expect_last_seq=0, expect_filter=f"ledger.{other}.>")
        assert [s.subject for s in await log.read(account)] == [f"ledger.{user}.granted.signup",
                                                                 f"ledger.{user}.debited.j1.1"]

    async def test_an_expectation_on_a_filter_outside_the_subjects_stream_sees_nothing_there(
            self, log: EventLog) -> None:
        # JetStream checks the filter against the stream the subject goes to, and nowhere else.
        job = new_id()
        await log.append(f"job.created.{job}", counted(job))
        user = new_id()
        await log.append(f"ledger.{user}.debited.{job}.1", counted(user), expect_last_seq=0,
                         expect_filter=f"job.*.{job}")
        assert await log.exists(f"ledger.{user}.>")

    async def test_the_stored_headers_are_the_appended_ones(self, log: EventLog) -> None:
        user = new_id()
        subject, account = f"ledger.{user}.granted.signup", f"ledger.{user}.>"
        await log.append(subject, counted(user), msg_id=f"grant:{user}",
                         expect_last_seq=0, expect_filter=account)
        last = await log.last(account)
        assert last is not None
        assert {k: v for k, v in last.headers.items() if k.startswith("Nats-")} == {
            MSG_ID: f"grant:{user}", EXPECTED_LAST_SUBJECT_SEQ: "0",
            EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: account}

    async def test_expecting_zero_succeeds_only_while_the_filter_is_empty(self, log: EventLog) -> None:
        user = new_id()
        await log.append(f"ledger.{user}.granted.signup", counted(user), expect_last_seq=0,
                         expect_filter=f"ledger.{user}.>")
        with pytest.raises(ConcurrencyConflict):
            await log.append(f"ledger.{user}.purchased.pi1", counted(user), expect_last_seq=0,
                             expect_filter=f"ledger.{user}.>")

    async def test_append_first_appends_only_while_nothing_is_there(self, log: EventLog) -> None:
        subject = f"payment.succeeded.{new_id()}"
        first = await log.append_first(subject, counted("p", n=1), msg_id=new_id())
        assert first is not None and not first.duplicate
        assert await log.append_first(subject, counted("p", n=2), msg_id=new_id()) is None
        assert [s.event.data["n"] for s in await log.read(subject)] == [1]

    async def test_append_first_is_none_when_the_same_message_was_appended_before(
            self, log: EventLog) -> None:
        msg_id = new_id()
        await log.append(f"payment.succeeded.{new_id()}", counted("p"), msg_id=msg_id)
        elsewhere = f"payment.succeeded.{new_id()}"
        assert await log.append_first(elsewhere, counted("p"), msg_id=msg_id) is None
        assert not await log.exists(elsewhere)

    async def test_a_repeated_message_id_answers_the_original_sequence_and_stores_nothing(
            self, log: EventLog) -> None:
        job, msg_id = new_id(), new_id()
        original = await log.append(f"job.created.{job}", counted(job, n=1), msg_id=msg_id)
        again = await log.append(f"job.retried.{job}", counted(job, n=2), msg_id=msg_id)
        assert again == Appended(original.seq, duplicate=True)
        assert [s.event.data["n"] for s in await log.read(f"job.*.{job}")] == [1]

    async def test_a_republish_with_an_expectation_it_already_met_never_stores_twice(
            self, log: EventLog) -> None:
        # After a lost ack: single-server JetStream checks the expectation first (a conflict),
        # a cluster checks the message id first (a duplicate). Callers must take either.
        user, msg_id = new_id(), new_id()
        subject, account = f"ledger.{user}.debited.j.1", f"ledger.{user}.>"
        def debit() -> Awaitable[Appended]:
            return log.append(subject, counted(user), msg_id=msg_id, expect_last_seq=0, expect_filter=account)

        original = await debit()
        try:
            again: Appended | None = await debit()
        except ConcurrencyConflict:
            again = None
        assert again in (None, Appended(original.seq, duplicate=True))
        assert len(await log.read(account)) == 1

    async def test_a_message_id_is_forgotten_past_the_duplicate_window(
            self, log: EventLog, pass_duplicate_window: PassWindow) -> None:
        subject, msg_id = f"batch.created.{new_id()}", new_id()
        first = await log.append(subject, counted("b", n=1), msg_id=msg_id)
        await pass_duplicate_window()
        second = await log.append(subject, counted("b", n=2), msg_id=msg_id)
        assert not second.duplicate and second.seq > first.seq
        assert [s.event.data["n"] for s in await log.read(subject)] == [1, 2]

    async def test_read_returns_a_filters_events_in_order_from_a_sequence(self, log: EventLog) -> None:
        user, other = new_id(), new_id()
        seqs = []
        for n in range(3):
            seqs.append((await log.append(f"ledger.{user}.adjusted.{n}", counted(user, n=n))).seq)
            await log.append(f"ledger.{other}.adjusted.{n}", counted(other, n=n))
        history = await log.read(f"ledger.{user}.>")
        assert [(s.seq, s.event.data["n"]) for s in history] == list(zip(seqs, range(3), strict=True))
        assert [s.seq for s in await log.read(f"ledger.{user}.>", from_seq=seqs[1])] == seqs[1:]
        assert [s.seq for s in await log.read(f"ledger.{user}.adjusted.*", from_seq=seqs[2] + 1)] == []
        raw = await log.read_raw(f"ledger.{user}.adjusted.1")
        assert [(seq, subject, Event.from_bytes(body).data) for seq, subject, body in raw] == \
            [(seqs[1], f"ledger.{user}.adjusted.1", {"n": 1})]

    async def test_last_on_a_wildcard_filter_is_the_latest_across_its_subjects(self, log: EventLog) -> None:
        job = new_id()
        await log.append(f"job.created.{job}", counted(job, n=1))
        latest = await log.append(f"job.transitioned.{job}", counted(job, n=2))
        await log.append(f"job.created.{new_id()}", counted("other", n=3))
        last = await log.last(f"job.*.{job}")
        assert last is not None and (last.seq, last.event.data["n"]) == (latest.seq, 2)
        latest_of_stream = await log.last("job.>")
        assert latest_of_stream is not None and latest_of_stream.event.data["n"] == 3

    async def test_a_wildcard_token_stands_for_exactly_one_token(self, log: EventLog) -> None:
        user = new_id()
        await log.append(f"ledger.{user}.debited.j.1", counted(user))
        assert await log.exists(f"ledger.{user}.debited.*.*")
        assert await log.exists(f"ledger.{user}.>")
        assert not await log.exists(f"ledger.{user}.debited.*")
        assert not await log.exists(f"ledger.{user}.debited.j.1.>")

    async def test_exists_is_true_once_something_is_on_the_subject(self, log: EventLog) -> None:
        subject = f"user.registered.{new_id()}"
        assert not await log.exists(subject)
        await log.append(subject, counted("u"))
        assert await log.exists(subject)

    async def test_get_finds_a_message_by_stream_and_sequence(self, log: EventLog) -> None:
        subject, event = f"job.created.{new_id()}", counted("j", n=1)
        appended = await log.append(subject, event, msg_id="create:j")
        found = await log.get("JOBS", appended.seq)
        assert found is not None
        got_subject, body, headers = found
        assert (got_subject, Event.from_bytes(body), headers[MSG_ID]) == (subject, event, "create:j")
        assert await log.get("JOBS", appended.seq + 1_000_000) is None
        assert await log.get("NO_SUCH_STREAM", 1) is None

    async def test_an_append_keeps_the_trace_context_with_the_event(self, log: EventLog) -> None:
        subject, trace_id = f"job.created.{new_id()}", uuid.uuid4().int >> 64 | 1
        parent = SpanContext(trace_id=trace_id, span_id=0xB7AD6B7169203331, is_remote=False,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED))
        with trace.use_span(NonRecordingSpan(parent)):
            await log.append(subject, counted("j"))
        last = await log.last(subject)
        assert last is not None and last.headers["traceparent"].split("-")[1] == f"{trace_id:032x}"

    async def test_an_append_to_a_subject_no_stream_holds_is_refused(self, log: EventLog) -> None:
        with pytest.raises(NoStreamResponseError):
            await log.append("job", counted("j"))

    async def test_of_fifty_concurrent_appends_expecting_one_sequence_exactly_one_lands(
            self, log: EventLog) -> None:
        user = new_id()
        account = f"ledger.{user}.>"
        results = await asyncio.gather(*(
            log.append(f"ledger.{user}.debited.{n}.1", counted(user, n=n),
                       expect_last_seq=0, expect_filter=account)
            for n in range(50)), return_exceptions=True)
        landed = [r for r in results if isinstance(r, Appended)]
        assert len(landed) == 1
        assert all(isinstance(r, ConcurrencyConflict) for r in results if not isinstance(r, Appended))
        assert [s.seq for s in await log.read(account)] == [landed[0].seq]

    async def test_retry_on_conflict_lands_fifty_concurrent_deposits_with_a_contiguous_balance(
            self, log: EventLog) -> None:
        user = new_id()
        account, attempts = f"ledger.{user}.>", 0

        async def deposit(n: int) -> Appended:
            async def load_decide_append() -> Appended:
                nonlocal attempts
                attempts += 1
                last = await log.last(account)
                balance = last.event.data["balance_after"] if last else 0
                return await log.append(f"ledger.{user}.deposited.{n}",
                                        counted(user, balance_after=balance + 1),
                                        expect_last_seq=last.seq if last else 0, expect_filter=account)
            return await retry_on_conflict(load_decide_append)

        await asyncio.gather(*(deposit(n) for n in range(50)))
        history = await log.read(account)
        assert [s.event.data["balance_after"] for s in history] == list(range(1, 51))
        assert attempts > 50, "no append ever conflicted, so nothing was retried"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TestInMemoryEventLog(EventLogContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def log(self, clock: FakeClock) -> InMemoryEventLog:
        return InMemoryEventLog(duplicate_window_s=DUPLICATE_WINDOW_S, clock=clock)

    @pytest.fixture
    def pass_duplicate_window(self, clock: FakeClock) -> PassWindow:
        async def advance() -> None:
            clock.advance(DUPLICATE_WINDOW_S)
        return advance

    async def test_each_stream_counts_its_own_sequence_from_one(self, log: InMemoryEventLog) -> None:
        assert (await log.append("job.created.a", counted("a"))).seq == 1
        assert (await log.append("user.registered.u", counted("u"))).seq == 1
        assert (await log.append("job.created.b", counted("b"))).seq == 2

    async def test_events_lists_every_stream_in_the_order_appended(self, log: InMemoryEventLog) -> None:
        for subject in ("job.created.a", "user.registered.u", "job.transitioned.a"):
            await log.append(subject, counted("x"))
        assert [s.subject for s in log.events()] == \
            ["job.created.a", "user.registered.u", "job.transitioned.a"]
        assert [s.subject for s in log.events("job.*.a")] == ["job.created.a", "job.transitioned.a"]

    async def test_a_message_id_is_a_duplicate_until_the_window_has_passed(
            self, log: InMemoryEventLog, clock: FakeClock) -> None:
        first = await log.append("job.created.a", counted("a"), msg_id="m")
        clock.advance(DUPLICATE_WINDOW_S - 0.25)
        again = await log.append("job.created.a", counted("a"), msg_id="m")
        clock.advance(0.25)
        past_window = await log.append("job.created.a", counted("a"), msg_id="m")
        assert (again, past_window) == (Appended(first.seq, duplicate=True), Appended(2, duplicate=False))


@pytest.fixture(scope="module")
async def nats_connection(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    nc = await connect(nats_server.url, "event-log-contract")
    await ensure_streams(nc.jetstream(), duplicate_window_s=DUPLICATE_WINDOW_S)
    yield nc
    await nc.close()


class TestJetStreamEventStore(EventLogContract):
    @pytest.fixture
    def log(self, nats_connection: NATS) -> EventStore:
        return EventStore(nats_connection)

    @pytest.fixture
    def pass_duplicate_window(self) -> PassWindow:
        # The server forgets ids on a timer that fires at the window's end (at least 50 ms apart).
        return lambda: asyncio.sleep(DUPLICATE_WINDOW_S + 0.5)
