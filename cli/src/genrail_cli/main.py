"""The `genrail` command."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .stack import Ports, Stack

app = typer.Typer(help="genrail: paid AI generation jobs on an event log.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
COLORS = {"ledger": "magenta", "projector": "blue", "pipeline": "green", "localprovider": "yellow",
          "webhooks": "cyan", "api": "bright_white", "genrail": "bold red"}


def echo(name: str, line: str) -> None:
    console.print(f"[{COLORS.get(name, 'white')}]{name:>13}[/] | {line}", markup=True, highlight=False,
                  soft_wrap=True)


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(envvar="GENRAIL_DATA_DIR", help="Where every byte of state lives")] = Path(".genrail"),
    api_port: Annotated[int, typer.Option(envvar="API_PORT")] = 8000,
    webhooks_port: Annotated[int, typer.Option(envvar="WEBHOOKS_PORT")] = 8001,
    localprovider_port: Annotated[int, typer.Option(envvar="LOCALPROVIDER_PORT")] = 8002,
    nats_port: Annotated[int, typer.Option(help="Port of the embedded nats-server")] = 4222,
    postgres_port: Annotated[int, typer.Option(help="Port of the embedded PostgreSQL")] = 5432,
    demo: Annotated[bool, typer.Option(help="Register a demo user and run a job once the stack is up")] = False,
    cluster: Annotated[int, typer.Option(min=1, help="Embedded nats-server nodes: 3 runs a JetStream cluster on "
                                                     "loopback (client ports from --nats-port on, routes from 6222) "
                                                     "with every stream on 3 replicas, to try failover")] = 1,
) -> None:
    """Start the whole system: embedded NATS and PostgreSQL (unless NATS_URL / DATABASE_URL
    name external ones), then every service as its own process. Ctrl-C stops it all."""
    from genrail_cli.embedded import PortInUse

    stack = Stack(data_dir=data_dir.resolve(), echo=echo, cluster=cluster,
                  ports=Ports(api=api_port, webhooks=webhooks_port, localprovider=localprovider_port,
                              nats=nats_port, postgres=postgres_port),
                  nats_url=os.environ.get("NATS_URL") or None, database_url=os.environ.get("DATABASE_URL") or None)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stack.start()
    except PortInUse as exc:
        console.print(f"[bold red]error:[/] {exc}")
        stack.stop()
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - say what failed, then clean up
        console.print(f"[bold red]error:[/] {exc}")
        stack.stop()
        raise typer.Exit(1) from None
    console.rule("[bold green]genrail is up")
    providers = ", ".join(f"{name} ({'the local provider' if where == 'local' else 'your settings'})"
                          for name, where in stack.providers_in_use().items())
    mail = f"{stack.api_url}/dev/mailbox (caught locally)" if stack.mail_in_use() == "local" else "your SMTP_HOST"
    console.print(f"Studio     {stack.api_url}/signin (any email: its sign-in link is in the mailbox)\n"
                  f"API        {stack.api_url}\nAPI docs   {stack.api_url}/docs\n"
                  f"Webhooks   {stack.webhooks_url}\nProvider   {stack.localprovider_url} (local)\n"
                  f"Providers  {providers}\n"
                  f"Mail       {mail}\n"
                  f"NATS       {stack.nats_url}\n"
                  f"Data       {data_dir.resolve()}\nStop       Ctrl-C")
    try:
        if demo:
            from .demo import run_demo

            run_demo(stack.api_url, console)
        while not stopped.is_set():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("[bold]stopping…[/]")
        stack.stop()
        console.print("[bold]stopped[/]")


from .audit import audit_command  # noqa: E402 - the operating commands, after `up`
from .dlq import dlq_app  # noqa: E402
from .events import events_app  # noqa: E402
from .init import init_command  # noqa: E402
from .quarantine import quarantine_command  # noqa: E402
from .replay import replay  # noqa: E402

app.command("init")(init_command)
app.command("replay")(replay)
app.command("audit")(audit_command)
app.command("quarantine")(quarantine_command)
app.add_typer(dlq_app, name="dlq")
app.add_typer(events_app, name="events")

if __name__ == "__main__":
    app()
