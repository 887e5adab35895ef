"""Options every operating command shares: where the log and the projections are."""

from __future__ import annotations

from typing import Annotated

import typer

NATS_URL = "nats://127.0.0.1:4222"
DATABASE_URL = "postgresql+asyncpg://genrail@127.0.0.1:5432/genrail"

NatsUrl = Annotated[str, typer.Option("--nats-url", envvar="NATS_URL", help="NATS server holding the log")]
DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="DATABASE_URL",
                                          help="PostgreSQL holding the projections")]


def prose(fn):
    """Let a command's docstring wrap to the terminal: lines of a paragraph are joined
    (Typer keeps the source's line breaks), paragraphs stay apart."""
    import inspect

    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    fn.__doc__ = "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
    return fn
