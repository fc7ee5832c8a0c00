"""End to end: events with known usernames and IPs go through the enriched topic and the
real ClickHouse sink (in-process, real broker, real chdb); no String column of any table
in the analyst database holds a raw username or IP afterwards."""

from __future__ import annotations

from confluent_kafka import Producer

from edxstream.core import clickhouse, kafka_admin
from edxstream.core.records import encode
from sinks import clickhouse_sink
from tests.test_analyst_data import LEARNERS, build

NEEDLES = [*LEARNERS, *(ip for _, ip in LEARNERS.values()), "198.51.100."]


def leaks(client) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every raw value found in any string column."""
    cols = client.query(
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() "
        "AND (type LIKE '%String%') AND table IN (SELECT name FROM system.tables "
        "WHERE database = currentDatabase() AND engine NOT LIKE '%View%')"
    ).result_rows
    assert ("events", "payload") in cols and ("events", "username") in cols
    found = []
    for table, column in cols:
        for needle in NEEDLES:
            n = client.command(
                f"SELECT count() FROM `{table}` WHERE positionCaseInsensitive(toString(`{column}`), %(n)s) > 0",
                parameters={"n": needle},
            )
            if int(n):
                found.append((table, column, needle))
    return found


def test_no_raw_username_or_ip_reaches_clickhouse(settings):
    assert settings.pseudonymize  # the default
    events = build()
    kafka_admin.ensure_topics(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for e in events:
        producer.produce(settings.enriched_topic, key=(e.course_id or "").encode(), value=encode(e))
    assert producer.flush(30) == 0

    stats = clickhouse_sink.run(settings, max_idle_seconds=3)
    client = clickhouse.connect(settings)
    assert client.command("SELECT count() FROM events FINAL") == len(events), stats
    assert leaks(client) == []
    # and what analysts need survived: learners stay distinct and joinable
    assert client.command("SELECT uniqExact(user_id) FROM events") == 3
    assert client.command("SELECT count() FROM events WHERE ip IS NOT NULL") == 0


def test_the_check_finds_raw_values_when_pseudonymization_is_off(settings):
    """The scan above is not vacuous: with pseudonymization off, it finds everything."""
    settings = settings.model_copy(update={"pseudonymize": False})
    events = build()
    kafka_admin.ensure_topics(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for e in events:
        producer.produce(settings.enriched_topic, value=encode(e))
    assert producer.flush(30) == 0
    clickhouse_sink.run(settings, max_idle_seconds=3)
    found = {(c, n) for _, c, n in leaks(clickhouse.connect(settings))}
    assert {("username", "alice_w"), ("ip", "198.51.100.23"), ("payload", "alice_w"), ("page", "alice_w")} <= found
