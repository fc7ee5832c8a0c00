"""The Faust application: two agents, three tables, web views.

``enrich`` (raw topic, partitioned by learner; a record holds one or more lines, see
:mod:`edxstream.core.frames`): per batch, drop shipper replays (a line whose (file
fingerprint, byte offset) is not past what was already processed in that raw
partition), parse every line with the event model, produce enriched records (JSON
arrays of one course's events, key = course) and dead letters, send what counting
needs as a few compact tally records per enriched partition, then record the progress
in the ``shipped`` table.

``count`` (tally topic, partitioned like the enriched topic, so a course's counts live
in one partition): per batch, update the windowed counts (see
:mod:`stream_app.windows`), emit the changed counts of each changed course window as one
record (full WindowCount values), then write the changed table keys once.

Ordering inside a batch is what keeps the counts exact under at-least-once delivery:
outputs are flushed before the table write that says "done", and the table write is
flushed before the source offsets are acknowledged (``take_events`` acks after the
batch). A crash anywhere replays the batch; replays are recognised by the high-water
positions (raw partition, line position) stored with every key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import faust
import msgspec

from edxstream.core import frames
from edxstream.core.events.classification import CATEGORIES, counted_as
from edxstream.core.model import parse_line, rejected_course_id, unhandled
from edxstream.core.records import DeadLetter, EnrichedEvent, dead_letter, encode, enriched_records
from edxstream.core.settings import Settings
from stream_app import state as st
from stream_app import windows as win
from stream_app.metrics import Metrics
from stream_app.output import Output
from stream_app.positions import split_gaps
from stream_app.views import check_bind, guard

log = logging.getLogger("stream_app")

# shipped-table key suffix holding the next raw offset expected from a raw partition
# (a file fingerprint is hex, so it can never collide)
NEXT_OFFSET = "\x00next"


# largest batch the app's producer builds (per topic partition)
PRODUCER_BATCH_BYTES = 512 * 1024
# items per tally record: keeps a record far below any broker's message size limit
TALLY_ITEMS = 2000


def item_of(ev: EnrichedEvent, raw_partition: int, position: int) -> win.Item:
    """What the count agent needs of an enriched event. An event whose line carried no
    time is counted at the time the stores hold for it (the event model's
    UNKNOWN_TIME), not when it arrived: a replay or a re-shipped line then lands in the
    same window, and the windows agree with the stored events."""
    t = ev.time.timestamp()
    learner = str(ev.user_id) if ev.user_id is not None else (ev.username or None)
    # the category counts learner interactions, other kinds count under their own name
    return win.Item(
        t, ev.course_id or "", counted_as(ev.kind, ev.category), ev.action, learner, raw_partition, position
    )


def _headers(message: Any) -> dict[str, bytes]:
    h = message.headers
    if not h:
        return {}
    if isinstance(h, dict):
        return h
    return {k: v for k, v in h}


def _int_header(h: dict[str, bytes], name: str) -> Optional[int]:
    v = h.get(name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        return None


def _text_header(h: dict[str, bytes], name: str) -> Optional[str]:
    v = h.get(name)
    return None if v is None else v.decode("utf-8", "replace")


def faust_config(settings: Settings, web_port: Optional[int] = None) -> dict[str, Any]:
    """Faust settings. The broker-specific choices and why:

    - aiokafka driver (``kafka://``): Faust's confluent driver hangs against Tansu;
    - a 6 s session timeout: Tansu completes a group join after session timeout / 2;
    - memory store: state is rebuilt from the changelog topics on start;
    - no standby replicas: a standby is another reader of the same changelogs that a
      restart would rebuild anyway, and it doubles changelog traffic on two cores;
    - stream_wait_empty (default, kept): on a rebalance the worker finishes the batch
      in hand before giving a partition away, so two workers never write one key;
    - a stream buffer of 1,024 records: a raw record holds up to 64 KB of lines, so
      Faust's default-sized buffers would hold a gigabyte of read-ahead. Smaller ones
      (128 records, 1 MB fetches) took the worker's peak in the two-year bench from
      about 640 to about 500 MB, but made its batches smaller and the end to end about
      5 % slower (4 runs each, back to back), so they are not the default.
    """
    brokers = [f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap.split(",") if hp.strip()]
    return dict(
        broker=brokers,
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        stream_wait_empty=True,
        stream_buffer_maxsize=1024,
        consumer_max_fetch_size=8 * 1024 * 1024,
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        producer_max_request_size=4 * 1024 * 1024,
        producer_linger=0.002,
        web_enabled=True,
        web_port=web_port or settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_bind,
        # Faust's table views (/table/...) hand out raw cells (learner ids among them) and
        # the graph view the app's internals: the worker serves only its own views.
        web_tables_enabled=False,
        web_graph_enabled=False,
        # every view: Host header check and the access token (stream_app.views.guard)
        web_application_options={"middlewares": [guard(settings)]},
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
    )


def _cap_fetch_wait(max_wait_ms: int) -> None:
    """Faust builds its worker's aiokafka consumer with fetch_max_wait_ms=1500 and no
    setting to change it. A broker that holds a fetch open until that limit when data is
    scarce (Tansu does) then adds up to 1.5 s to every hop of a live event. The consumer
    class Faust instantiates (an attribute of the aiokafka module, so process-wide) is
    swapped for one that caps the wait at ``settings.fetch_max_wait_ms``."""
    from faust.transport.drivers import aiokafka as driver

    base = driver.aiokafka.AIOKafkaConsumer
    if getattr(base, "edxstream_cap_ms", None) is None:

        class CappedWaitConsumer(base):  # type: ignore[misc, valid-type]
            edxstream_cap_ms = max_wait_ms

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), self.edxstream_cap_ms)
                self.edxstream_bootstrap = kwargs.get("bootstrap_servers")
                super().__init__(*args, **kwargs)

            async def end_offsets(self, partitions):  # noqa: ANN001 - aiokafka's signature
                """The true ends (see true_ends): Faust recovers its tables from the
                changelogs up to these, and stops with ConsistencyError when what it
                stored locally is past them."""
                ends = await super().end_offsets(partitions)
                bootstrap = self.edxstream_bootstrap
                if isinstance(bootstrap, (list, tuple)):
                    bootstrap = ",".join(bootstrap)
                if not bootstrap or not any(ends.values()):
                    return ends
                return await asyncio.to_thread(true_ends, str(bootstrap), ends)

        driver.aiokafka.AIOKafkaConsumer = base = CappedWaitConsumer
    base.edxstream_cap_ms = max_wait_ms


class GapFollower:
    """One agent's watch over its source partitions: it keeps the records that follow on
    from the offsets already processed, and seeks a partition back when the consumer
    skipped records (see stream_app.positions)."""

    def __init__(self, app: faust.App, metrics: Metrics, bootstrap: str):
        self.app = app
        self.metrics = metrics
        self.bootstrap = bootstrap
        self._seeking: dict[Any, tuple[int, float]] = {}  # partition -> (offset sought back to, when)
        # partition -> offset sought back to, for the partitions of the last batch that jumped
        self.jumped: dict[int, int] = {}

    async def follow_on(self, events: list, expected: dict[int, int]) -> list:
        """The events that follow on from the offsets in ``expected`` (updated in place);
        partitions whose records jumped ahead are sought back (see stream_app.positions)."""
        # a hole can only be where a seek back went before: nothing to keep for it otherwise
        before = dict(expected) if self._seeking else None
        kept, gaps = split_gaps(events, expected)
        tps = {e.message.partition: e.message.tp for e in events} if gaps else {}
        if gaps and before is not None:
            holes = await self._holes(tps, gaps)
            if holes:  # offsets that hold no record: follow on from the first one that does
                expected.clear()
                expected.update(before)
                expected.update(holes)
                kept, gaps = split_gaps(events, expected)
        self.jumped = gaps
        if self._seeking and events:
            # a seek back is answered once the partition got past the offset sought
            topic = events[0].message.tp.topic  # one agent, one source topic
            for tp, (offset, _) in list(self._seeking.items()):
                if tp.topic == topic and expected.get(tp.partition, -1) > offset:
                    del self._seeking[tp]
        if gaps:
            for p, offset in gaps.items():
                tp = tps[p]
                last = self._seeking.get(tp)
                if last is not None and last[0] == offset:
                    continue  # records fetched before the seek: reseek() follows up
                log.warning(
                    "stream: %s[%d] jumped past offset %d (records skipped by the consumer); seeking back",
                    tp.topic,
                    p,
                    offset,
                )
                self.metrics.seeks_back += 1
                await self._seek(tp, offset)
        return kept

    async def _holes(self, tps: dict[int, Any], gaps: dict[int, int]) -> dict[int, int]:
        """{partition: first offset present} for the partitions that jumped again past an
        offset already sought back to, where the broker itself has nothing at that offset:
        a broker killed after it reserved offsets and before it stored their batch leaves
        them empty for good (Tansu does), and seeking back to them would never end while
        Faust commits past the records behind them. Asks the broker directly (a short
        read in a thread), and only on such a repeated jump. ``tps``: the batch's topic
        partitions by partition."""
        holes: dict[int, int] = {}
        for p, offset in gaps.items():
            last = self._seeking.get(tps[p])
            if last is None or last[0] != offset:
                continue
            first = await asyncio.to_thread(first_offset_from, self.bootstrap, tps[p].topic, p, offset)
            if first is not None and first > offset:
                log.warning(
                    "stream: %s[%d] holds no records at offsets %d..%d (left empty by a broker crash); "
                    "going on from %d",
                    tps[p].topic,
                    p,
                    offset,
                    first - 1,
                    first,
                )
                holes[p] = first
                del self._seeking[tps[p]]
        return holes

    async def _seek(self, tp: Any, offset: int) -> None:
        self._seeking[tp] = (offset, time.monotonic())
        # in the consumer's own thread, and Faust's read position with it
        await self.app.consumer.seek_wait({tp: offset})

    async def reseek(self, after: float = 1.0) -> None:
        """Seek again where a seek back has not been answered for ``after`` seconds:
        records fetched before the seek can move Faust's read position past the offset
        sought, and Faust then drops the re-read records as already seen."""
        if not self._seeking:
            return
        now = time.monotonic()
        assigned = self.app.consumer.assignment()
        for tp, (offset, when) in list(self._seeking.items()):
            if tp not in assigned:
                del self._seeking[tp]  # its new owner reads from its own table
            elif now - when >= after:
                await self._seek(tp, offset)

    @property
    def seeking_back(self) -> bool:
        return bool(self._seeking)


def _probe(bootstrap: str, name: str):
    """A confluent-kafka consumer that only reads assigned partitions (no group, no
    commits) and says when it reached a partition's end: for the broker probes below."""
    from confluent_kafka import Consumer

    from edxstream.core.kafka_admin import LIBRDKAFKA_LOG

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"edxstream-{name}-probe",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": LIBRDKAFKA_LOG,
        }
    )


def true_ends(bootstrap: str, ends: dict, timeout: float = 15.0) -> dict:
    """``ends`` ({topic partition: end offset} as the broker reported them) made true by
    reading each non-empty partition from just below its reported end to its end. Tansu
    reports the base offset of its last batch + 1, so a changelog recovered up to that
    misses its last writes. On Apache Kafka this reads one record per partition; on no
    answer in time a reported end is kept."""
    from confluent_kafka import KafkaError, TopicPartition

    wanted = {(tp.topic, tp.partition): end for tp, end in ends.items() if end and end > 0}
    if not wanted:
        return ends
    c = _probe(bootstrap, "end")
    found = dict(wanted)
    open_parts = set(wanted)
    try:
        c.assign([TopicPartition(t, p, end - 1) for (t, p), end in wanted.items()])
        deadline = time.monotonic() + timeout
        while open_parts and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            key = (m.topic(), m.partition())
            if m.error() is None:
                found[key] = max(found[key], m.offset() + 1)
            elif m.error().code() == KafkaError._PARTITION_EOF:
                open_parts.discard(key)
    finally:
        c.close()
    return {tp: found.get((tp.topic, tp.partition), end) for tp, end in ends.items()}


def first_offset_from(bootstrap: str, topic: str, partition: int, offset: int, timeout: float = 10.0) -> int | None:
    """The offset of the first record at or after ``offset`` in a partition, read from
    the broker with a consumer of its own (None: nothing there, or no answer in time)."""
    from confluent_kafka import KafkaError, TopicPartition

    c = _probe(bootstrap, "offset")
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is None:
                return m.offset()
            if m.error().code() == KafkaError._PARTITION_EOF:
                return None
        return None
    finally:
        c.close()


def _output(app: faust.App, settings: Settings) -> Output:
    """An agent's own Output (two agents' batches and acknowledgements must not mix).
    Table changelogs stay uncompressed: their batches are often a single small record,
    where a codec's fixed cost per batch outweighs what it saves."""
    compress = {
        t: settings.topic_compression
        for t in (settings.enriched_topic, settings.aggregates_topic, settings.tally_topic, settings.deadletter_topic)
    }
    return Output(app, compress, PRODUCER_BATCH_BYTES)


def _table(app: faust.App, settings: Settings, name: str, encode, decode) -> st.StateTable:
    return st.StateTable(
        app.Table(name, default=None, partitions=settings.partitions, key_type=str, value_type=bytes),
        encode=encode,
        decode=decode,
    )


class Enricher:
    """The enrich agent's work: raw lines -> enriched records, dead letters and tally
    records, with the ``shipped`` table saying how far each file was processed."""

    def __init__(self, app: faust.App, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.gaps = GapFollower(app, metrics, settings.kafka_bootstrap)
        self.shipped = _table(app, settings, st.SHIPPED, encode=lambda v: b"%d" % v, decode=int)
        self.out = _output(app, settings)

    async def enrich_batch(self, events: list) -> None:
        """One batch of raw records, in the order the module docstring tells."""
        t0 = time.perf_counter()
        if self.metrics.first_batch_at is None:
            self.metrics.first_batch_at = time.time()
        expected = {}
        for p in {e.message.partition for e in events}:
            nxt = self.shipped.get(f"{p}|{NEXT_OFFSET}")
            if nxt is not None:
                expected[p] = nxt
        events = await self.gaps.follow_on(events, expected)
        out = self.out
        m = self.metrics
        progress: dict[str, tuple[int, int]] = {}
        tallies: dict[int, list[win.Item]] = {}
        # course key -> its encoded events, and the latest raw timestamp among them
        course_events: dict[bytes, list[bytes]] = {}
        course_ts: dict[bytes, int] = {}
        n_lines = n_enriched = n_dead = n_dup = n_range = n_bad_course = 0
        enriched_topic = self.settings.enriched_topic
        shipped_get = self.shipped.get
        skew = self.settings.max_clock_skew_seconds
        for event in events:
            msg = event.message
            p, o = msg.partition, msg.offset
            h = _headers(msg)
            fp = _text_header(h, "fp")
            source = _text_header(h, "source")
            ts = msg.timestamp
            ts_ms = int(ts * 1000) if ts else None
            # an event time further ahead of when the shipper read the line than the
            # allowed skew is a broken clock (a dead letter, see the event model); the
            # record's timestamp, not this process's clock, so that a replay agrees
            latest = datetime.fromtimestamp((ts or time.time()) + skew, timezone.utc)
            try:
                lines = frames.split(msg.value or b"", _int_header(h, "offset"), h.get(frames.OFFSETS))
            except frames.FrameError as exc:
                await self._dead_frame(msg, source, exc)
                n_dead += 1
                continue
            skey = st.shipped_key(p, fp) if fp is not None else None
            where = (("raw_p", b"%d" % p), ("raw_o", b"%d" % o))
            for index, (line_offset, line) in enumerate(lines):
                n_lines += 1
                if skey is not None and line_offset is not None:
                    done = progress.get(skey)
                    last = done[1] if done is not None else shipped_get(skey)
                    if last is not None and line_offset <= last:
                        n_dup += 1
                        continue
                    progress[skey] = (p, line_offset)
                try:
                    record = parse_line(line, source, line_offset, fp, latest)
                    value = encode(record) if record.__class__ is EnrichedEvent else None
                except Exception as exc:  # one line must never stop the stream (nor crash-loop it)
                    log.error("stream: %s at %s: %r; dead-lettered", exc.__class__.__name__, source, line_offset)
                    record = unhandled(line, source, line_offset, exc)
                if record.__class__ is EnrichedEvent:
                    if record.course_id is None and b"course_id" in line:
                        n_bad_course += rejected_course_id(line) is not None
                    key = (record.course_id or "").encode()
                    q = await out.partition_for(enriched_topic, key, cache=True)
                    encoded = course_events.get(key)
                    if encoded is None:
                        encoded = course_events[key] = []
                    encoded.append(value)
                    # a record's timestamp is the latest raw timestamp (when the shipper
                    # read the line) of its events: a replay from a time finds them all
                    if ts_ms is not None and ts_ms > course_ts.get(key, -1):
                        course_ts[key] = ts_ms
                    tally = tallies.get(q)
                    if tally is None:
                        tally = tallies[q] = []
                    tally.append(item_of(record, p, frames.position(o, index)))
                    n_enriched += 1
                else:
                    await self._dead_letter(msgspec.structs.replace(record, seen_at=_utcnow()), source, where)
                    n_dead += 1
                    n_range += record.reason == "time_out_of_range"
        await self._publish(course_events, course_ts, tallies)
        # outputs durable before "done" is recorded
        t1 = time.perf_counter()
        await out.wait()
        await self._mark_done(progress, {e.message.partition for e in events}, expected)
        t2 = time.perf_counter()
        m.enrich_seconds += t2 - t0
        m.ack_wait_seconds += t2 - t1
        m.batches += 1
        m.records += len(events)
        m.lines += n_lines
        m.enriched += n_enriched
        m.dead_letters += n_dead
        m.duplicates += n_dup
        m.time_out_of_range += n_range
        m.course_ids_rejected += n_bad_course
        m.touch()

    async def _publish(
        self, course_events: dict[bytes, list[bytes]], course_ts: dict[bytes, int], tallies: dict[int, list[win.Item]]
    ) -> None:
        """A batch's enriched records and tally records to the app's producer."""
        out = self.out
        s = self.settings
        enriched_topic = s.enriched_topic
        # The events of one course go as JSON arrays (see EnrichedEvent): each record
        # costs every consumer a fixed amount, more than an event does.
        for key, encoded in course_events.items():
            q = await out.partition_for(enriched_topic, key, cache=True)
            ts = course_ts.get(key)
            for value in enriched_records(encoded):
                await out.add(enriched_topic, q, key, value, timestamp_ms=ts)
        # What counting needs, in a few compact records per enriched partition: the
        # count agent then receives a handful of records per batch instead of one per
        # event (see edxstream.core.frames for why the number of records matters).
        for q, items in tallies.items():
            for i in range(0, len(items), TALLY_ITEMS):
                await out.add(s.tally_topic, q, None, win.encode_tally(items[i : i + TALLY_ITEMS]))

    async def _mark_done(
        self, progress: dict[str, tuple[int, int]], partitions: set[int], expected: dict[int, int]
    ) -> None:
        """Record in the ``shipped`` table how far each file and raw partition got (once
        the batch's outputs are durable)."""
        for skey, (p, off) in progress.items():
            self.shipped.put(p, skey, off)
        for p in partitions:
            self.shipped.put(p, f"{p}|{NEXT_OFFSET}", expected[p])
        await self.shipped.write(self.out)

    async def _dead_frame(self, msg: Any, source: Optional[str], exc: Exception) -> None:
        """A raw record whose lines cannot be told apart goes whole to the dead letters."""
        value = msg.value or b""
        ident = f"frame|{msg.partition}|{msg.offset}|{hashlib.blake2b(value, digest_size=8).hexdigest()}"
        dl = dead_letter(
            value,
            "bad_frame",
            str(exc),
            stage="parse",
            source=source,
            seen_at=_utcnow(),
            dead_letter_id=hashlib.blake2b(ident.encode(), digest_size=16).hexdigest(),
        )
        await self._dead_letter(dl, source, (("raw_p", b"%d" % msg.partition), ("raw_o", b"%d" % msg.offset)))

    async def _dead_letter(self, dl: DeadLetter, source: Optional[str], where: tuple) -> None:
        """To the dead-letter topic, keyed by the source file (its letters stay in order)."""
        topic = self.settings.deadletter_topic
        key = (source or "").encode()
        await self.out.add(topic, await self.out.partition_for(topic, key, cache=True), key, encode(dl), where)


class Counter:
    """The count agent's work: tally records -> windowed counts in the ``counts`` and
    ``partitions`` tables, changed windows to the aggregates topic; and the views'
    reading of those tables."""

    def __init__(self, app: faust.App, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.gaps = GapFollower(app, metrics, settings.kafka_bootstrap)
        self.windows = tuple(sorted(set(settings.windows)))
        self.grace = float(settings.grace_seconds)
        # how many raw partitions feed each enriched partition (see windows.PartitionState);
        # read from the broker on the first batch
        self.raw_partitions: Optional[int] = None
        self.counts = _table(app, settings, st.COUNTS, encode=win.encode_state, decode=win.decode_cell)
        self.partitions = _table(
            app, settings, st.PARTITIONS, encode=win.encode_state, decode=win.decode_partition_state
        )
        # course -> window size -> (latest window start, keys of that window): the web view
        self.latest: dict[str, dict[int, tuple[int, set[str]]]] = {}
        # whether `latest` holds every key of the table (rebuilt once after a restart or a
        # rebalance, so an unknown course is answered without a table scan per request)
        self.latest_complete = False
        # partition -> its open windows by end time (see windows.ExpiryQueue); a partition
        # not in it has not been scanned since the last assignment
        self.expiry: dict[int, win.ExpiryQueue] = {}
        self.out = _output(app, settings)
        self.app = app
        # partitions whose counts were checked against their state since the last
        # assignment (see _check_cells)
        self.checked: set[int] = set()

    async def count_batch(self, events: list) -> None:
        """One batch of tally records, in the order the module docstring tells."""
        t0 = time.perf_counter()
        if self.raw_partitions is None:
            self.raw_partitions = await self.out.partition_count(self.settings.raw_topic)
        pstates = {}
        for q in {e.message.partition for e in events}:
            pstates[q] = self.partitions.get(str(q)) or win.PartitionState()
        for q, ps in pstates.items():
            if q not in self.checked:
                await self._check_cells(events, q, ps)
        expected = {q: ps.next_offset for q, ps in pstates.items() if ps.next_offset is not None}
        read = events
        events = await self.gaps.follow_on(events, expected)
        if self.gaps.jumped:
            self._hold(read, pstates)
        by_partition: dict[int, list[win.Item]] = {}
        bad = seen = 0
        for event in events:
            msg = event.message
            try:
                items = win.decode_tally(msg.value)
            except (msgspec.DecodeError, ValueError, TypeError) as exc:
                log.error(
                    "stream: tally record %s[%d]@%d is not readable (%s); skipped",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    exc,
                )
                bad += 1
                continue
            seen += len(items)
            by_partition.setdefault(msg.partition, []).extend(items)
        results = []
        for q, pstate in pstates.items():
            if q in expected:
                pstate.next_offset = expected[q]
            res = win.count_batch(by_partition.get(q, ()), q, self.windows, self.grace, pstate, self.counts.get)
            results.append((q, str(q), res))
        for q, _, res in results:
            if res.state.hold_until is not None:
                self._held(q, res)
        now_us = int(time.time() * 1_000_000)
        out = self.out
        topic = self.settings.aggregates_topic
        n_emitted = 0
        for _, _, res in results:
            dims = res.dims
            for key, cell in res.changed.items():
                if key not in dims:  # held back (see _held): written, not emitted
                    continue
                cell.version = win.next_version(cell, now_us)
                _, course, size, start = parts = win.split_key(key)
                akey = win.aggregate_key(course, size, start).encode()
                # Partitioned by course, not by the window key: the same partitioning as
                # the enriched topic, and one cached hash per course instead of a
                # murmur2 per emitted window (which cost more than the rest of counting).
                ap = await out.partition_for(topic, course.encode(), cache=True)
                counts = win.window_counts_of(parts, cell, dims[key])
                await out.add(topic, ap, akey, encode(counts))
                n_emitted += len(counts)
            # windows that late events fall in: counted from the stored events from now
            # on (stream_app.windows), one record per course
            by_course: dict[str, list] = {}
            for w in res.recount:
                by_course.setdefault(w[0], []).append(w)
            for course, ws in by_course.items():
                ap = await out.partition_for(topic, course.encode(), cache=True)
                await out.add(topic, ap, f"{course}|{win.RECOUNT}".encode(), encode(win.recount_rows(ws, now_us)))
                n_emitted += len(ws)
        # aggregates durable before the tables say "counted"
        t1 = time.perf_counter()
        await out.wait()
        t2 = time.perf_counter()
        for q, pkey, res in results:
            queue = self._expiry_queue(q)
            for key, cell in res.changed.items():
                self.counts.put(q, key, cell)
                queue.add(key, self._index(key))
            self.partitions.put(q, pkey, res.state)
            self._maybe_expire(q, res.state)
        t3 = time.perf_counter()
        await self.counts.write(out)
        await self.partitions.write(out)
        t4 = time.perf_counter()
        m = self.metrics
        m.count_seconds += t4 - t0
        m.ack_wait_seconds += (t2 - t1) + (t4 - t3)
        m.batches += 1
        m.enriched_seen += seen
        m.counted += sum(r.counted for _, _, r in results)
        m.late += sum(r.late for _, _, r in results)
        m.undecodable += bad
        m.windows_emitted += n_emitted
        m.touch()

    async def _check_cells(self, events: list, q: int, ps: win.PartitionState) -> None:
        """Once per partition after each assignment: a counts table that lost writes the
        partition state saw done (the two changelogs lost different tails) would never
        count those records again, since the state says they were. Then the partition is
        read again from the start of its topic: every cell skips what it holds already
        (its high-water marks) and takes what it lost, and nothing is emitted before the
        reading is back where it was (see _hold)."""
        self.checked.add(q)
        if not ps.cells_hw:
            return
        cells = (self.counts.get(k) or win.Cell() for k in self._keys_of(q) if win.is_cell_key(k))
        if not win.cells_behind(ps, cells):
            return
        tp = next(e.message.tp for e in events if e.message.partition == q)
        earliest = (await self.app.consumer.earliest_offsets(tp)).get(tp) or 0
        log.warning(
            "stream: the counts of %s[%d] lost writes its state saw done; reading it again from offset %d",
            self.settings.tally_topic,
            q,
            earliest,
        )
        ps.next_offset = earliest

    def _hold(self, read: list, pstates: dict[int, win.PartitionState]) -> None:
        """Partitions whose records jumped past what their state says was counted: the
        state came back older than the counting (a changelog that lost its last writes,
        say after a broker crash) and the records in between are read again. Until the
        counting is back where it was, its windows hold less than what was emitted for
        them already; so none of the partition's windows is emitted before the reading
        has passed every offset seen now (see _held)."""
        for q in self.gaps.jumped:
            last = max(e.message.offset for e in read if e.message.partition == q)
            ps = pstates[q]
            new = ps.hold_until is None
            ps.hold_until = max(ps.hold_until or 0, last + 1)
            if not new:  # the same loss, records fetched before the seek back
                continue
            log.warning(
                "stream: the counts of %s[%d] are behind what was counted (state lost); counting "
                "again from offset %d, emitting its windows once past offset %d",
                self.settings.tally_topic,
                q,
                self.gaps.jumped[q],
                ps.hold_until,
            )
            self.metrics.rebuilds += 1

    def _held(self, q: int, res: win.BatchResult) -> None:
        """A partition being counted again (see _hold): while short of ``hold_until`` its
        changed windows are written to the table but not emitted; once past it, every
        window of the partition is emitted whole, once (its full values, a new version)."""
        ps = res.state
        if ps.next_offset is None or ps.next_offset < ps.hold_until:
            res.dims.clear()
            return
        ps.hold_until = None
        for key in self._keys_of(q):
            if win.is_cell_key(key) and key not in res.changed:
                cell = self.counts.get(key)
                if cell is not None:
                    res.changed[key] = cell
        res.dims.clear()
        for key, cell in res.changed.items():
            res.dims[key] = win.all_dims(cell)
        log.info(
            "stream: %s[%d] counted up again; emitting its %d windows", self.settings.tally_topic, q, len(res.dims)
        )

    def _index(self, key: str) -> int:
        """Enter a changed window in the view index; returns when the window ends."""
        _, course, size, start = win.split_key(key)
        per = self.latest.setdefault(course, {})
        cur = per.get(size)
        if cur is None or start > cur[0]:
            per[size] = (start, {key})
        elif start == cur[0]:
            cur[1].add(key)
        return start + size

    def _expiry_queue(self, q: int) -> win.ExpiryQueue:
        """Partition q's open windows; after an assignment, those the table holds (from
        the changelog) are queued by one scan."""
        queue = self.expiry.get(q)
        if queue is None:
            queue = self.expiry[q] = win.ExpiryQueue()
            for key in self._keys_of(q):
                queue.add(key)
        return queue

    def _keys_of(self, q: int) -> list[str]:
        """Every key of partition q's cells in the counts table (a scan of the whole
        table, whose keys start with their partition), cells of older layouts included."""
        prefix = f"{q}{win.SEP}"
        return [key for key in self.counts.store.keys() if key.startswith(prefix)]

    def _maybe_expire(self, q: int, pstate: win.PartitionState) -> None:
        """Forget partition q's final windows (their last emitted value stands)."""
        closed = pstate.closed_before(self.raw_partitions, self.grace)
        if closed == float("-inf"):
            return
        store = self.counts.store
        n = 0
        for key in self._expiry_queue(q).pop_ended(closed):
            if key in store:
                self.counts.delete(q, key)
                n += 1
        self.metrics.windows_expired += n
        self.metrics.windows_open = sum(len(queue) for queue in self.expiry.values())

    # -- what the views read ------------------------------------------------------------
    def course_counts(self, course: str) -> dict:
        """The course's latest window of each size, summed over the partitions that hold it."""
        per = self.latest.get(course)
        if per is None and not self.latest_complete:
            # after a restart or a rebalance the index is empty: one scan rebuilds it for
            # every course (counting keeps it up to date from then on); while the tables
            # are still recovering, the next request scans again
            for key in list(self.counts.store.keys()):
                if win.is_cell_key(key):
                    self._index(key)
            self.latest_complete = not self.app.tables.recovery.in_recovery
            per = self.latest.get(course)
        per = per or {}
        out = {}
        for size in self.windows:
            entry = per.get(size)
            if entry is None:
                continue
            start, keys = entry
            cats, acts, learners = {}, {}, 0
            for key in keys:  # one per enriched partition that held the course
                cell = self.counts.get(key)
                if cell is None:
                    continue
                for cat, n in cell.categories.items():
                    cats[cat] = cats.get(cat, 0) + n
                for act, n in cell.actions.items():
                    acts[act] = acts.get(act, 0) + n
                learners = max(learners, len(cell.learners))
            # learner interactions per category; every other event under its kind
            kinds = {k: cats.pop(k) for k in [c for c in cats if c not in CATEGORIES]}
            out[str(size)] = {
                "window_start": _iso(start),
                "window_end": _iso(start + size),
                "categories": dict(sorted(cats.items())),
                "kinds": dict(sorted(kinds.items())),
                "interactions": sum(cats.values()),
                "actions": dict(sorted(acts.items(), key=lambda kv: (-kv[1], kv[0]))),
                "active_learners": learners,
                "events": sum(cats.values()) + sum(kinds.values()),
            }
        return {"course_id": course, "windows": out}

    def partition_states(self) -> dict[str, dict]:
        """Per enriched partition: event-time watermark, events counted and dropped as late."""
        return {
            k: {"watermark": _iso(v.watermark) if v.watermark else None, "late": v.late, "counted": v.counted}
            for k, v in self.partitions.items()
        }


class StreamWorker:
    """One worker's two agents (an :class:`Enricher`, a :class:`Counter`) and the
    process-local metrics they share; what the views, the CLI and the tests reach as
    ``app.worker``."""

    def __init__(self, app: faust.App, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.enricher = Enricher(app, settings, self.metrics)
        self.counter = Counter(app, settings, self.metrics)
        self.windows = self.counter.windows
        self.grace = self.counter.grace
        self.counts = self.counter.counts
        self.course_counts = self.counter.course_counts
        self.partition_states = self.counter.partition_states

    async def reseek(self) -> None:
        """Follow up both agents' unanswered seeks back."""
        await self.enricher.gaps.reseek()
        await self.counter.gaps.reseek()

    @property
    def seeking_back(self) -> bool:
        return self.enricher.gaps.seeking_back or self.counter.gaps.seeking_back


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def create_app(
    settings: Settings,
    *,
    web_port: Optional[int] = None,
    batch_max: int = 256,
    batch_within: float = 0.05,
    until_idle: Optional[float] = None,
    log_every: float = 5.0,
    metrics_path: Optional[Path] = None,
) -> faust.App:
    """Build the stream app from settings. ``until_idle``: stop the worker (SIGTERM to
    itself, the normal shutdown path) once it has been assigned partitions and has seen
    no event and no rebalance for that many seconds."""
    _cap_fetch_wait(settings.fetch_max_wait_ms)
    check_bind(settings)
    conf = faust_config(settings, web_port)
    Path(conf["datadir"]).mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.app_id, **conf)
    pipe = StreamWorker(app, settings)
    app.worker = pipe  # for views, tests and the CLI
    metrics_path = metrics_path or settings.data_dir / "run" / "stream.metrics.json"

    raw_topic = app.topic(
        settings.raw_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    tally_topic = app.topic(
        settings.tally_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(raw_topic, name="enrich")
    async def enrich(stream):
        async for events in stream.take_events(batch_max, within=batch_within):
            await pipe.enricher.enrich_batch(events)

    @app.agent(tally_topic, name="count")
    async def count(stream):
        async for events in stream.take_events(batch_max, within=batch_within):
            await pipe.counter.count_batch(events)

    assigned_once = {"v": False}

    @app.on_partitions_assigned.connect
    async def _assigned(sender, assigned, **kwargs):
        assigned_once["v"] = True
        pipe.counter.latest_complete = False  # the new partitions' keys are not in the index yet
        pipe.counter.checked.clear()  # their tables were read again (see Counter._check_cells)
        pipe.counter.expiry.clear()  # queued again from the tables (see Counter._expiry_queue)
        pipe.metrics.touch()

    @app.on_partitions_revoked.connect
    async def _revoked(sender, revoked, **kwargs):
        pipe.counter.latest.clear()  # the view index may hold keys of partitions given away
        pipe.counter.latest_complete = False
        pipe.metrics.touch()

    @app.timer(log_every)
    async def _progress():
        m = pipe.metrics
        rate = m.rate()
        log.info(
            "stream: %d lines (%.0f/s), %d enriched, %d dead letters, %d duplicates, "
            "%d counted, %d late (counted from the stored events), %d windows emitted, %d open",
            m.lines,
            rate,
            m.enriched,
            m.dead_letters,
            m.duplicates,
            m.counted,
            m.late,
            m.windows_emitted,
            m.windows_open,
        )
        m.write(metrics_path, pipe.partition_states())

    @app.timer(1.0)
    async def _reseek():
        await pipe.reseek()

    if until_idle is not None:

        @app.timer(0.5)
        async def _idle():
            m = pipe.metrics
            busy = app.rebalancing or app.tables.recovery.in_recovery or pipe.seeking_back
            if assigned_once["v"] and not busy and time.monotonic() - m.last_activity > until_idle:
                log.info("stream: idle for %.1fs, stopping", until_idle)
                m.write(metrics_path, pipe.partition_states())
                os.kill(os.getpid(), signal.SIGTERM)

    app.metrics_path = metrics_path
    from stream_app import views
    from stream_app.live_page import register_live_page

    views.register(app, pipe)
    register_live_page(app, settings)
    return app
