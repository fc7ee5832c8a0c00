"""infra/docker-compose.yml, checked without a Docker engine: it is a valid Compose file
(the compose-spec JSON schema vendored by check-jsonschema), every pipeline command is a
real `edxstream` subcommand, and its names and sizes are the Settings defaults that
`edxstream stack up` uses. Also the image's build inputs and the container health check."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from edxstream import cli
from edxstream.core import settings as settings_mod
from tests.conftest import REPO

INFRA = REPO / "infra"
COMPOSE = INFRA / "docker-compose.yml"
PIPELINE = ("db-init", "shipper", "stream", "sink-mysql", "sink-clickhouse")
# settings whose value is an address or a secret: they differ from the local stack by design
ADDRESSES = {"home", "kafka_bootstrap", "mysql_dsn", "clickhouse_url", "pseudonym_key"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the environment empty, as `docker compose config` does."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def _settings_for(service: dict) -> settings_mod.Settings:
    env = {k: _interpolate(str(v)) for k, v in service["environment"].items()}
    fields = set(settings_mod.Settings.model_fields)
    unknown = [k for k in env if k.startswith("EDXSTREAM_") and k.removeprefix("EDXSTREAM_").lower() not in fields]
    assert not unknown, f"environment names no Settings field: {unknown}"
    overrides = {k.removeprefix("EDXSTREAM_").lower(): v for k, v in env.items() if k.startswith("EDXSTREAM_")}
    # through pydantic's own parsing of env values (lists as JSON), not the constructor
    old = dict(os.environ)
    try:
        for k in [k for k in os.environ if k.startswith("EDXSTREAM_")]:
            del os.environ[k]
        os.environ.update({f"EDXSTREAM_{k.upper()}": v for k, v in overrides.items()})
        return settings_mod.load()
    finally:
        os.environ.clear()
        os.environ.update(old)


def compose_spec() -> dict:
    """The compose-spec JSON schema that check-jsonschema vendors (read as a data file:
    importing check_jsonschema pulls in its CLI, which needs a newer click than Faust allows)."""
    path = importlib.metadata.distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
    )
    return json.loads(Path(path).read_text())


def test_compose_file_matches_the_compose_spec_schema(compose):
    schema = compose_spec()
    assert "services" in schema["properties"]
    jsonschema.validate(compose, schema, cls=jsonschema.Draft202012Validator)


def test_schema_check_catches_a_broken_file(compose):
    # the validation above is not vacuous: a misspelt key and a wrong type fail it
    schema = compose_spec()
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["kafka"]["helthcheck"] = broken["services"]["kafka"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["mysql"]["ports"] = 3306
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_every_service_is_there_with_a_health_check(compose):
    services = compose["services"]
    assert {"kafka", "mysql", "clickhouse", *PIPELINE} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for name, svc in services.items():
        if name == "db-init":  # one-shot; the sinks wait for it to complete
            assert svc["restart"] == "no"
            continue
        test = svc["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    for name in ("sink-mysql", "sink-clickhouse"):
        assert services[name]["depends_on"]["db-init"]["condition"] == "service_completed_successfully"
    for name in PIPELINE[1:]:  # db-init needs only the databases
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_kafka_runs_kraft_single_node_and_advertises_what_the_components_use(compose):
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    # clients on the host use the local stack's default address
    assert f"HOST://{settings_mod.Settings().kafka_bootstrap}" in env["KAFKA_ADVERTISED_LISTENERS"]
    component = _settings_for(compose["services"]["stream"])
    assert component.kafka_bootstrap == "kafka:9092"
    assert int(env["KAFKA_NUM_PARTITIONS"]) == component.partitions


def test_pipeline_settings_are_the_local_stack_defaults(compose):
    defaults = settings_mod.Settings()
    for name in PIPELINE:
        s = _settings_for(compose["services"][name])
        for field in settings_mod.Settings.model_fields:
            if field in ADDRESSES:
                continue
            assert getattr(s, field) == getattr(defaults, field), f"{name}: {field}"
        assert s.topics == defaults.topics
        assert s.home == Path("/data")


def test_databases_and_credentials_agree_between_services(compose):
    services = compose["services"]
    s = _settings_for(services["sink-mysql"])
    m = s.mysql
    mysql_env = services["mysql"]["environment"]
    assert (m["host"], m["port"]) == ("mysql", 3306)
    assert m["database"] == mysql_env["MYSQL_DATABASE"] == settings_mod.Settings().mysql["database"]
    assert (m["user"], m["password"]) == (mysql_env["MYSQL_USER"], mysql_env["MYSQL_PASSWORD"])
    ch = _settings_for(services["sink-clickhouse"])
    ch_env = services["clickhouse"]["environment"]
    assert ch.clickhouse_embedded_path is None  # a server, through the same connect() as chdb
    assert ch.clickhouse_url == f"http://{ch_env['CLICKHOUSE_USER']}:{ch_env['CLICKHOUSE_PASSWORD']}@clickhouse:8123"
    assert ch.clickhouse_database == ch_env["CLICKHOUSE_DB"]
    init = (INFRA / "mysql-init.sql").read_text()
    assert "utf8mb4_bin" in init and "--collation-server=utf8mb4_bin" in services["mysql"]["command"]


def test_pipeline_commands_are_real_subcommands(compose):
    parser = cli.build_parser()
    for name in PIPELINE:
        command = compose["services"][name]["command"]
        args = parser.parse_args(command)  # exits (SystemExit) on an unknown subcommand
        assert callable(args.func), name
    assert compose["services"]["shipper"]["command"][0] == "ship"
    assert compose["services"]["stream"]["command"] == ["process"]


def test_image_build_inputs_exist(compose):
    dockerfile = (INFRA / "Dockerfile").read_text()
    for name in PIPELINE:
        build = compose["services"][name]["build"]
        context = (INFRA / build["context"]).resolve()
        assert context == REPO and (context / build["dockerfile"]).is_file()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), src
    assert 'ENTRYPOINT ["edxstream"]' in dockerfile
    assert "pip install --no-deps ." in dockerfile
    # every package the project installs is copied into the image
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = re.search(r"include = \[(.*?)\]", pyproject).group(1)
    for pkg in re.findall(r'"(\w+)\*"', packages):
        assert f"COPY {pkg} ./{pkg}" in dockerfile, pkg
    for name in PIPELINE[1:]:
        for check in compose["services"][name]["healthcheck"]["test"][1:]:
            if check.startswith("/app/"):
                assert (REPO / check.removeprefix("/app/")).is_file(), check


def test_wheel_carries_migrations_and_pages(tmp_path):
    """The image installs the wheel, not the source tree: the SQL migrations and the live
    page must travel as package data."""
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("edxstream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {str(p.relative_to(REPO)) for p in (REPO / "sinks" / "migrations").glob("*/*.sql")}
    assert wanted and wanted <= names, wanted - names
    assert "stream_app/static/live.html" in names


def test_healthcheck_follows_the_metrics_file(tmp_path):
    script = INFRA / "healthcheck.py"
    env = {**os.environ, "EDXSTREAM_HOME": str(tmp_path)}

    def check(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True)

    r = check("stream")
    assert r.returncode == 1 and "no metrics file" in r.stderr
    metrics = tmp_path / "run" / "stream.metrics.json"
    metrics.parent.mkdir()
    metrics.write_text("{}")
    assert check("stream").returncode == 0
    old = time.time() - 120
    os.utime(metrics, (old, old))
    r = check("stream", "60")
    assert r.returncode == 1 and "120s ago" in r.stderr
    assert check("stream", "300").returncode == 0
    assert check().returncode == 2
