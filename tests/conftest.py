"""Real services for the tests, started once per session, and per-test isolation.

- ``broker``: a Tansu broker on a free loopback port (memory store), for the session.
- ``mariadb``: the machine's MariaDB (started if it is installed but not running).
- ``chdb_path``: the one embedded ClickHouse folder this process may open (chdb allows
  one per process); tests are isolated by database inside it.
- ``settings``: a Settings object whose topics, MySQL database, ClickHouse database,
  home and checkpoints are this test's own, so tests never see each other's data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pymysql
import pytest

from edxstream.core import settings as settings_mod
from edxstream.ops import stack

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Tansu broker the tests can stop and start again on the same port."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = tmp / "broker.log"
        self.binary = stack.tansu_binary(settings_mod.load())
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = stack.start_broker(self.binary, "127.0.0.1", self.port, self.log)

    def stop(self) -> None:
        """Kill the broker. Its memory store goes with it: topics start empty again."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Broker:
    b = Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


class PersistentBroker(Broker):
    """A Tansu broker on the s3:// store of its own SeaweedFS (EDXSTREAM_BROKER_STORAGE=s3):
    topics, messages and committed offsets survive ``stop()``/``start()``, and also
    ``stop_store()`` (the object store crashing) followed by ``start()``."""

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        self.store = stack.ObjectStore.at(tmp / "seaweedfs")
        self.store_log = tmp / "seaweedfs.log"
        self.store_proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.store_proc is None or self.store_proc.poll() is not None:
            self.store_proc = stack.start_object_store(stack.weed_binary(), self.store, self.store_log)
        if not self.running:
            self.proc = stack.start_broker(
                self.binary, "127.0.0.1", self.port, self.log, stack.S3_STORAGE, self.store.broker_env()
            )

    def stop_store(self) -> None:
        """Kill the broker and then SeaweedFS (SIGKILL: a crash, not a clean shutdown)."""
        self.stop()
        if self.store_proc is not None:
            stack.stop_process(self.store_proc.pid, timeout=0.5)
        self.store_proc = None


@pytest.fixture(scope="session")
def _persistent_broker_session(tmp_path_factory) -> PersistentBroker:
    b = PersistentBroker(tmp_path_factory.mktemp("persistent-broker"))
    b.start()
    yield b
    b.stop_store()


@pytest.fixture
def persistent_broker(_persistent_broker_session) -> PersistentBroker:
    """The session's persistent broker, running at the start of the test (a test may stop
    and start it; give it your own topics: ``settings.model_copy(update={"kafka_bootstrap":
    persistent_broker.bootstrap})``)."""
    _persistent_broker_session.start()
    return _persistent_broker_session


MYSQL_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


@pytest.fixture(scope="session")
def mariadb() -> dict:
    s = settings_mod.load()
    stack.mysql_up(s)  # starts the machine's MariaDB if needed; clear error if missing
    return MYSQL_ADMIN


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chdb")


def test_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(broker, mariadb, chdb_path, tmp_path) -> settings_mod.Settings:
    tid = test_id()
    db = f"edxstream_t{tid}"
    conn = pymysql.connect(**mariadb)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.commit()
    s = settings_mod.load(
        home=tmp_path / "home",
        kafka_bootstrap=broker.bootstrap,
        broker_storage="memory",  # the session's broker
        raw_topic=f"t{tid}.raw",
        enriched_topic=f"t{tid}.enriched",
        deadletter_topic=f"t{tid}.deadletter",
        aggregates_topic=f"t{tid}.aggregates",
        app_id=f"edxstream-t{tid}",
        partitions=2,
        mysql_dsn=f"mysql://root:@127.0.0.1:3306/{db}",
        clickhouse_url=f"chdb://{chdb_path}",
        clickhouse_database=f"t{tid}",
        web_port=free_port(),
        pseudonym_key=f"test-pseudonym-key-{tid}",  # the sinks refuse the default key
        web_app_port=free_port(),
    )
    yield s
    from edxstream.ops import stack

    stack.web_down(s)  # a web app a test (the demo, stack up) started under this home
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    conn.commit()
    conn.close()


def env_for(s: settings_mod.Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a subprocess (``edxstream ...``) the same settings.

    A subprocess cannot share this process's chdb folder, so it gets its own unless the
    caller passes EDXSTREAM_CLICKHOUSE_URL."""
    env = dict(os.environ)
    for name, value in s.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = "[" + ",".join(str(v) for v in value) + "]"
        env[f"EDXSTREAM_{name.upper()}"] = str(value)
    env["EDXSTREAM_CLICKHOUSE_URL"] = f"chdb://{s.home / 'clickhouse-subprocess'}"
    env.update(extra)
    return env


def edxstream_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edxstream.cli", *args]


def wait_inactive(settings, groups, timeout: float = 60) -> None:
    """A stopped consumer leaves its group; the broker may take a session timeout."""
    from edxstream.ops.replay import active_members

    consumes = {
        settings.stream_group: [settings.raw_topic, settings.tally_topic],
        settings.mysql_sink_group: [settings.enriched_topic, settings.deadletter_topic],
        settings.clickhouse_sink_group: [settings.aggregates_topic, settings.enriched_topic],
    }
    groups = {g: consumes[g] for g in groups}
    deadline = time.monotonic() + timeout
    while active_members(settings, groups):
        assert time.monotonic() < deadline, f"groups still active: {active_members(settings, groups)}"
        time.sleep(0.5)


# The embedded ClickHouse engine (chdb), loaded in this process by the tests that query it
# in-process, can crash while the interpreter tears down after the last test (its global
# context shuts down after Python has started freeing modules). The run's verdict is
# pytest's exit status, reported by then; leave with it without the teardown, so that a
# crash after the summary cannot turn a passing run into a failing one, nor the reverse.
_exit_status: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _exit_status and "chdb" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
