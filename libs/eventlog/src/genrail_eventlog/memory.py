"""The log in memory: the JetStream store's twin, for tests that need no server.

It keeps JetStream's promises, checked by the same contract suite: one sequence per
stream from 1, subject filters with `*` and `>`, the expected-last-sequence check on a
subject filter, message-id dedupe within a duplicate window (on a clock a test may move),
and stored bytes decoded afresh on every read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.js.errors import NoStreamResponseError

from genrail_events import streams
from genrail_events.envelope import Event

from .log import (
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    MSG_ID,
    Appended,
    EventLog,
    Stored,
    conflict,
    stream_for,
)


def subject_matches(subject_filter: str, subject: str) -> bool:
    """NATS wildcards: `*` is exactly one token, `>` one or more tokens at the end."""
    wanted, tokens = subject_filter.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or token not in ("*", tokens[i]):
            return False
    return len(wanted) == len(tokens)


def is_literal(subject_filter: str) -> bool:
    return not any(token in ("*", ">") for token in subject_filter.split("."))


@dataclass(frozen=True)
class Message:
    seq: int
    subject: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Stream:
    spec: streams.StreamSpec
    duplicate_window_s: float
    messages: list[Message] = field(default_factory=list)  # messages[seq - 1]
    last_seq_by_subject: dict[str, int] = field(default_factory=dict)
    # message id -> (seq, clock when stored), oldest first, as JetStream's dedupe table
    msg_ids: dict[str, tuple[int, float]] = field(default_factory=dict)

    def last_seq(self, subject_filter: str) -> int:
        if is_literal(subject_filter):
            return self.last_seq_by_subject.get(subject_filter, 0)
        return max((seq for subject, seq in self.last_seq_by_subject.items()
                    if subject_matches(subject_filter, subject)), default=0)

    def message(self, seq: int) -> Message | None:
        return self.messages[seq - 1] if 0 < seq <= len(self.messages) else None

    def original(self, msg_id: str, now: float) -> int | None:
        """The sequence of the message stored under this id within the window, if any."""
        while self.msg_ids:
            oldest = next(iter(self.msg_ids))
            if now - self.msg_ids[oldest][1] < self.duplicate_window_s:
                break
            del self.msg_ids[oldest]
        seen = self.msg_ids.get(msg_id)
        return seen[0] if seen else None

    def store(self, subject: str, body: bytes, headers: dict[str, str], now: float) -> Message:
        message = Message(len(self.messages) + 1, subject, body, dict(headers))
        self.messages.append(message)
        self.last_seq_by_subject[subject] = message.seq
        self.msg_ids[headers[MSG_ID]] = (message.seq, now)
        return message


class InMemoryEventLog(EventLog):
    """Every stream of `genrail_events.streams.ALL`, in memory. `clock` (seconds) times the
    duplicate window; `duplicate_window_s` overrides each stream's own, as `ensure_streams` does."""

    def __init__(self, *, duplicate_window_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.streams = {spec.name: Stream(spec, duplicate_window_s or spec.duplicate_window_s)
                        for spec in streams.ALL}
        self.journal: list[Message] = []  # every message of every stream, in the order appended

    def _stream_holding(self, subject: str) -> Stream:
        for stream in self.streams.values():
            if any(subject_matches(pattern, subject) for pattern in stream.spec.subjects):
                return stream
        raise NoStreamResponseError  # what nats-py raises when no stream listens to the subject

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> Appended:
        await asyncio.sleep(0)  # a round trip's chance for other tasks to run first, as on a server
        # From here to the end there is no await: the check and the write are one step.
        stream = self._stream_holding(subject)
        # As one JetStream server (2.12+) does: the expectation first, then the message id.
        # (A clustered stream checks the id first; the contract accepts either order.)
        if EXPECTED_LAST_SUBJECT_SEQ in headers:
            expected_filter = headers.get(EXPECTED_LAST_SUBJECT_SEQ_SUBJECT, subject)
            if stream.last_seq(expected_filter) != int(headers[EXPECTED_LAST_SUBJECT_SEQ]):
                raise conflict(subject, headers)
        now = self.clock()
        original = stream.original(headers[MSG_ID], now)
        if original is not None:
            return Appended(original, duplicate=True)
        message = stream.store(subject, body, headers, now)
        self.journal.append(message)
        return Appended(message.seq, duplicate=False)

    async def last(self, subject_filter: str) -> Stored | None:
        await asyncio.sleep(0)
        stream = self.streams[stream_for(subject_filter)]
        message = stream.message(stream.last_seq(subject_filter))
        return _stored(message) if message else None

    async def read_raw(self, subject_filter: str, *, from_seq: int = 1) -> list[tuple[int, str, bytes]]:
        await asyncio.sleep(0)
        stream = self.streams[stream_for(subject_filter)]
        return [(m.seq, m.subject, m.body) for m in stream.messages[max(from_seq, 1) - 1:]
                if subject_matches(subject_filter, m.subject)]

    async def get(self, stream: str, seq: int) -> tuple[str, bytes, dict[str, str]] | None:
        await asyncio.sleep(0)
        held = self.streams.get(stream)
        message = held.message(seq) if held else None
        return (message.subject, message.body, dict(message.headers)) if message else None

    def events(self, subject_filter: str = ">") -> list[Stored]:
        """For tests: every stored event on a filter, across streams, in the order appended."""
        return [_stored(m) for m in self.journal if subject_matches(subject_filter, m.subject)]


def _stored(message: Message) -> Stored:
    return Stored(message.seq, message.subject, Event.from_bytes(message.body), dict(message.headers))
