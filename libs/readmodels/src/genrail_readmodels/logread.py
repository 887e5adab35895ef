"""Reading a stream from end to end for a rebuild: on a connection of its own, in large
pull batches, with a frame parser that does per message only what a rebuild needs.

A rebuild reads millions of messages and nothing else. nats-py spends about 15 µs of
Python on each one it delivers (a regex match, a `Msg`, the ordered consumer's bookkeeping,
a queue), more than decoding and folding the event together; here a message costs a few
µs: its frame is cut out of the received bytes, its stream sequence read off its reply
subject, and its body handed over as bytes. The messages come from an ephemeral pull
consumer (no acks, in memory) that this reader asks for `PULL` messages at a time, with
the next request sent before the current one is used up. The consumer sequence of every
message is checked to follow the one before: a message lost on the way is an error, never
a gap in the rebuilt tables.

It speaks the plain protocol only: when the client's connection uses TLS, credentials
files, nkeys or callbacks, or when the handshake fails for any reason, `read_raw` reads with
the ordered consumer (`genrail_eventlog.reader.OrderedReader`) instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Sequence

from nats.aio.client import Client as NATS

from genrail_eventlog.reader import OrderedReader, stream_seq

log = logging.getLogger(__name__)

PULL = 20_000          # messages asked for by one pull request
READ_BYTES = 1 << 18   # bytes read from the socket at a time
EXPIRES_NS = 60 * 10**9  # a pull request still waiting after this long ends (status 408) and is asked again
API = "$JS.API"

RawBatch = list[tuple[int, bytes]]  # (stream sequence, message body), in stream order


class Unavailable(Exception):
    """This reader cannot read on this connection: the ordered consumer will."""


class _BrokenOff(Exception):
    """The pull stopped delivering in order: start again after the last message received."""


RESTARTS = 3


async def read_raw(nc: NATS, stream: str, subjects: Sequence[str], from_seq: int, *, stop_at: int,
                   batch_size: int) -> AsyncIterator[RawBatch]:
    """Batches of at most `batch_size` messages of `stream` on `subjects`, with sequences
    above `from_seq`, in order, until the one at or past `stop_at`. A pull that breaks off
    (the connection drops, a message goes missing, the consumer is gone) starts again after
    the last message received, up to `RESTARTS` times in a row."""
    subject = subjects[0] if len(subjects) == 1 else ">"
    pending: RawBatch = []
    restarts = 0
    while from_seq < stop_at:
        try:
            reader = await _PullReader.open(nc, stream, subject, from_seq)
        except Unavailable as exc:
            if restarts:
                raise
            log.info("logread.ordered_consumer", extra={"stream": stream, "reason": str(exc)})
            async for batch in _read_ordered(nc, stream, subjects, from_seq, stop_at=stop_at, batch_size=batch_size):
                yield batch
            return
        try:
            async for chunk in reader.messages(stop_at):
                pending += chunk
                from_seq, restarts = chunk[-1][0], 0
                while len(pending) >= batch_size:
                    yield pending[:batch_size]
                    pending = pending[batch_size:]
        except _BrokenOff as exc:
            restarts += 1
            if restarts > RESTARTS:
                raise RuntimeError(f"reading {stream}: {exc}") from exc
            log.warning("logread.restart", extra={"stream": stream, "after": from_seq, "reason": str(exc)})
        finally:
            await reader.close()
    if pending:
        yield pending


async def _read_ordered(nc: NATS, stream: str, subjects: Sequence[str], from_seq: int, *, stop_at: int,
                        batch_size: int) -> AsyncIterator[RawBatch]:
    async with OrderedReader(nc, stream, subjects, from_seq) as reader:
        while from_seq < stop_at:
            msgs = await reader.take(batch_size, timeout_s=0.25)
            if msgs:
                batch = [(stream_seq(m), m.data) for m in msgs]
                from_seq = batch[-1][0]
                yield batch


class _PullReader:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inbox: bytes, stream: str):
        self.reader, self.writer, self.inbox, self.stream = reader, writer, inbox, stream
        self.consumer = ""
        self.buf = b""

    @classmethod
    async def open(cls, nc: NATS, stream: str, subject: str, from_seq: int) -> _PullReader:
        url = nc.connected_url
        if url is None or url.scheme != "nats" or nc.options.get("tls") or nc.options.get("tls_handshake_first"):
            raise Unavailable("not a plain nats:// connection")
        if any(getattr(nc, attr, None) is not None for attr in
               ("_user_credentials", "_nkeys_seed", "_nkeys_seed_str", "_signature_cb", "_user_jwt_cb")):
            raise Unavailable("the connection authenticates with credentials this reader does not speak")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(url.hostname, url.port or 4222, limit=READ_BYTES * 4), timeout=5)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot connect: {exc}") from exc
        self = cls(reader, writer, f"_INBOX.replay.{secrets.token_hex(8)}".encode(), stream)
        try:
            await asyncio.wait_for(self._handshake(nc, url, subject, from_seq), timeout=10)
        except Exception as exc:
            self.writer.close()
            raise Unavailable(f"handshake failed: {type(exc).__name__}: {exc}") from exc
        return self

    async def _handshake(self, nc: NATS, url, subject: str, from_seq: int) -> None:
        info = json.loads((await self.reader.readline()).partition(b" ")[2])
        if info.get("tls_required") or not info.get("headers"):
            raise Unavailable("the server wants TLS or speaks no headers")
        connect: dict = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True, "protocol": 1,
                         "name": f"{nc.options.get('name') or 'genrail'}-logread"}
        user, password, token = (nc.options.get("user") or url.username, nc.options.get("password") or url.password,
                                 nc.options.get("token"))
        if user and password:
            connect.update(user=user, **{"pass": password})
        elif token or user:
            connect["auth_token"] = token or user
        config = {"deliver_policy": "by_start_sequence", "opt_start_seq": from_seq + 1, "ack_policy": "none",
                  "inactive_threshold": 30 * 10**9, "mem_storage": True, "num_replicas": 1}
        if subject != ">":
            config["filter_subject"] = subject
        self._send(b"CONNECT " + json.dumps(connect).encode() + b"\r\nSUB " + self.inbox + b".* 1\r\n")
        self._publish(f"{API}.CONSUMER.CREATE.{self.stream}".encode(), self.inbox + b".c",
                      json.dumps({"stream_name": self.stream, "config": config}).encode())
        self._send(b"PING\r\n")
        await self.writer.drain()
        response = await self._control_reply()
        if "error" in response:
            raise RuntimeError(f"consumer on {self.stream}: {response['error']}")
        self.consumer = response["name"]

    async def _control_reply(self) -> dict:
        """The next reply on the control inbox (before any message is asked for)."""
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            if line.startswith(b"-ERR"):
                raise RuntimeError(line.decode().strip())
            if line.startswith(b"PING"):
                self._send(b"PONG\r\n")
            elif line.startswith((b"MSG ", b"HMSG ")):
                args = line.split()
                body = await self.reader.readexactly(int(args[-1]) + 2)
                if args[0] == b"HMSG":  # a status: no JetStream behind this subject (503), ...
                    raise RuntimeError(body[:int(args[-2])].decode(errors="replace").strip())
                return json.loads(body[:-2])

    def _send(self, data: bytes) -> None:
        self.writer.write(data)

    def _publish(self, subject: bytes, reply: bytes, payload: bytes) -> None:
        self._send(b"PUB %s %s %d\r\n%s\r\n" % (subject, reply, len(payload), payload))

    def _pull(self, batch: int) -> None:
        request = json.dumps({"batch": batch, "expires": EXPIRES_NS}).encode()
        self._publish(f"{API}.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}".encode(), self.inbox + b".m", request)

    async def messages(self, stop_at: int) -> AsyncIterator[RawBatch]:
        """What each read from the socket completes, until the message at or past `stop_at`."""
        requests: collections.deque[int] = collections.deque()  # messages each open request still owes, oldest first
        for _ in range(2):
            self._pull(PULL)
            requests.append(PULL)
        read, last_consumer_seq, sequence = self.reader.read, 0, 0
        buf, pos = self.buf, 0
        while sequence < stop_at:
            try:
                chunk = await read(READ_BYTES)
            except OSError as exc:
                raise _BrokenOff(f"the connection failed at {sequence}: {exc}") from exc
            if not chunk:
                raise _BrokenOff(f"the server closed the connection at {sequence}")
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            pos, end_of_buf = 0, len(buf)
            out: RawBatch = []
            while sequence < stop_at:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if buf.startswith(b"MSG ", pos) or buf.startswith(b"HMSG ", pos):
                    args = buf[pos:eol].split(b" ")
                    size = int(args[-1])
                    body_end = eol + 2 + size
                    if body_end + 2 > end_of_buf:
                        break  # the rest of the message is still on its way
                    headers = int(args[-2]) if args[0] == b"HMSG" else 0
                    reply = args[3] if len(args) == (6 if headers else 5) else b""
                    if reply.startswith(b"$JS.ACK."):
                        tokens = reply.split(b".")
                        sseq, cseq = (tokens[5], tokens[6]) if len(tokens) == 9 else (tokens[7], tokens[8])
                        if int(cseq) != last_consumer_seq + 1:
                            raise _BrokenOff(f"message {last_consumer_seq + 1} of the consumer was lost on the "
                                             f"way (got {int(cseq)}) after {sequence}")
                        last_consumer_seq, sequence = last_consumer_seq + 1, int(sseq)
                        out.append((sequence, buf[eol + 2 + headers:body_end]))
                        requests[0] -= 1
                        if not requests[0]:
                            requests.popleft()
                        if len(requests) < 2 and (not requests or requests[0] < PULL // 2):
                            self._pull(PULL)
                            requests.append(PULL)
                    elif headers:  # a status: 404/408 end the oldest request; anything else is an error
                        status = buf[eol + 2 + 9:eol + 2 + 12]
                        if status in (b"404", b"408") and requests:
                            requests.popleft()
                            self._pull(PULL)
                            requests.append(PULL)
                        elif status != b"100":  # 409: the consumer was deleted, its leader changed, ...
                            raise _BrokenOff(f"the pull consumer says "
                                             f"{buf[eol + 2:eol + 2 + headers].decode(errors='replace').strip()}")
                    pos = body_end + 2
                elif buf.startswith(b"PING", pos):
                    self._send(b"PONG\r\n")
                    pos = eol + 2
                elif buf.startswith(b"-ERR", pos):
                    raise _BrokenOff(buf[pos:eol].decode(errors="replace"))
                else:  # +OK, PONG, INFO
                    pos = eol + 2
            if out:
                yield out
        self.buf = b""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.consumer:
                self._publish(f"{API}.CONSUMER.DELETE.{self.stream}.{self.consumer}".encode(), self.inbox + b".d", b"")
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), timeout=2)
