"""The local stack's mail server: takes every mail over SMTP on 127.0.0.1 and keeps it as an
.eml file in <data>/mailbox, sending nothing on. `genrail up` starts it (and points the API at
it) only when SMTP_HOST is not set, so sign-in links work with no mail account and are read
at <PUBLIC_URL>/dev/mailbox. Run as `python -m genrail_cli.mailcatcher`, configured by
MAILCATCHER_HOST, MAILCATCHER_PORT and MAILCATCHER_DIR."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class Mailbox:
    """aiosmtpd's handler: every mail it is given becomes a file, written whole then renamed,
    so a reader never sees half a mail."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.eml"
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        partial = self.folder / f".{name}.partial"
        partial.write_bytes(content)
        partial.rename(self.folder / name)
        print(json.dumps({"event": "mail.caught", "file": name, "to": list(envelope.rcpt_tos)}), flush=True)
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, folder: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = Mailbox(folder)
    server = await loop.create_server(lambda: SMTP(handler, hostname="genrail-mailcatcher"), host=host, port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "mailcatcher.started", "host": host, "port": port, "dir": str(folder)}), flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    folder = os.environ.get("MAILCATCHER_DIR")
    if not folder:
        sys.exit("MAILCATCHER_DIR is not set")
    asyncio.run(serve(os.environ.get("MAILCATCHER_HOST", "127.0.0.1"), int(os.environ.get("MAILCATCHER_PORT", "8025")),
                      Path(folder)))


if __name__ == "__main__":
    main()
