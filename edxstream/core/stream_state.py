"""The stream app's table state as other processes see it: the tables' names, their
changelog topics, the key of the ``shipped`` table, the end-of-burst marker, and the one
write from outside the stream app (a replay seeding ``shipped``). The stream app's
reading and writing of these tables is :mod:`stream_app.state`, which explains the
marker."""

from __future__ import annotations

import orjson

from edxstream.core.settings import Settings

# Faust table names; the changelog topic of table T is "<app id>-T-changelog".
SHIPPED = "shipped"  # shipped_key(raw partition, file fingerprint) -> highest byte offset done
COUNTS = "counts"  # windows.cell_key(partition, course, size, start) -> windows.Cell
PARTITIONS = "partitions"  # str(enriched partition) -> windows.PartitionState
TABLES = (SHIPPED, COUNTS, PARTITIONS)

MARKER_KEY = "\x00sync"
MARKER_KEY_BYTES = orjson.dumps(MARKER_KEY)


def shipped_key(partition: int, fp: str) -> str:
    """Key of the ``shipped`` table: how far raw partition ``partition`` got in file ``fp``."""
    return f"{partition}|{fp}"


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name of a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def changelog_topics(settings: Settings) -> list[str]:
    """The changelog topics holding the stream app's state. Deleting them (with the
    app stopped) resets the counts and the replay-dedup memory."""
    return [changelog_topic(settings, t) for t in TABLES]


def internal_topics(settings: Settings) -> list[str]:
    """Every topic the stream app creates for itself (changelogs and Faust's assignor
    leader topic)."""
    return changelog_topics(settings) + [f"{settings.app_id}-__assignor-__leader"]


def seed_shipped(settings: Settings, done: dict[int, tuple[str, int]], timeout: float = 30.0) -> None:
    """Before a worker starts on fresh tables (a replay): record that raw partition p has
    processed file ``fp`` up to byte offset ``o`` for each ``p: (fp, o)``, exactly as the
    enrich agent would have, so it skips those lines. A replay uses it to start in the
    middle of a raw record that holds several lines."""
    from confluent_kafka import Producer

    from edxstream.core import kafka_admin

    topic = changelog_topic(settings, SHIPPED)
    kafka_admin.ensure_topics(settings, [topic], config={topic: {"cleanup.policy": "compact"}})
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            **kafka_admin.DELIVERY_CONFIG,
            "logger": kafka_admin.LIBRDKAFKA_LOG,
        }
    )

    def send(partition: int, key: bytes, value: bytes) -> None:
        producer.produce(topic, key=key, value=value, partition=partition)
        # flushed alone: the marker must be a batch of its own (see the module doc)
        if producer.flush(timeout):
            raise TimeoutError(f"could not write to {topic} within {timeout}s")

    for partition, (fp, offset) in sorted(done.items()):
        send(partition, orjson.dumps(shipped_key(partition, fp)), b"%d" % offset)
        send(partition, MARKER_KEY_BYTES, b"")
