"""Topic administration shared by the shipper, the stream app, the sinks and replay."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from edxstream.core.errors import UserError
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)


class _LibrdkafkaLog:
    """Where librdkafka's own log lines go: the debug log. While a broker is away it
    writes a line per failed connection attempt (about 20 a second per client) to
    stderr; the commands instead say once, in their own words, what is wrong. Every
    confluent_kafka client edxstream makes gets ``"logger": LIBRDKAFKA_LOG``."""

    _log = logging.getLogger("librdkafka")

    def log(self, level: int, msg: str, *args) -> None:
        self._log.debug(msg, *args)


LIBRDKAFKA_LOG = _LibrdkafkaLog()

# How every confluent_kafka producer of edxstream delivers: acknowledged by all replicas,
# retried without end, one request in flight per broker connection, and no idempotent
# producer (no producer id, no sequence numbers).
#
# An idempotent producer re-sends a request whose answer it missed and trusts the
# broker's DUPLICATE_SEQUENCE_NUMBER to mean "already stored": librdkafka reports those
# messages delivered (with no offset). Tansu (the local broker) records the producer's
# sequence before it stores the batch, so a broker killed between the two answers the
# re-sent batch with DUPLICATE_SEQUENCE_NUMBER although it never stored it: the
# messages are acknowledged and lost (scripts/repro_broker_loss.py shows it). Without
# sequence numbers a re-sent batch is simply stored (again, if the first copy was kept):
# a duplicate, which every consumer of edxstream drops or upserts. One request in
# flight keeps the order of a partition's records across retries, which idempotence
# used to guarantee; the consumers rely on it (a shipped line that arrives after a later
# line of its file is taken for a replay).
DELIVERY_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": False,
    "max.in.flight.requests.per.connection": 1,
}


def admin(settings: Settings) -> AdminClient:
    """An admin client of the configured brokers."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "logger": LIBRDKAFKA_LOG}
    return AdminClient(conf)


def broker_answers(settings: Settings, timeout: float = 2.0) -> bool:
    """Whether a broker answers a metadata request within ``timeout`` seconds."""
    try:
        admin(settings).list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def require_broker(settings: Settings, timeout: float = 5.0) -> None:
    """Fail with one line saying what to do when no broker answers at the bootstrap
    address (commands call this before they start their clients)."""
    if not broker_answers(settings, timeout=timeout):
        raise UserError(
            f"no Kafka broker answers at {settings.kafka_bootstrap}: start the local one with "
            f"`edxstream stack up`, or set EDXSTREAM_KAFKA_BOOTSTRAP to yours"
        )


def ensure_topics(
    settings: Settings,
    topics: list[str] | None = None,
    partitions: int | None = None,
    config: dict[str, dict[str, str]] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create the topics that are missing. Existing topics are left as they are."""
    topics = topics or settings.topics
    partitions = partitions or settings.partitions
    config = config or {settings.raw_topic: {"retention.ms": str(settings.raw_retention_ms)}}
    client = admin(settings)
    deadline = time.monotonic() + timeout
    existing = set(client.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    futures = client.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1, config=config.get(t, {})) for t in missing],
        operation_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=max(1.0, deadline - time.monotonic()))
            log.info("created topic %s with %d partitions", topic, partitions)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
    # Metadata can trail creation; wait until every topic is visible with its partitions.
    while time.monotonic() < deadline:
        md = client.list_topics(timeout=timeout).topics
        if all(t in md and len(md[t].partitions) > 0 for t in topics):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topics not visible after {timeout}s: {topics}")


def partition_lags(settings: Settings, group: str, topics: list[str]) -> list[dict] | None:
    """Per partition of ``topics``: the end offset, what ``group`` committed and the lag
    (messages not yet committed). None when the broker does not answer or no topic exists."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "logger": LIBRDKAFKA_LOG,
        }
    )
    try:
        md = c.list_topics(timeout=5)
        parts = [TopicPartition(t, p) for t in topics if t in md.topics for p in md.topics[t].partitions]
        if not parts:
            return None
        out = []
        for tp in c.committed(parts, timeout=5):
            _low, high = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)
            done = tp.offset if tp.offset >= 0 else 0
            out.append(
                {
                    "group": group,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "end": high,
                    "committed": tp.offset if tp.offset >= 0 else None,
                    "lag": max(0, high - done),
                }
            )
        return sorted(out, key=lambda r: (r["topic"], r["partition"]))
    except Exception:  # noqa: BLE001 - a broker hiccup: the caller asks again
        return None
    finally:
        c.close()


def group_lag(settings: Settings, group: str, topics: list[str]) -> int | None:
    """Messages not yet committed by ``group`` on ``topics`` (None if unknown)."""
    parts = partition_lags(settings, group, topics)
    return sum(p["lag"] for p in parts) if parts else None
