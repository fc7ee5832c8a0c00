"""The stream app's tables: names, changelog topics, and writes that recover exactly.

Two details make table state come back exactly after a restart or a rebalance:

1. Every write names its changelog partition explicitly: the partition of the source
   topic the key belongs to (raw partition for ``shipped``, enriched partition for the
   counts). Faust would otherwise use the partition of "the current event", which in a
   batch (``stream.take``) mixing partitions is the last event's partition, and a key
   would be recovered by the wrong worker.

2. Each burst of writes ends, in every changelog partition it touched, with one small
   marker record alone in its own produce batch. Faust recovery reads a changelog partition up to its high watermark
   (ListOffsets LATEST). Some brokers (Tansu) report the base offset of the last
   record *batch* + 1 as the high watermark, so recovery would stop before the tail of
   a multi-record batch; ending every write burst with a one-record batch makes the
   reported high watermark exact. On Apache Kafka the marker is just a tiny extra
   record (compaction keeps one per partition).
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

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
    return f"{partition}|{fp}"


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


def changelog_topics(settings: Settings) -> list[str]:
    """The changelog topics holding the stream app's state. Deleting them (with the
    app stopped) resets the counts and the replay-dedup memory."""
    return [changelog_topic(settings, t) for t in TABLES]


def internal_topics(settings: Settings) -> list[str]:
    """Every topic the stream app creates for itself (changelogs and Faust's assignor
    leader topic)."""
    return changelog_topics(settings) + [f"{settings.app_id}-__assignor-__leader"]


V = TypeVar("V")


class StateTable(Generic[V]):
    """A Faust table used as a partitioned, recoverable dict of msgspec values.

    Reads go to the table's store; values recovered from the changelog arrive as bytes
    and are decoded on first use. Writes are collected with :meth:`put` and sent by
    :meth:`write` (explicit partitions, then markers; see the module doc)."""

    def __init__(self, table: Any, encode: Callable[[V], bytes], decode: Callable[[bytes], V]):
        self.table = table
        self.encode = encode
        self.decode = decode
        self._pending: dict[str, tuple[int, Optional[V]]] = {}
        self._dict: Optional[dict] = None

    @property
    def store(self):
        # Faust's in-memory store keeps a plain dict behind Python-level Mapping methods
        # (a missing key raises and catches KeyError); this is read for every event, so
        # go to the dict itself. Other stores are used as they are.
        if self._dict is not None:
            return self._dict
        store = self.table.data
        raw = getattr(store, "data", None)
        if type(raw) is dict:
            self._dict = raw
            return raw
        return store

    def get(self, key: str) -> Optional[V]:
        store = self.store
        value = store.get(key)
        if value is None or value.__class__ is not bytes:
            return value
        if not value:  # a marker
            return None
        value = self.decode(value)
        store[key] = value
        return value

    def items(self) -> Iterator[tuple[str, V]]:
        for key in list(self.store.keys()):
            if key == MARKER_KEY:
                continue
            value = self.get(key)
            if value is not None:
                yield key, value

    def put(self, partition: int, key: str, value: V) -> None:
        self.store[key] = value
        self._pending[key] = (partition, value)

    def delete(self, partition: int, key: str) -> None:
        self.store.pop(key, None)
        self._pending[key] = (partition, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def write(self, out: Any) -> int:
        """Send the pending writes to the changelog (through a
        :class:`stream_app.output.Output`), each touched partition ending with a
        one-record marker batch, and wait until they are durable. Returns the number of
        records written (markers excluded)."""
        if not self._pending:
            return 0
        topic = self.table.changelog_topic.get_topic_name()
        partitions = set()
        n = 0
        for key, (partition, value) in self._pending.items():
            await out.add(topic, partition, orjson.dumps(key), None if value is None else self.encode(value))
            partitions.add(partition)
            n += 1
        self._pending.clear()
        for partition in sorted(partitions):
            await out.add_alone(topic, partition, MARKER_KEY_BYTES, b"")
        await out.wait()
        return n


def seed_shipped(settings: Settings, done: dict[int, tuple[str, int]], timeout: float = 30.0) -> None:
    """Before a worker starts on fresh tables (a replay): record that raw partition p has
    processed file ``fp`` up to byte offset ``o`` for each ``p: (fp, o)``, exactly as the
    enrich agent would have, so it skips those lines. A replay uses it to start in the
    middle of a raw record that holds several lines."""
    from confluent_kafka import Producer

    from edxstream.core import kafka_admin

    topic = changelog_topic(settings, SHIPPED)
    kafka_admin.ensure_topics(settings, [topic], config={topic: {"cleanup.policy": "compact"}})
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                         "logger": kafka_admin.LIBRDKAFKA_LOG})

    def send(partition: int, key: bytes, value: bytes) -> None:
        producer.produce(topic, key=key, value=value, partition=partition)
        # flushed alone: the marker must be a batch of its own (see the module doc)
        if producer.flush(timeout):
            raise TimeoutError(f"could not write to {topic} within {timeout}s")

    for partition, (fp, offset) in sorted(done.items()):
        send(partition, orjson.dumps(shipped_key(partition, fp)), b"%d" % offset)
        send(partition, MARKER_KEY_BYTES, b"")
