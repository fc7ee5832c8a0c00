"""Produce lines to the raw topic and know which of them the broker has acknowledged.

Every line goes to an explicitly chosen partition (CRC-32 of the key modulo the
partition count: librdkafka's default ``consistent`` partitioner, so one learner stays
on one partition). The lines of one read bound for one partition travel as one record,
a frame (edxstream.core.frames). Because librdkafka reports deliveries in produce order
within a partition, the sender keeps one FIFO per partition holding ``gen << 48 |
offset`` of each frame's first line while it is in flight; a delivery report pops the
head of its partition's FIFO. The smallest head over all partitions is then the oldest
unacknowledged line, and everything of a file before it is acknowledged: that is the
offset a checkpoint may record. This costs one deque append per frame instead of a
closure or a header lookup per message.

``gen`` numbers the files in the order they are shipped (a file's lines are all handed
over before the next file's), so the FIFO entries grow in ``(gen, offset)`` order.

Any delivery failure other than "too large" marks the sender failed; the caller then
rewinds: it throws this sender away and re-reads from the last checkpoint, which can
only duplicate unacknowledged lines, never skip one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import blake2b
from zlib import crc32

from confluent_kafka import KafkaError, KafkaException, Producer

from edxstream.core import frames, kafka_admin
from edxstream.core.frames import MAX_LINES
from edxstream.core.logfiles import HEAD_BYTES
from edxstream.core.records import DeadLetter, dead_letter, encode
from edxstream.core.settings import Settings
from producer.keys import learner_key

log = logging.getLogger(__name__)

GEN_SHIFT = 48
OFFSET_MASK = (1 << GEN_SHIFT) - 1
DEAD_LETTER_RAW_BYTES = HEAD_BYTES  # how much of an oversized line the dead letter keeps
POLL_EVERY = 200  # records between two polls of delivery reports


class Rewind(Exception):
    """The producer lost messages it could not deliver: restart from the checkpoint."""


class Stop(Exception):
    """Asked to stop while waiting for the broker."""


def until_done(session, counters: Counters, what: str, should_stop=lambda: False) -> None:
    """Run ``session`` (which ships from the checkpoint) until it returns or a stop is
    asked for. A :class:`Rewind` (messages the producer could not deliver) restarts it
    from the checkpoint after a pause that doubles from 1 s up to 30 s: the checkpoint
    only covers acknowledged lines, so nothing is lost and the broker gets time to come
    back. ``what`` names the job in the log."""
    delay = 1.0
    while not should_stop():
        try:
            session()
            return
        except Rewind as exc:
            counters.rewinds += 1
            log.warning("restarting %s from its checkpoint in %.0fs (%s)", what, delay, exc)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not should_stop():
                time.sleep(0.1)
            delay = min(delay * 2, 30.0)


@dataclass
class ShipFile:
    """One file as the sender sees it. Offsets are bytes from the file's start."""

    gen: int
    fp: str
    path: str
    produced_end: int  # end of the last line handed over (or skipped)
    committed: int  # end of the acknowledged prefix
    size: int = 0  # file size when last looked at (for the lag metric)
    closed: bool = False  # no more lines will come from it
    source_header: bytes = b""
    fp_header: bytes = b""

    def __post_init__(self):
        self.source_header = self.path.encode()
        self.fp_header = self.fp.encode()


@dataclass
class Counters:
    lines: int = 0  # acknowledged by the broker
    bytes: int = 0
    produced: int = 0
    empty_lines: int = 0
    dead_letters: int = 0
    errors: int = 0
    rewinds: int = 0
    started: float = field(default_factory=time.time)


def producer_config(settings: Settings) -> dict:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": "edxstream-shipper",
        "logger": kafka_admin.LIBRDKAFKA_LOG,
        # acks=all, one request in flight, no idempotence: see kafka_admin.DELIVERY_CONFIG
        # (an idempotent producer loses acknowledged lines when Tansu is killed)
        **kafka_admin.DELIVERY_CONFIG,
        "linger.ms": 25,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 128 * 1024,
        # Never give up on a message: while the broker is away, lines wait in the queue
        # (and, when it is full, in the file) until it is back.
        "message.timeout.ms": 0,
        "message.max.bytes": max(1_048_576, settings.max_message_bytes + 65_536),
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 10_000,
        "retry.backoff.ms": 200,
        "retry.backoff.max.ms": 5_000,
        "topic.metadata.refresh.interval.ms": 10_000,
    }


def dead_letter_for(line: bytes, reason: str, detail: str, source: str, offset: int, fp: str) -> DeadLetter:
    """A line the shipper cannot send (too long): its head, identified by where it sits."""
    return dead_letter(
        line,
        reason,
        detail,
        dead_letter_id=blake2b(f"ship|{fp}|{offset}".encode(), digest_size=16).hexdigest(),
        stage="ship",
        source=source,
        offset=offset,
        seen_at=datetime.now(timezone.utc),
        max_bytes=DEAD_LETTER_RAW_BYTES,
    )


class Sender:
    def __init__(
        self, settings: Settings, topic: str | None = None, should_stop=lambda: False, counters: Counters | None = None
    ):
        self.settings = settings
        self.topic = topic or settings.raw_topic
        self.should_stop = should_stop
        self.counters = counters or Counters()
        self.files: dict[int, ShipFile] = {}
        self._next_gen = 0
        self._failed_min: int | None = None
        self._failure: str | None = None
        self._dl_pending: set[int] = set()
        self._dl_retry: list[tuple[int, int, bytes, dict[str, bytes]]] = []
        self._last_broker_log = 0.0
        self._part_cache: dict[bytes, int] = {}
        self._since_poll = 0
        self._progress_mark = (0, time.monotonic())  # (acked lines, when they last grew)
        self._last_topic_check = 0.0
        wait_for_topics(settings, [self.topic, settings.deadletter_topic], should_stop)
        conf = producer_config(settings)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        self.producer = Producer(conf)
        self.nparts = self._partition_count()
        self.pending: list[deque[int]] = [deque() for _ in range(self.nparts)]

    # -- files --------------------------------------------------------------------------
    def open_file(self, fp: str, path: str, start: int, size: int = 0) -> ShipFile:
        f = ShipFile(self._next_gen, fp, path, produced_end=start, committed=start, size=size)
        self._next_gen += 1
        self.files[f.gen] = f
        return f

    # -- producing ----------------------------------------------------------------------
    def ship_lines(self, f: ShipFile, buf: bytes, base: int, final: bool = False) -> int:
        """Produce each newline-terminated line of ``buf`` (which starts at byte ``base``
        of the file); with ``final``, a last line without newline too. Returns the bytes
        consumed; the rest is a partial line the caller holds back.

        The lines bound for one partition are framed into records of up to
        ``ship_frame_bytes`` (see edxstream.core.frames); every frame is handed over before
        this returns, so nothing waits here for more lines."""
        limit = self.settings.max_message_bytes
        frame_max = min(self.settings.ship_frame_bytes, limit)
        nparts = self.nparts
        cache = self._part_cache
        fph = f.fp_header
        # per partition: [lines, offsets, bytes]
        open_frames: list[list | None] = [None] * nparts
        emit = self._emit
        find = buf.find
        end = len(buf)
        pos = 0
        produced = empty = 0
        while pos < end:
            nl = find(b"\n", pos)
            if nl < 0:
                if not final:
                    break
                nl = end
            if nl == pos:  # an empty line carries no event: counted, not shipped
                empty += 1
                pos = nl + 1
                continue
            line = buf[pos:nl]
            off = base + pos
            size = nl - pos
            if size > limit:
                self._too_large(f, line, off)
                pos = nl + 1
                continue
            key = learner_key(line) or fph
            p = cache.get(key)
            if p is None:
                if len(cache) > 200_000:
                    cache.clear()
                p = cache[key] = crc32(key) % nparts
            fr = open_frames[p]
            if fr is None:
                open_frames[p] = [[line], [off], size, key]
            elif fr[2] + 1 + size > frame_max or len(fr[0]) >= MAX_LINES:
                emit(f, p, fr)
                produced += len(fr[0])
                open_frames[p] = [[line], [off], size, key]
            else:
                fr[0].append(line)
                fr[1].append(off)
                fr[2] += 1 + size
            pos = nl + 1
        for p, fr in enumerate(open_frames):
            if fr is not None:
                emit(f, p, fr)
                produced += len(fr[0])
        consumed = min(pos, end)
        f.produced_end = base + consumed
        self.counters.produced += produced
        self.counters.empty_lines += empty
        return consumed

    def _emit(self, f: ShipFile, p: int, frame: list) -> None:
        lines, offsets, _, key = frame
        headers = [("source", f.source_header), ("offset", b"%d" % offsets[0]), ("fp", f.fp_header)]
        if len(lines) == 1:
            value = lines[0]
        else:
            value = b"\n".join(lines)
            headers.append((frames.OFFSETS, frames.offsets_header(offsets)))
            key = f.fp_header  # many learners: the record stands for a piece of the file
        self._produce(value, key, p, headers, f.gen << GEN_SHIFT | offsets[0])

    def _produce(self, value: bytes, key: bytes, p: int, headers: list, entry: int) -> None:
        try:
            self._put(self.topic, value, key, partition=p, headers=headers)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                # refused before it left: its lines go now, before any later frame of
                # this partition, so they stay in file order (the stream app drops a
                # line that comes after a later line of its file as a replay)
                self._dl_pending.add(entry)
                self._resend_refused(entry, p, value, dict(headers))
                return
            raise
        self.pending[p].append(entry)
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self.producer.poll(0)
            if self._failure:
                raise Rewind(self._failure)

    def _put(self, topic: str, value: bytes, key: bytes, **kwargs) -> None:
        """produce(), waiting for room while the send queue is full."""
        while True:
            try:
                self.producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:
                self._wait_for_room()

    def _wait_for_room(self) -> None:
        """The send queue is full (by message count or by bytes): wait until a fifth of
        it has been delivered."""
        waited = time.monotonic()
        room_at = len(self.producer) * 4 // 5
        while True:
            self.producer.poll(0.1)
            self._check_stall()
            if self._failure:
                raise Rewind(self._failure)
            if len(self.producer) <= room_at:
                return
            if self.should_stop():
                raise Stop()
            if time.monotonic() - waited > 30:
                waited = time.monotonic()
                log.warning(
                    "send queue full (%d messages): the broker at %s is not taking them; waiting",
                    len(self.producer),
                    self.settings.kafka_bootstrap,
                )

    def _too_large(self, f: ShipFile, line: bytes, off: int) -> None:
        self.long_line(f, off, line[:DEAD_LETTER_RAW_BYTES], len(line))

    def long_line(self, f: ShipFile, off: int, head: bytes, length: int) -> None:
        """A line the broker cannot take (``length`` bytes from ``off``, of which ``head``
        is the start) goes to the dead-letter topic instead, with its source, offset,
        length and first bytes, so it never vanishes silently."""
        detail = (
            f"line of {length} bytes is larger than max_message_bytes="
            f"{self.settings.max_message_bytes}; raw holds its first {min(length, DEAD_LETTER_RAW_BYTES)} bytes"
        )
        log.warning("%s at offset %d: %s; sent to %s", f.path, off, detail, self.settings.deadletter_topic)
        self._send_dead_letter(
            f.gen << GEN_SHIFT | off,
            dead_letter_for(head, "too_large", detail, f.path, off, f.fp),
            f.source_header,
            f.fp_header,
        )
        f.produced_end = max(f.produced_end, off + length + 1)

    def unreadable_rest(self, f: ShipFile, off: int, held: bytes, why: str) -> None:
        """The rest of a file from ``off`` cannot be read (a truncated ``.gz``): one dead
        letter says so, holding the partial line read before the break (``held``)."""
        detail = f"the rest of the file cannot be read: {why}"
        self._send_dead_letter(
            f.gen << GEN_SHIFT | off,
            dead_letter_for(held, "truncated_file", detail, f.path, off, f.fp),
            f.source_header,
            f.fp_header,
        )
        f.produced_end = max(f.produced_end, off + len(held))

    def _send_dead_letter(self, entry: int, dl: DeadLetter, src: bytes, fph: bytes) -> None:
        self._dl_pending.add(entry)

        def done(err, msg, entry=entry):
            if err is None:
                self._dl_pending.discard(entry)
                self.counters.dead_letters += 1
            else:
                self._fail(entry, f"dead letter not delivered: {err}")

        headers = [("source", src), ("offset", b"%d" % dl.offset), ("fp", fph)]
        self._put(self.settings.deadletter_topic, encode(dl), src, on_delivery=done, headers=headers)

    # -- delivery reports ---------------------------------------------------------------
    def _on_delivery(self, err, msg) -> None:
        entry = self.pending[msg.partition()].popleft()
        if err is None:
            c = self.counters
            value = msg.value()
            c.lines += value.count(b"\n") + 1  # a line never holds a newline: one per frame line
            c.bytes += len(value)
            return
        if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            # the broker's limit is below ours: resend the frame's lines one by one and
            # dead-letter those still too large (from the main loop)
            self._dl_pending.add(entry)
            self._dl_retry.append((entry, msg.partition(), msg.value(), dict(msg.headers() or [])))
            return
        self._fail(entry, f"delivery failed: {err}")

    def _fail(self, entry: int, why: str) -> None:
        self.counters.errors += 1
        if self._failed_min is None or entry < self._failed_min:
            self._failed_min = entry
        if self._failure is None:
            self._failure = why
            log.warning("%s; will resend from the last checkpoint", why)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.counters.errors += 1
            if self._failure is None:
                self._failure = f"fatal producer error: {err}"
                log.error("%s; restarting the producer from the last checkpoint", self._failure)
            return
        now = time.monotonic()
        if now - self._last_broker_log > 10:
            self._last_broker_log = now
            log.warning(
                "broker %s: %s (retrying with backoff; lines wait, none are dropped)",
                self.settings.kafka_bootstrap,
                err.str(),
            )

    def poll(self, timeout: float = 0.0) -> None:
        self.producer.poll(timeout)
        self._check_stall()
        while self._dl_retry:
            self._resend_refused(*self._dl_retry.pop(0))
        if self._failure:
            raise Rewind(self._failure)

    def _resend_refused(self, entry: int, partition: int, value: bytes, h: dict[str, bytes]) -> None:
        """A record the broker refused as too large (``entry`` is held in _dl_pending, so
        no checkpoint passes it): a single line becomes a dead letter; a frame's lines go
        again one per record, to the same partition."""
        source = h.get("source", b"").decode("utf-8", "replace")
        fp = h.get("fp", b"").decode("ascii", "replace")
        first = entry & OFFSET_MASK
        gen_base = entry - first
        try:
            lines = frames.split(value, first, h.get(frames.OFFSETS))
        except frames.FrameError:
            lines = [(first, value)]
        if len(lines) == 1:
            self._refused_line(entry, value, source, fp)
            return
        left = [len(lines)]

        def done(err, msg, line_entry):
            if err is None:
                self.counters.lines += 1
                self.counters.bytes += len(msg)
            elif err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                self._refused_line(line_entry, msg.value(), source, fp)
            else:
                self._fail(line_entry, f"delivery failed: {err}")
            left[0] -= 1
            if left[0] == 0:
                self._dl_pending.discard(entry)

        for off, line in lines:
            headers = [("source", source.encode()), ("offset", b"%d" % off), ("fp", fp.encode())]
            line_entry = gen_base | off
            self._put(
                self.topic,
                line,
                learner_key(line) or fp.encode(),
                partition=partition,
                headers=headers,
                on_delivery=lambda err, msg, e=line_entry: done(err, msg, e),
            )

    def _refused_line(self, entry: int, line: bytes, source: str, fp: str) -> None:
        """A line the broker refused as too large (its limit is below ours) becomes a dead letter."""
        detail = f"the broker refused a line of {len(line)} bytes as too large"
        self._send_dead_letter(
            entry,
            dead_letter_for(line, "too_large", detail, source, entry & OFFSET_MASK, fp),
            source.encode(),
            fp.encode(),
        )

    def _check_stall(self, after: float = 10.0) -> None:
        """Deliveries stopped while lines are in flight: if the topic is gone (a broker
        that lost its data, a topic deleted by hand) or changed its partition count,
        librdkafka would wait for it forever, so fail and rewind (which re-creates it)."""
        now = time.monotonic()
        acked, since = self._progress_mark
        if self.counters.lines != acked or not len(self.producer):
            self._progress_mark = (self.counters.lines, now)
            return
        if now - since < after or now - self._last_topic_check < after:
            return
        self._last_topic_check = now
        try:
            md = self.producer.list_topics(timeout=5)
        except KafkaException:
            return  # the broker is still away: keep waiting
        t = md.topics.get(self.topic)
        if t is None or t.error is not None or len(t.partitions) != self.nparts:
            heads = [d[0] for d in self.pending if d]
            self._fail(
                min(heads) if heads else 0,
                f"topic {self.topic} is missing or changed on the broker with {len(self.producer)} records in flight",
            )
        else:
            log.warning(
                "no acknowledgements for %.0fs with %d records in flight; waiting for the broker",
                now - since,
                len(self.producer),
            )

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def in_flight(self) -> int:
        return len(self.producer) if self.producer is not None else 0

    # -- what may be checkpointed -------------------------------------------------------
    def update_committed(self) -> list[ShipFile]:
        """Advance each file's ``committed`` to the end of its acknowledged prefix and
        return the files whose checkpoint changed. Closed, fully acknowledged files are
        forgotten (after being returned one last time)."""
        heads = [d[0] for d in self.pending if d]
        heads.extend(self._dl_pending)
        if self._failed_min is not None:
            heads.append(self._failed_min)
        oldest = min(heads) if heads else None
        oldest_gen = oldest >> GEN_SHIFT if oldest is not None else None
        changed = []
        for gen in sorted(self.files):
            f = self.files[gen]
            if oldest_gen is None or oldest_gen > gen:
                new = f.produced_end
            elif oldest_gen == gen:
                new = oldest & OFFSET_MASK
            else:
                break  # an older file still has lines in flight
            if new > f.committed:
                f.committed = new
                changed.append(f)
            if f.closed and f.committed >= f.produced_end:
                del self.files[gen]
                if f not in changed:
                    changed.append(f)
        return changed

    def flush(self, timeout: float) -> bool:
        """Wait for every message to be acknowledged; False if some are still out."""
        deadline = time.monotonic() + timeout
        while len(self.producer) and time.monotonic() < deadline:
            self.producer.poll(0.1)
            self._check_stall()
            if self._dl_retry:
                self.poll(0)
            if self._failure:
                return False
        return len(self.producer) == 0 and not self._failure

    def close(self) -> None:
        """Drop whatever is still queued (it was not acknowledged, so it is not in any
        checkpoint and will be re-read), and let go of the producer: its callbacks point
        back at this sender, so without this it (and its broker connections, which keep
        logging once the broker is gone) would live until a garbage collection."""
        producer, self.producer = self.producer, None
        if producer is None:
            return
        try:
            producer.purge()
            producer.poll(0)
        except (KafkaException, RuntimeError):
            pass

    def _partition_count(self) -> int:
        md = self.producer.list_topics(self.topic, timeout=30)
        t = md.topics.get(self.topic)
        if t is None or t.error is not None or not t.partitions:
            raise Rewind(f"topic {self.topic} has no partitions yet")
        return len(t.partitions)


def wait_for_topics(settings: Settings, topics: list[str], should_stop=lambda: False) -> None:
    """Create the topics if missing, waiting (with backoff) while the broker is away."""
    delay = 1.0
    while True:
        try:
            kafka_admin.ensure_topics(settings, topics, timeout=15)
            return
        except (KafkaException, TimeoutError) as exc:
            log.warning("broker %s not reachable (%s); retrying in %.0fs", settings.kafka_bootstrap, exc, delay)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if should_stop():
                raise Stop()
            time.sleep(0.2)
        delay = min(delay * 2, 30.0)
