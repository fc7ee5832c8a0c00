"""The consume → write → commit loop both sinks share.

Messages are gathered into a batch of ``settings.sink_batch_rows`` rows (the ClickHouse
sink: ``settings.clickhouse_batch_rows``) or ``settings.sink_batch_seconds`` seconds,
whichever comes first. A message may hold many rows (the stream app writes a course's
events as one array), so a batch is also full once its messages hold
``ROW_BYTES`` bytes per row it may have. The batch is handed to a
:class:`Writer`; only when the writer returns (the rows are durably stored) are the
batch's offsets committed, synchronously and explicitly. A writer that fails is retried
with capped exponential backoff on the same batch, and offsets stay where they were, so
a crash or an unreachable database at any point re-delivers messages rather than losing
them; the writers upsert by deterministic ids, so re-delivery changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from edxstream.core import kafka_admin
from edxstream.core.jsonfile import write_json
from edxstream.core.settings import Settings
from sinks.rows import Msg, from_kafka

log = logging.getLogger(__name__)

# About the size of one enriched event's JSON (1.4 KB on generated and real logs): what
# bounds a batch's bytes, so a batch of many-event messages holds about as many rows as
# one of single-event messages.
ROW_BYTES = 1500


# the state of a sink that holds no partition (see SinkLoop._check_unassigned)
UNASSIGNED = "unassigned: "


class Stuck(Exception):
    """A write that retrying cannot fix (a table that is missing and cannot be made
    again): the sink stops, and says why, instead of retrying for ever."""


class Writer(Protocol):
    name: str

    def prepare(self, msgs: list[Msg]) -> Any:
        """Decode a batch into rows (pure; done once, however many retries follow)."""

    def write(self, prepared: Any) -> dict[str, int]:
        """Store the rows durably, or raise. Returns counts by kind, for progress."""

    def reset(self) -> None:
        """Forget connections after a failure, so the next write reconnects."""

    def close(self) -> None: ...


@dataclass
class SinkStats:
    messages: int = 0
    batches: int = 0
    retries: int = 0
    commit_failures: int = 0
    written: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    first_message: float | None = None  # wall-clock times, for throughput figures
    last_commit: float | None = None
    # ok | retrying: why | stuck: why -- what `stack status` shows about the sink
    state: str = "starting"
    last_error: str | None = None
    last_write: float | None = None  # wall-clock time of the last batch stored

    def add(self, counts: dict[str, int]) -> None:
        for k, v in counts.items():
            self.written[k] = self.written.get(k, 0) + v


def backoff_delays(initial: float = 0.5, cap: float = 30.0):
    """0.5, 1, 2, 4, ... seconds, capped."""
    delay = initial
    while True:
        yield delay
        delay = min(cap, delay * 2)


class SinkLoop:
    def __init__(
        self,
        settings: Settings,
        writer: Writer,
        group: str,
        topics: list[str],
        stop: threading.Event | None = None,
        max_idle_seconds: float | None = None,
        consumer_config: dict | None = None,
        batch_rows: int | None = None,
        metrics_path: Path | None = None,
    ):
        self.settings = settings
        self.batch_rows = batch_rows or settings.sink_batch_rows
        self.writer = writer
        self.group = group
        self.topics = topics
        self.stop = stop or threading.Event()
        self.max_idle = max_idle_seconds
        self.stats = SinkStats()
        self.pending: list = []
        self.pending_bytes = 0
        self.pending_since = 0.0
        self.message_bytes = ROW_BYTES  # the average size of the messages of the last batch
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{writer.name}-write")
        self.inflight: tuple[Future, list[Msg]] | None = None
        self._abandoned = False
        self.assigned = False
        # partitions held now, and since when none (see _check_unassigned)
        self.held = 0
        self.unassigned_since = time.monotonic()
        self._unassigned_checked = 0.0
        self.last_activity = time.monotonic()
        self._last_report = time.monotonic()
        self._reported_messages = 0
        # several sinks of one kind under one home each need their own file (--metrics-file)
        self.metrics_path = metrics_path or settings.data_dir / "run" / f"sink-{writer.name}.metrics.json"
        config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Tansu completes a group join after session.timeout/2; keep it short.
            "session.timeout.ms": 6000,
            # A database outage is retried inside the loop without polling; stay in the
            # group meanwhile (the batch is re-delivered anyway if we drop out).
            "max.poll.interval.ms": 600_000,
            "client.id": f"edxstream-sink-{writer.name}",
            "logger": kafka_admin.LIBRDKAFKA_LOG,
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        }
        config.update(consumer_config or {})
        self.consumer = Consumer(config)

    # -- rebalance ------------------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        log.info("sink %s: assigned %s", self.writer.name, _describe(partitions))
        self.assigned = True
        self.held = len(partitions)
        self.last_activity = time.monotonic()
        if self.held:
            if self.stats.state.startswith(UNASSIGNED):
                self.stats.state = "ok"
                self._write_metrics()
        else:
            self.unassigned_since = self.last_activity

    def _on_revoke(self, consumer, partitions) -> None:
        # Write and commit what we hold for these partitions while we still own them.
        if self.pending:
            log.info("sink %s: partitions revoked; flushing %d pending messages", self.writer.name, len(self.pending))
            self.flush()
        self.settle()
        self.assigned = False
        self.held = 0
        self.unassigned_since = time.monotonic()

    # -- the loop -------------------------------------------------------------------

    def run(self) -> SinkStats:
        try:
            kafka_admin.ensure_topics(self.settings, self.topics)
        except Exception as exc:  # the consumer keeps retrying the broker on its own
            log.warning("sink %s: could not check topics %s: %s", self.writer.name, self.topics, exc)
        batch_rows = max(1, self.batch_rows)
        batch_bytes = batch_rows * ROW_BYTES
        batch_seconds = max(0.0, self.settings.sink_batch_seconds)
        try:
            # Reach the database before taking partitions: a sink that cannot write says
            # so (state "retrying: ...") at once, not when the first data arrives.
            if self._write(self.writer.prepare([]), 0) is not None:
                self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
                log.info("sink %s: consuming %s as group %s", self.writer.name, ", ".join(self.topics), self.group)
            started = time.monotonic()
            while not self.stop.is_set():
                if self.pending:
                    timeout = max(0.0, min(0.5, self.pending_since + batch_seconds - time.monotonic()))
                else:
                    timeout = 0.5
                # as many more as the batch has room for, in messages and in bytes (at the
                # size of the messages seen so far)
                want = max(
                    1,
                    min(
                        batch_rows - len(self.pending),
                        10_000,
                        (batch_bytes - self.pending_bytes) // self.message_bytes + 1,
                    ),
                )
                msgs = self.consumer.consume(num_messages=want, timeout=timeout)
                now = time.monotonic()
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.fatal():
                            raise KafkaException(err)
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("sink %s: consumer error: %s", self.writer.name, err)
                        continue
                    if not self.pending:
                        self.pending_since = now
                        if self.stats.first_message is None:
                            self.stats.first_message = time.time()
                    self.pending.append(m)
                    self.pending_bytes += len(m.value() or b"")
                    if self.pending_bytes >= batch_bytes:  # the rest of msgs starts the next batch
                        self.flush()
                if msgs:
                    self.last_activity = now
                if self.pending and (len(self.pending) >= batch_rows or now - self.pending_since >= batch_seconds):
                    self.flush()
                if self.inflight is not None and self.inflight[0].done():
                    self.settle()
                self._report()
                if not self.held:
                    self._check_unassigned(now)
                if self.max_idle is not None and not self.pending and self.inflight is None:
                    if self.assigned and now - self.last_activity >= self.max_idle:
                        log.info("sink %s: idle for %.0fs, caught up; stopping", self.writer.name, self.max_idle)
                        break
                    if not self.assigned and now - started >= max(60.0, self.max_idle):
                        log.warning(
                            "sink %s: no partitions assigned after %.0fs; stopping", self.writer.name, now - started
                        )
                        break
            if self.pending:  # a stop request: write what we hold, if the database lets us
                self.flush()
            self.settle()
        except BaseException:
            self.stop.set()  # let a retrying writer thread give up, uncommitted
            raise
        finally:
            self._report(force=True)
            self.consumer.close()
            self.executor.shutdown(wait=True)
            self.writer.close()
        return self.stats

    def _check_unassigned(self, now: float) -> None:
        """A sink left without partitions (out of its group after a broker restart, or
        beside another consumer of its group that holds them all) consumes nothing and
        writes nothing, so nothing else would show it: past the grace period, while its
        topics have partitions, its state says so (what `stack status` shows), checked
        every few seconds."""
        grace = self.settings.sink_unassigned_grace_seconds
        if now - self.unassigned_since < grace or now - self._unassigned_checked < 5.0:
            return
        self._unassigned_checked = now
        try:
            meta = self.consumer.list_topics(timeout=5)
            n = sum(len(meta.topics[t].partitions) for t in self.topics if t in meta.topics)
        except KafkaException as exc:
            log.debug("sink %s: cannot list topics: %s", self.writer.name, exc)
            return
        if n == 0 or self.held:
            return
        why = f"no partitions assigned for {now - self.unassigned_since:.0f}s while its topics have {n}"
        if not self.stats.state.startswith(UNASSIGNED):
            log.warning("sink %s: %s (group %s)", self.writer.name, why, self.group)
        self.stats.state, self.stats.last_error = f"{UNASSIGNED}{why}", why
        self._write_metrics()

    def flush(self) -> None:
        """Decode the pending batch and hand it to the writer thread, after the batch
        before it is written and committed: the database stores batch N while this
        thread consumes and decodes batch N+1, and offsets are committed in order."""
        self.message_bytes = max(1, self.pending_bytes // max(1, len(self.pending)))
        kafka_msgs, self.pending, self.pending_bytes = self.pending, [], 0
        msgs = [from_kafka(m) for m in kafka_msgs]
        prepared = self.writer.prepare(msgs)
        self.settle()
        if self.stop.is_set() and self._abandoned:
            return
        self.inflight = (self.executor.submit(self._write, prepared, len(msgs)), msgs)

    def settle(self) -> None:
        """Wait for the batch being written, then commit its offsets."""
        if self.inflight is None:
            return
        future, msgs = self.inflight
        self.inflight = None
        counts = future.result()
        if counts is None:  # a stop request interrupted the retries
            self._abandoned = True
            log.warning(
                "sink %s: stopping with an unwritten batch of %d messages; its offsets are not "
                "committed, so it will be re-delivered",
                self.writer.name,
                len(msgs),
            )
            return
        self.stats.add(counts)
        self.stats.batches += 1
        self.stats.messages += len(msgs)
        self.commit(msgs)

    def _write(self, prepared, n: int) -> dict[str, int] | None:
        """Write a batch, retrying with backoff until it is stored (or a stop request)."""
        delays = backoff_delays()
        st = self.stats
        while True:
            try:
                counts = self.writer.write(prepared)
            except Stuck as exc:
                st.state, st.last_error = f"stuck: {exc}", str(exc)
                log.error("sink %s: %s; stopping", self.writer.name, exc)
                self._write_metrics()
                raise
            except Exception as exc:
                self.writer.reset()
                if self.stop.is_set():
                    return None
                delay = next(delays)
                st.retries += 1
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                st.state, st.last_error = f"retrying: {why}", why
                log.warning(
                    "sink %s: cannot write a batch of %d messages (%s); offsets not committed, retrying in %.1fs",
                    self.writer.name,
                    n,
                    why,
                    delay,
                )
                self._write_metrics()
                self.stop.wait(delay)
                continue
            st.state, st.last_write = "ok", time.time()
            return counts

    def commit(self, msgs: list[Msg]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            key = (m.topic, m.partition)
            if m.offset > last.get(key, -1):
                last[key] = m.offset
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.last_commit = time.time()
            log.debug("sink %s: committed %s", self.writer.name, _describe(offsets))
        except KafkaException as exc:
            # The rows are stored; the messages will come again and upsert to the same rows.
            self.stats.commit_failures += 1
            log.warning(
                "sink %s: offset commit failed (%s); those messages will be re-delivered", self.writer.name, exc
            )

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < 10:
            return
        rate = (self.stats.messages - self._reported_messages) / max(1e-9, now - self._last_report)
        if self.stats.messages != self._reported_messages or force:
            written = ", ".join(f"{k}={v}" for k, v in sorted(self.stats.written.items())) or "nothing"
            log.info(
                "sink %s: %d messages in %d batches (%s), %.0f msg/s",
                self.writer.name,
                self.stats.messages,
                self.stats.batches,
                written,
                rate,
            )
        self._last_report, self._reported_messages = now, self.stats.messages
        self._write_metrics()

    def _write_metrics(self) -> None:
        """The sink's counts and state to its metrics file (read by `stack status`);
        from the loop and from the writer thread, each through its own temporary file."""
        try:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            data = {
                "pid": os.getpid(),
                "messages": self.stats.messages,
                "batches": self.stats.batches,
                "retries": self.stats.retries,
                **self.stats.written,
                "last_commit": self.stats.last_commit,
                "state": self.stats.state,
                "last_error": self.stats.last_error,
                "last_write": self.stats.last_write,
            }
            write_json(self.metrics_path, data)
        except OSError as exc:
            log.debug("cannot write %s: %s", self.metrics_path, exc)


def _describe(partitions) -> str:
    return (
        ", ".join(f"{p.topic}[{p.partition}]" + (f"@{p.offset}" if p.offset >= 0 else "") for p in partitions) or "none"
    )


def stats_dict(stats: SinkStats) -> dict:
    return asdict(stats)
