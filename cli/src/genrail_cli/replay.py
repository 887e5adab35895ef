"""`genrail replay`: rebuild projections from the log, one process per projection.

Each projection is rebuilt by `genrail_readmodels.runner.rebuild` in a process of its
own (the projections are independent and a rebuild is bound by one core of Python), while
this process draws the progress. The children are forked by a fork server that imported
what a rebuild needs once, so each starts at once instead of importing it all again. A
child notices when this process dies (its fork server exits then, and the child with it),
so a killed replay leaves nothing running (and the live tables as they were).
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from genrail_readmodels import registry as projections
from genrail_runtime import eventloop
from .options import DATABASE_URL, NATS_URL, DatabaseUrl, NatsUrl, prose

console = Console()


@dataclass(frozen=True)
class Outcome:
    projection: str
    events: int
    seconds: float
    position: int
    swapped: bool
    differences: list[str]
    error: str | None = None
    max_rss_mb: float = 0.0  # the rebuild process's peak resident memory
    cpu_s: float = 0.0       # and the CPU time it used


async def _rebuild_one(name: str, nats_url: str, database_url: str, verify: bool, batch_size: int | None,
                       report) -> Outcome:
    from genrail_readmodels.db import make_engine
    from genrail_eventlog.store import connect
    from genrail_readmodels.runner import rebuild

    nc = await connect(nats_url, f"genrail-replay-{name}")
    engine = make_engine(database_url, pool_size=2)
    try:
        result = await rebuild(nc, engine, projections.by_name()[name], verify=verify,
                               batch_size=batch_size or BULK_BATCH, bulk=batch_size is None,
                               on_progress=lambda p: report(("progress", name, (p.position, p.target))))
    finally:
        await nc.close()
        await engine.dispose()
    return Outcome(name, result.events, result.seconds, result.position, result.swapped,
                   [d.describe() for d in result.differences], max_rss_mb=_max_rss_mb(), cpu_s=time.process_time())


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _die_with_parent() -> None:
    """Linux: the kernel kills this process the moment its parent dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the watch on `alive` below notices


def _die_with_replay(alive: Connection) -> None:
    """Exit the moment the replay's end of `alive` closes, which it does when it exits or is
    killed: the parent of a forked child is the fork server, which outlives the replay as
    long as any of its children runs, so the kernel's parent-death signal is not enough."""
    def watch() -> None:
        try:
            alive.recv_bytes()  # nothing is ever sent: this returns only at the end
        except (EOFError, OSError):
            pass
        os._exit(1)  # stop here, before any swap

    threading.Thread(target=watch, name="replay-alive", daemon=True).start()


def _child(name: str, nats_url: str, database_url: str, verify: bool, batch_size: int | None,
           alive: Connection, out: multiprocessing.Queue) -> None:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)  # it died before we asked
    _die_with_replay(alive)
    # A rebuild allocates millions of short-lived objects and keeps few: collecting cycles
    # rarely, and never among what start-up loaded, saves a quarter of its CPU.
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)

    async def main() -> None:
        try:
            out.put(("done", name, await _rebuild_one(name, nats_url, database_url, verify, batch_size, out.put)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which exits non-zero
            out.put(("done", name, Outcome(name, 0, 0.0, 0, False, [], error=f"{type(exc).__name__}: {exc}")))

    eventloop.run(main())  # uvloop: the NATS client's per-message work is cheaper


BULK_BATCH = 2000  # events read and folded at a time by a bulk rebuild

# What a rebuild imports, imported once by the fork server rather than by every child (a
# second of CPU each, on cores the rebuilds share).
PRELOAD = ["genrail_cli.replay", "genrail_readmodels.registry", "genrail_readmodels.runner", "genrail_readmodels.bulk",
           "genrail_eventlog.store", "genrail_eventlog.reader", "genrail_events.codec", "sqlalchemy.ext.asyncio",
           "sqlalchemy.dialects.postgresql.asyncpg", "asyncpg", "nats.js", "uvloop"]


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def rebuild_all(names: list[str], nats_url: str, database_url: str, *, verify: bool = False,
                batch_size: int | None = None, on_progress=None) -> list[Outcome]:
    """Rebuild the named projections in parallel processes; `on_progress(name, position,
    target)` is called here as they go. Returns one outcome per projection. Each is folded
    in memory and written with COPY (`genrail_readmodels.bulk`); with `batch_size`, applied
    `batch_size` events per transaction by its `apply` instead."""
    ctx = _context()
    out: multiprocessing.Queue = ctx.Queue()
    alive, keep_alive = ctx.Pipe(duplex=False)  # only this process holds `keep_alive`: it closes as this one ends
    children = {name: ctx.Process(target=_child, args=(name, nats_url, database_url, verify, batch_size, alive, out),
                                  daemon=True)
                for name in names}
    try:
        return _collect(children, out, names, on_progress)
    finally:
        keep_alive.close()
        alive.close()


def _collect(children: dict[str, multiprocessing.process.BaseProcess], out: multiprocessing.Queue, names: list[str],
             on_progress) -> list[Outcome]:
    for child in children.values():
        child.start()
    outcomes: dict[str, Outcome] = {}
    while len(outcomes) < len(children):
        try:
            kind, name, payload = out.get(timeout=0.5)
        except queue.Empty:
            for name, child in children.items():
                if name not in outcomes and not child.is_alive() and out.empty():
                    outcomes[name] = Outcome(name, 0, 0.0, 0, False, [],
                                             error=f"rebuild process exited with {child.exitcode}")
            continue
        if kind == "progress" and on_progress is not None:
            on_progress(name, *payload)
        elif kind == "done":
            outcomes[name] = payload
    for child in children.values():
        child.join()
    return [outcomes[name] for name in names]


@prose
def replay(
    projection: Annotated[list[str] | None, typer.Option("--projection", "-p",
                                                          help="Projection to rebuild (repeatable; default: all)")] = None,
    verify: Annotated[bool, typer.Option(help="Compare the rebuilt tables with the live ones and print every "
                                              "difference instead of swapping; exit 1 when any")] = False,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Apply the log this many events per transaction, as the projector does, instead of "
                    "folding it in memory and writing the tables with COPY (the default, several times faster)")] = None,
    nats_url: NatsUrl = NATS_URL,
    database_url: DatabaseUrl = DATABASE_URL,
) -> None:
    """Rebuild projections from the start of the log into shadow tables while the live ones
    keep serving, then swap each in with one transaction. A replay stopped at any moment
    leaves the live tables as they were and can simply be run again."""
    try:
        names = [f().name for f in projections.select(projection)]
    except KeyError as exc:
        console.print(f"[bold red]error:[/] {exc.args[0]}")
        raise typer.Exit(2) from None
    started = time.perf_counter()
    columns = (TextColumn("{task.description:<8}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]:>9} events/s"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks = {name: bar.add_task(name, total=None, rate="-") for name in names}
        begun: dict[str, tuple[float, int]] = {}

        printed: dict[str, float] = {}

        def progress(name: str, position: int, target: int) -> None:
            now = time.perf_counter()
            t0, p0 = begun.setdefault(name, (now, position))
            rate = f"{(position - p0) / (now - t0):,.0f}" if now - t0 > 0.2 else "-"
            bar.update(tasks[name], completed=position, total=max(target, position), rate=rate)
            if not console.is_terminal and now - printed.get(name, 0.0) >= 1.0:  # a log, not a bar
                printed[name] = now
                console.print(f"replay {name}: {position}/{target} ({rate} events/s)", highlight=False)

        outcomes = rebuild_all(names, nats_url, database_url, verify=verify, batch_size=batch_size,
                               on_progress=progress)
        for outcome in outcomes:
            done = max(outcome.position, 1) if not outcome.error else outcome.position
            bar.update(tasks[outcome.projection], completed=done, total=max(outcome.position, 1))
    failed = _report(outcomes, verify, time.perf_counter() - started)
    if failed:
        raise typer.Exit(1)


def _report(outcomes: list[Outcome], verify: bool, seconds: float) -> bool:
    failed = False
    for o in outcomes:
        if o.error:
            console.print(f"[bold red]{o.projection}: failed:[/] {escape(o.error)}")
            failed = True
        elif verify:
            for line in o.differences:
                console.print(f"[yellow]differs[/] {escape(line)}", highlight=False)
            verdict = "[green]same as live[/]" if not o.differences else f"[red]{len(o.differences)} differences[/]"
            console.print(f"{o.projection}: {o.events:,} events rebuilt, {verdict}")
            failed = failed or bool(o.differences)
        else:
            console.print(f"{o.projection}: {o.events:,} events in {o.seconds:.1f} s, swapped in at {o.position}")
    total = sum(o.events for o in outcomes)
    console.print(f"{total:,} events in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} events/s)")
    return failed
