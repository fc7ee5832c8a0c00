"""Producing many records per batch cheaply: records are appended to one aiokafka
BatchBuilder per topic partition and each builder is submitted once, instead of one
``send()`` (partitioner, metadata lookup, accumulator append, sensors) per record.

Partitions are chosen with the producer's own partitioner (murmur2 of the key, as
Kafka's Java client does), so consumers keyed by course or by window see what a plain
keyed ``send()`` would have produced."""

from __future__ import annotations

import asyncio
from typing import Any, Optional, Sequence

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

CODECS = {
    "none": None,
    "gzip": DefaultRecordBatch.CODEC_GZIP,
    "snappy": DefaultRecordBatch.CODEC_SNAPPY,
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}


class Output:
    """Per-batch outputs of one agent. ``add`` records, ``submit`` the open batches,
    ``wait`` until everything submitted is acknowledged by the broker.

    ``compress``: topics whose batches are compressed, with the codec (a name of
    ``CODECS``), and ``batch_bytes`` the size of those batches; other topics get the
    producer's own batches (uncompressed, as the app is configured)."""

    def __init__(self, app: Any, compress: Optional[dict[str, str]] = None, batch_bytes: int = 512 * 1024):
        self.app = app
        self._codecs = {t: CODECS[c] for t, c in (compress or {}).items() if CODECS[c] is not None}
        self._batch_bytes = batch_bytes
        self._builders: dict[tuple[str, int], Any] = {}
        self._futures: list[asyncio.Future] = []
        self._key_partition: dict[tuple[str, bytes], int] = {}
        self._topic_partitions: dict[str, tuple[list[int], list[int]]] = {}

    @property
    def producer(self):
        # the aiokafka producer inside Faust's producer (started with the app)
        return self.app.producer._ensure_producer()

    async def partition_for(self, topic: str, key: bytes, cache: bool = False) -> int:
        if cache:
            p = self._key_partition.get((topic, key))
            if p is not None:
                return p
        parts = self._topic_partitions.get(topic)
        aio = self.producer
        if parts is None:
            await aio.client._wait_on_metadata(topic)
            meta = aio.client.cluster
            parts = (sorted(meta.partitions_for_topic(topic)), sorted(meta.available_partitions_for_topic(topic)))
            self._topic_partitions[topic] = parts
        p = aio._partitioner(key, parts[0], parts[1])
        if cache:
            if len(self._key_partition) > 100_000:
                self._key_partition.clear()
            self._key_partition[(topic, key)] = p
        return p

    async def partition_count(self, topic: str) -> int:
        await self.partition_for(topic, b"")
        return len(self._topic_partitions[topic][0])

    def _new_batch(self, topic: str) -> Any:
        codec = self._codecs.get(topic)
        if codec is None:
            return self.producer.create_batch()
        # what create_batch() builds, with this topic's codec instead of the producer's
        return BatchBuilder(self._batch_bytes, codec)

    async def add(
        self,
        topic: str,
        partition: int,
        key: Optional[bytes],
        value: Optional[bytes],
        headers: Sequence = (),
        timestamp_ms: Optional[int] = None,
    ) -> None:
        b = self._builders.get((topic, partition))
        if b is None:
            b = self._builders[(topic, partition)] = self._new_batch(topic)
        if b.append(timestamp=timestamp_ms, key=key, value=value, headers=list(headers)) is None:
            # full: send it, start another (a first record always fits)
            self._futures.append(await self.producer.send_batch(b, topic, partition=partition))
            b = self._builders[(topic, partition)] = self._new_batch(topic)
            b.append(timestamp=timestamp_ms, key=key, value=value, headers=list(headers))

    async def add_alone(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        """Submit the open batch of this partition, then this record as a batch of its own."""
        b = self._builders.pop((topic, partition), None)
        aio = self.producer
        if b is not None:
            self._futures.append(await aio.send_batch(b, topic, partition=partition))
        b = aio.create_batch()
        b.append(timestamp=None, key=key, value=value, headers=[])
        self._futures.append(await aio.send_batch(b, topic, partition=partition))

    async def submit(self) -> None:
        aio = self.producer
        builders, self._builders = self._builders, {}
        for (topic, partition), b in builders.items():
            self._futures.append(await aio.send_batch(b, topic, partition=partition))

    async def wait(self) -> None:
        """Submit what is open and wait for every acknowledgement (raises on failure)."""
        await self.submit()
        futures, self._futures = self._futures, []
        if futures:
            await asyncio.gather(*futures)
