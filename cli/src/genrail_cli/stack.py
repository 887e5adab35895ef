"""The local stack: embedded infrastructure plus every service as its own process.

Used by `genrail up` and by the end-to-end tests, so the tests run the system exactly as
a user does. Each service's output goes to `<data>/logs/<name>.log` and, when asked, to
an echo callback (the CLI prefixes it with the service's name).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from genrail_runtime import webhook_signing
from genrail_runtime.settings import FetchSettings
from genrail_cli.embedded import EmbeddedNats, EmbeddedPostgres, free_port, nats_cluster, require_free

DEFAULT_OUTPUT_HOSTS = FetchSettings.model_fields["provider_output_hosts"].default

# Settings the stack decides even when they are exported: the servers it started (it takes
# NATS_URL and DATABASE_URL from the environment when they name external ones) and the
# ports it was given (`genrail up --api-port`, whose default is API_PORT).
STACK_DECIDES = frozenset({"NATS_URL", "DATABASE_URL", "API_PORT", "WEBHOOKS_PORT", "LOCALPROVIDER_PORT",
                           "MAILCATCHER_PORT"})

# A provider is the user's when they set where it is or the key to it; then none of its
# local values is added. (A secret alone, e.g. STRIPE_WEBHOOK_SECRET, is theirs but keeps
# the local provider.)
PROVIDER_CHOSEN_BY: dict[str, frozenset[str]] = {
    "replicate": frozenset({"REPLICATE_API_TOKEN", "REPLICATE_BASE_URL"}),
    "stripe": frozenset({"STRIPE_API_KEY", "STRIPE_API_BASE"}),
    "openai-images": frozenset({"OPENAI_IMAGES_API_KEY", "OPENAI_IMAGES_BASE_URL"}),
}

# Mail is the user's when they set SMTP_HOST: then the stack starts no mail catcher and adds
# none of the local mail settings (their SMTP_PORT, credentials and MAIL_FROM are theirs).
MAIL_CHOSEN_BY = frozenset({"SMTP_HOST"})

SERVICES: dict[str, str] = {  # name -> module run with `python -m`, in start order
    "ledger": "genrail_ledger",
    "projector": "genrail_projector",
    "pipeline": "genrail_pipeline",
    "localprovider": "genrail_localprovider",
    "webhooks": "genrail_webhooks",
    "mailcatcher": "genrail_cli.mailcatcher",  # only when the user set no SMTP_HOST
    "api": "genrail_api",
}


@dataclass
class Ports:
    api: int = 8000
    webhooks: int = 8001
    localprovider: int = 8002
    mailcatcher: int = 0  # the local SMTP catcher; 0: a free port, chosen at start
    nats: int = 4222
    postgres: int = 5432
    # Prometheus endpoints of the workers (the API and webhooks serve /metrics on their own port).
    ledger_metrics: int = 9464
    projector_metrics: int = 9465
    pipeline_metrics: int = 9466
    # `--cluster N`: the other nodes' client ports (default: after `nats`) and every node's
    # cluster (route) port (default: 6222 on).
    nats_others: tuple[int, ...] = ()
    nats_routes: tuple[int, ...] = ()


@dataclass
class Stack:
    data_dir: Path
    ports: Ports = field(default_factory=Ports)
    nats_url: str | None = None
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    echo: Callable[[str, str], None] | None = None
    restart: bool = True  # restart what dies: services, and the embedded servers
    cluster: int = 1  # embedded nats-server nodes: 3 is a JetStream cluster with every stream on 3 replicas
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)  # one service's own settings
    host: str = "127.0.0.1"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)
    nats_nodes: list[EmbeddedNats] = field(default_factory=list, init=False)
    postgres: EmbeddedPostgres | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.ports.api}"

    @property
    def webhooks_url(self) -> str:
        return f"http://{self.host}:{self.ports.webhooks}"

    @property
    def localprovider_url(self) -> str:
        return f"http://{self.host}:{self.ports.localprovider}"

    @property
    def metrics_ports(self) -> dict[str, int]:
        """Where each process serves Prometheus metrics, at /metrics."""
        return {"api": self.ports.api, "webhooks": self.ports.webhooks, "ledger": self.ports.ledger_metrics,
                "projector": self.ports.projector_metrics, "pipeline": self.ports.pipeline_metrics}

    def metrics_env(self, name: str) -> dict[str, str]:
        """A worker's own metrics port; none for the HTTP services, which serve /metrics themselves."""
        port = getattr(self.ports, f"{name}_metrics", 0)
        return {"METRICS_HOST": self.host, "METRICS_PORT": str(port)}

    def base_env(self) -> dict[str, str]:
        """Where the stack's own parts are: its servers, ports and public URLs, and file storage."""
        media = (self.data_dir / "media").resolve()
        return {
            "NATS_URL": self.nats_url or "", "DATABASE_URL": self.database_url or "",
            **({"STREAM_REPLICAS": str(self.cluster)} if self.nats_nodes and self.cluster > 1 else {}),
            "API_HOST": self.host, "API_PORT": str(self.ports.api), "PUBLIC_URL": self.api_url,
            "WEBHOOKS_HOST": self.host, "WEBHOOKS_PORT": str(self.ports.webhooks),
            "WEBHOOKS_PUBLIC_URL": self.webhooks_url,
            "LOCALPROVIDER_HOST": self.host, "LOCALPROVIDER_PORT": str(self.ports.localprovider),
            "LOCALPROVIDER_PUBLIC_URL": self.localprovider_url,
            "LOCALPROVIDER_DATA_DIR": str((self.data_dir / "localprovider").resolve()),
            "STORAGE_URL": f"file://{media}",
            "MEDIA_URL_SECRET": self.local_secrets()["media_url"],
            "OUTGOING_WEBHOOK_KEY": self.local_secrets()["outgoing_webhooks"],
            # The local provider signs as Replicate and Stripe do, with this data directory's secrets.
            "LOCALPROVIDER_WEBHOOK_SECRET": self.local_secrets()["replicate_webhook"],
            "LOCALPROVIDER_STRIPE_WEBHOOK_SECRET": self.local_secrets()["stripe_webhook"],
            "LOCALPROVIDER_STRIPE_WEBHOOK_URL": f"{self.webhooks_url}/webhooks/stripe",
            "LOCALPROVIDER_STRIPE_PUBLIC_URL": self.localprovider_url,
            "SESSION_SECRET": self.local_secrets()["session"],
            "MAILCATCHER_HOST": self.host, "MAILCATCHER_PORT": str(self.ports.mailcatcher),
            "MAILCATCHER_DIR": str(self.mailbox_dir),
        }

    @property
    def mailbox_dir(self) -> Path:
        """Where the mail catcher keeps every mail, one .eml file each."""
        return (self.data_dir / "mailbox").resolve()

    def mail_in_use(self) -> str:
        """"local" (the embedded catcher), or "yours" when the user set SMTP_HOST."""
        return "yours" if self.user_settings().keys() & MAIL_CHOSEN_BY else "local"

    def local_mail(self) -> dict[str, str]:
        """What points the API at the catcher, and shows its mails at /dev/mailbox."""
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.ports.mailcatcher), "SMTP_STARTTLS": "false",
                "LOCAL_MAILBOX_DIR": str(self.mailbox_dir)}

    def services(self) -> list[str]:
        """The processes to run, in start order: the mail catcher only when mail is local."""
        return [name for name in SERVICES if name != "mailcatcher" or self.mail_in_use() == "local"]

    def local_providers(self) -> dict[str, dict[str, str]]:
        """Each provider's settings that point it at the local provider, by provider."""
        return {
            "replicate": {"REPLICATE_BASE_URL": self.localprovider_url, "REPLICATE_API_TOKEN": "r8_genrail_local",
                          "REPLICATE_WEBHOOK_SECRET": self.local_secrets()["replicate_webhook"]},
            "stripe": {"STRIPE_API_KEY": "sk_test_genrail_local", "STRIPE_API_BASE": self.localprovider_url,
                       "STRIPE_WEBHOOK_SECRET": self.local_secrets()["stripe_webhook"]},
            "openai-images": {"OPENAI_IMAGES_BASE_URL": f"{self.localprovider_url}/v1",
                              "OPENAI_IMAGES_API_KEY": "sk-genrail-local"},
        }

    def user_settings(self, name: str = "", env: dict[str, str] | None = None) -> dict[str, str]:
        """What the user set (the environment, non-empty) and what the stack was given."""
        exported = {key: value for key, value in os.environ.items() if value != ""}
        return {**exported, **self.env, **self.service_env.get(name, {}), **(env or {})}

    def providers_in_use(self) -> dict[str, str]:
        """Each provider: "local", or "yours" when the user configured any of its settings."""
        given = self.user_settings()
        return {provider: "yours" if given.keys() & chosen_by else "local"
                for provider, chosen_by in PROVIDER_CHOSEN_BY.items()}

    def environment(self, name: str, env: dict[str, str] | None = None) -> dict[str, str]:
        """A service's environment. What the user set wins, never overridden: a provider any
        the user chose (`PROVIDER_CHOSEN_BY`) is theirs entirely (none of its local values
        is added), so `REPLICATE_API_TOKEN` alone reaches Replicate itself. The stack keeps
        only what it must decide per process: which servers it started, the ports it was
        given, and each worker's metrics port."""
        given = self.user_settings(name, env)
        local = {key: value for provider, settings in self.local_providers().items()
                 if not given.keys() & PROVIDER_CHOSEN_BY[provider] for key, value in settings.items()}
        if not given.keys() & MAIL_CHOSEN_BY:
            local.update(self.local_mail())
        decided = {key: value for key, value in self.base_env().items()
                   if key in STACK_DECIDES or key not in given}
        full = {**os.environ, **local, **given, **decided, **self.metrics_env(name)}
        # The local provider's outputs are fetched through the guard, which refuses loopback
        # unless told: its one address and port are added to what the user allows (or to the
        # defaults: real providers' output hosts, no private address).
        local_address = f"{self.host}:{self.ports.localprovider}"
        for setting, default in (("FETCH_ALLOW", ""), ("PROVIDER_OUTPUT_HOSTS", DEFAULT_OUTPUT_HOSTS)):
            full[setting] = ",".join(filter(None, [local_address, given.get(setting, default)]))
        return full

    def local_secrets(self) -> dict[str, str]:
        """Secrets of this data directory: made once, kept, so URLs and webhooks survive
        restarts; one missing from an older data directory is made then. None is a value
        anyone else knows, so a stack exposed by mistake takes no forged payment events."""
        path = self.data_dir / "secrets.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        makers = {"replicate_webhook": webhook_signing.new_secret, "stripe_webhook": webhook_signing.new_secret,
                  "media_url": lambda: secrets.token_urlsafe(32),
                  "outgoing_webhooks": lambda: secrets.token_urlsafe(32),
                  "session": lambda: secrets.token_urlsafe(32)}
        missing = {name: make() for name, make in makers.items() if name not in known}
        if missing:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**known, **missing}))
            path.chmod(0o600)
        return {**known, **missing}

    def start(self, timeout_s: float = 60) -> Stack:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        workers_metrics = [(f"{worker} metrics", self.metrics_ports[worker])
                           for worker in ("ledger", "projector", "pipeline")]
        for name, port in (("API", self.ports.api), ("webhooks", self.ports.webhooks),
                           ("local provider", self.ports.localprovider), *workers_metrics):
            require_free(self.host, port, f"the {name}")
        if "mailcatcher" in self.services():
            if not self.ports.mailcatcher:
                self.ports.mailcatcher = free_port(self.host)
            require_free(self.host, self.ports.mailcatcher, "the mail catcher")
        try:
            if not self.nats_url:
                self.nats_nodes = self._embedded_nats()
                for node in self.nats_nodes:
                    node.start()
                self.nats_url = ",".join(node.url for node in self.nats_nodes)
                if self.cluster > 1:
                    wait_for_jetstream(self.nats_url, self.cluster, timeout_s)
            if not self.database_url:
                self.postgres = EmbeddedPostgres(self.data_dir / "postgres", port=self.ports.postgres,
                                            host=self.host).start()
                self.database_url = self.postgres.url
            for name in self.services():
                self.start_service(name)
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()  # a start that fails leaves nothing running behind it
            raise
        threading.Thread(target=self._supervise, daemon=True).start()
        return self

    def _embedded_nats(self) -> list[EmbeddedNats]:
        if self.cluster <= 1:
            return [EmbeddedNats(self.data_dir / "nats", port=self.ports.nats, host=self.host)]
        clients = [self.ports.nats, *(self.ports.nats_others or [self.ports.nats + i for i in range(1, self.cluster)])]
        routes = list(self.ports.nats_routes or [6222 + i for i in range(self.cluster)])
        return nats_cluster(self.data_dir / "nats-cluster", clients, routes, host=self.host)

    def start_service(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = self.environment(name, env)
        log_file = open(self.data_dir / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", SERVICES[name]], env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._pump, args=(name, proc, log_file), daemon=True).start()
        with self._lock:
            self.procs[name] = proc
        return proc

    def _pump(self, name: str, proc: subprocess.Popen, log_file) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log_file.write(raw)
            log_file.flush()
            if self.echo:
                self.echo(name, raw.decode(errors="replace").rstrip("\n"))
        log_file.close()

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for url in (f"{self.api_url}/healthz", f"{self.webhooks_url}/healthz", f"{self.localprovider_url}/healthz"):
            while True:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"the stack did not become healthy ({url}); exited: {dead}; "
                                       f"see {self.data_dir / 'logs'}")
                time.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with self._lock:
            proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(30)

    def _supervise(self) -> None:
        """Restart a service that died on its own (not one `kill` took away), and the
        embedded nats-server and PostgreSQL when they die (`poll` reaps the dead process,
        so none is left a zombie); a server that cannot start yet is tried again."""
        while not self._stopping:
            time.sleep(0.5)
            if not self.restart:
                continue
            servers = [(f"nats-server {node.name or ''}".strip(), node) for node in self.nats_nodes]
            for name, server in (*servers, ("PostgreSQL", self.postgres)):
                if self._stopping or server is None or server.proc is None or server.proc.poll() is None:
                    continue
                self._say(f"{name} exited with {server.proc.returncode}; restarting it")
                try:
                    server.start()
                except Exception as exc:  # noqa: BLE001 - e.g. its port not yet free: the next round tries again
                    self._say(f"{name} did not start again ({exc}); trying again")
            with self._lock:
                dead = [n for n, p in self.procs.items() if p.poll() is not None]
            for name in dead:
                if self._stopping:
                    break
                self._say(f"{name} exited with {self.procs[name].returncode}; restarting it")
                self.start_service(name)

    def _say(self, line: str) -> None:
        if self.echo:
            self.echo("genrail", line)

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            procs = list(self.procs.items())
        for _name, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.postgres:
            self.postgres.stop()
        for node in self.nats_nodes:
            node.stop()


def wait_for_jetstream(nats_url: str, replicas: int, timeout_s: float) -> None:
    """Until the cluster has elected its JetStream leaders and holds every stream on
    `replicas` nodes: the services start only then, instead of failing their first tries."""
    import asyncio

    from genrail_eventlog.store import open_log

    async def ready() -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                async with open_log(nats_url, "genrail-up", replicas=replicas):
                    return
            except Exception:  # noqa: BLE001 - not elected yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    asyncio.run(ready())
