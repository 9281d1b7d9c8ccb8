"""A throwaway PostgreSQL server for the demo and the tests, from the binaries the ``pgserver`` wheel ships.

It listens on 127.0.0.1 and a free port (the JDBC driver needs TCP), keeps its data in an ignored local
folder, requires a password over TCP (scram-sha-256) so that the password handling is exercised like in
production, and is stopped cleanly when the context exits. PostgreSQL refuses to run as root; when we are
root (CI is), the server runs as an unprivileged system user, as pgserver itself does.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spark_src.common.config import DbConfig

log = logging.getLogger(__name__)

SYSTEM_USER = "pgserver"  # the same unprivileged user the pgserver wheel creates when run as root
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / ".local" / "postgres"


@dataclass(frozen=True)
class EmbeddedPostgres:
    config: DbConfig
    password: str
    data_dir: Path


def _bin_dir() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _run_as(user: str | None, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, user=user, **kwargs)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"{Path(args[0]).name} failed ({err.returncode}): {err.stderr.strip()}") from err


def _prepare_for_unprivileged_user(data_dir: Path) -> str | None:
    """As root, create the system user and let it reach the binaries and the data folder."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    bin_dir = _bin_dir()
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_prefix_permissions(data_dir)
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


@contextmanager
def embedded_postgres(
    root: Path = DEFAULT_ROOT, dbname: str = "defi", user: str = "defi", keep_data: bool = False
) -> Iterator[EmbeddedPostgres]:
    """Starts a fresh PostgreSQL 16 server, creates ``dbname`` owned by ``user``, yields its settings.

    The data folder is a new subfolder of ``root``; it is removed at exit unless ``keep_data``.
    The password is generated here and exported as ``DB_PASSWORD`` only by the caller that needs it.
    """
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / f"pg-{os.getpid()}-{secrets.token_hex(3)}"
    cluster = data_dir / "cluster"
    data_dir.mkdir()
    password = secrets.token_urlsafe(18)
    pwfile = data_dir / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    run_user = _prepare_for_unprivileged_user(data_dir)
    bin_dir = _bin_dir()
    port = free_port()
    started = False
    try:
        _run_as(
            run_user,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
        )
        pwfile.unlink()
        _run_as(
            run_user,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(cluster),
                "-w",
                "-t",
                "60",
                "-l",
                str(data_dir / "server.log"),
                # TCP on loopback only; the socket lives in our folder, not in /var/run.
                "-o",
                f"-h 127.0.0.1 -p {port} -k {data_dir} -c fsync=off -c full_page_writes=off",
                "start",
            ],
        )
        started = True
        config = DbConfig("127.0.0.1", port, dbname, user)
        _create_database(config, password)
        log.info("embedded PostgreSQL ready at %s (data in %s)", config.url, data_dir)
        yield EmbeddedPostgres(config=config, password=password, data_dir=data_dir)
    finally:
        if started:
            try:
                _run_as(run_user, [str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"])
            except RuntimeError as err:  # report, but still clean up
                log.warning("stopping the embedded PostgreSQL failed: %s", err)
        if not keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)


def _create_database(config: DbConfig, password: str) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(
                host=config.host, port=config.port, user=config.user, password=password, dbname="postgres"
            )
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{config.name}" OWNER "{config.user}"')
    finally:
        conn.close()
