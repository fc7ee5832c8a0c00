"""``edxstream ship PATH``: follow a live tracking.log like ``tail -F``.

Poll-based. Each file is read through its own file descriptor, so a file renamed away
(logrotate's rename-and-create) is still read to its end before the new file at PATH is
started; a rotated file is closed once it has had no new bytes for ``rotate_wait``
seconds (the application may write a last line to it before it reopens its log). A
partial last line is held back until its newline arrives (a rotated file's final
partial line is shipped when the file is closed, so it does not vanish).

Truncation (``copytruncate``, ``: > tracking.log``) is noticed when the file is shorter
than what was read or its first line changed. The unread end of the old content is then
read from logrotate's copy (a sibling file with the same fingerprint), when it exists;
lines the application wrote between logrotate's copy and its truncate are lost by
logrotate itself, and without a copy nothing can recover the unread end (logged).

Position: the checkpoint store holds, per fingerprint, the offset up to which the
broker acknowledged every line. On start (and after any delivery failure) reading
resumes there: rotated files that were not finished are found again by fingerprint
among PATH's siblings (``tracking.log.1`` ...; compressed ones are backfill's job).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from edxstream.core.logfiles import CHUNK, LongLine, Lines, UnreadableLog, is_gzip_file
from edxstream.core.settings import Settings
from producer.checkpoint import CheckpointStore, ship_store_path
from producer.fingerprint import fingerprint_fd, fingerprint_path
from producer.metrics import MetricsReporter
from producer.sender import Counters, Sender, ShipFile, Stop, until_done

log = logging.getLogger(__name__)


@dataclass
class Tail:
    fd: int
    path: str
    ident: tuple[int, int]  # (st_dev, st_ino) of the open file
    lines: Lines  # the end of the lines handed over, and a partial line waiting for its newline
    fp: str | None = None
    ship: ShipFile | None = None
    last_data: float = field(default_factory=time.monotonic)

    def size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError:
            return self.lines.read_to


class Follower:
    def __init__(
        self,
        settings: Settings,
        path: str | os.PathLike,
        should_stop=lambda: False,
        rotate_wait: float = 1.0,
        poll_interval: float = 0.2,
        checkpoint_every: float = 1.0,
        flush_timeout: float = 30.0,
    ):
        self.settings = settings
        self.path = str(Path(path).absolute())
        self.should_stop = should_stop
        self.rotate_wait = rotate_wait
        self.poll_interval = poll_interval
        self.checkpoint_every = checkpoint_every
        self.flush_timeout = flush_timeout
        self.store = CheckpointStore(ship_store_path(settings.checkpoints, Path(self.path)))
        self.counters = Counters()
        self.metrics = MetricsReporter(settings, "shipper")
        self.live: Tail | None = None
        self.draining: list[Tail] = []  # rotated away: read to the end, oldest first
        self.sender: Sender | None = None

    # -- the outer loop: (re)start from the checkpoint until asked to stop --------------
    def run(self) -> None:
        log.info("following %s into %s (checkpoints in %s)", self.path, self.settings.raw_topic, self.store.path)
        try:
            until_done(self._session, self.counters, f"following {self.path}", self.should_stop)
        except Stop:
            return

    def _session(self) -> None:
        self.sender = sender = Sender(self.settings, should_stop=self.should_stop, counters=self.counters)
        clean = False
        try:
            self._open_from_checkpoint()
            self._loop()
            clean = True
        finally:
            if clean or not sender.failed:
                if not sender.flush(self.flush_timeout):
                    log.warning(
                        "stopping with %d records unacknowledged; their lines will be re-sent on the next start",
                        sender.in_flight(),
                    )
            self._checkpoint()
            self._report(force=True)
            sender.close()
            self._close_all()

    def _loop(self) -> None:
        sender = self.sender
        next_checkpoint = time.monotonic() + self.checkpoint_every
        while not self.should_stop():
            progressed = False
            if self.draining:
                t = self.draining[0]
                if self._pump(t):
                    progressed = True
                elif time.monotonic() - t.last_data >= self.rotate_wait:
                    self._finish(t)
                    self.draining.pop(0)
                    progressed = True
            elif self.live is None:
                self._open_live()
            else:
                t = self.live
                if t.fp is None:
                    self._attach(t, fingerprint_fd(t.fd))
                if t.fp is not None and self._pump(t):
                    progressed = True
                else:
                    self._check_live(t)
            sender.poll(0 if progressed else self.poll_interval)
            if time.monotonic() >= next_checkpoint:
                next_checkpoint = time.monotonic() + self.checkpoint_every
                self._checkpoint()
                self._report()

    # -- files --------------------------------------------------------------------------
    def _siblings(self) -> list[str]:
        folder, base = os.path.split(self.path)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            p = os.path.join(folder, name)
            if name != base and name.startswith(base) and os.path.isfile(p) and not is_gzip_file(p):
                out.append(p)
        return out

    def _open_from_checkpoint(self) -> None:
        found = []
        for p in self._siblings():
            try:
                fp = fingerprint_path(p, complete=True)
                st = os.stat(p)
            except OSError:
                continue
            e = self.store.get(fp) if fp else None
            if e is not None and not e.done and e.offset < st.st_size:
                found.append((st.st_mtime, p, fp, e.offset))
        for _, p, fp, offset in sorted(found):
            t = self._open_tail(p)
            if t is None:
                continue
            log.info("finishing rotated %s from byte %d", p, offset)
            t.fp, t.lines = fp, self._lines(offset)
            t.ship = self.sender.open_file(fp, self.store.get(fp).path, offset, t.size())
            self.draining.append(t)
        self._open_live()

    def _open_tail(self, path: str) -> Tail | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if path == self.path:
                raise UnreadableLog(f"{path}: cannot read: {exc.strerror or exc}") from None
            log.warning("%s: cannot read (%s); skipped", path, exc.strerror or exc)
            return None
        st = os.fstat(fd)
        return Tail(fd, path, (st.st_dev, st.st_ino), self._lines())

    def _lines(self, start: int = 0) -> Lines:
        return Lines(self.settings.max_message_bytes, start)

    def _open_live(self) -> None:
        t = self._open_tail(self.path)
        if t is None:
            return
        self.live = t
        self._attach(t, fingerprint_fd(t.fd))

    def _attach(self, t: Tail, fp: str | None) -> None:
        """Give a file whose first line is now known its identity and start offset."""
        if fp is None:
            return
        e = self.store.get(fp)
        size = t.size()
        start = 0
        if e is not None:
            if e.offset <= size:
                start = e.offset
            else:
                log.warning(
                    "%s is shorter (%d bytes) than its checkpoint (%d): reading it from the start",
                    t.path,
                    size,
                    e.offset,
                )
        t.fp, t.lines = fp, self._lines(start)
        t.ship = self.sender.open_file(fp, t.path, start, size)
        if start:
            log.info("resuming %s at byte %d of %d", t.path, start, size)

    def _pump(self, t: Tail) -> int:
        try:
            data = os.pread(t.fd, CHUNK, t.lines.read_to)
        except OSError as exc:  # an I/O error: the file's rest is lost, the others go on
            log.error(
                "%s: read error at byte %d (%s); the rest of it is recorded as a dead letter",
                t.path,
                t.lines.read_to,
                exc.strerror or exc,
            )
            self.sender.unreadable_rest(t.ship, t.lines.pos, t.lines.rest(), f"read error ({exc.strerror or exc})")
            t.ship.closed = True
            return 0
        if not data:
            return 0
        t.last_data = time.monotonic()
        for piece in t.lines.feed(data):
            self._hand_over(t, piece)
        return len(data)

    def _hand_over(self, t: Tail, piece, final: bool = False) -> None:
        """Whole lines to the sender, or an overlong line (cut off) to the dead letters."""
        if piece.__class__ is LongLine:
            self.sender.long_line(t.ship, piece.offset, piece.head, piece.length)
        else:
            offset, block = piece
            self.sender.ship_lines(t.ship, block, offset, final=final)

    def _check_live(self, t: Tail) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != t.ident:
            log.info("%s was rotated (renamed or replaced); finishing the old file first", self.path)
            t.last_data = time.monotonic()
            if t.fp is None:
                self._attach(t, fingerprint_fd(t.fd, complete=True))
            if t.ship is None:
                os.close(t.fd)  # an empty file: nothing to finish
            else:
                self.draining.append(t)
            self.live = None
            return
        size = os.fstat(t.fd).st_size
        if size < t.lines.read_to or (t.fp is not None and fingerprint_fd(t.fd) != t.fp):
            self._truncated(t)

    def _truncated(self, t: Tail) -> None:
        read_to = t.lines.read_to
        log.warning("%s was truncated (copytruncate?) after %d bytes had been read", self.path, read_to)
        if t.ship is not None:
            copy = self._find_copy(t.fp, read_to)
            if copy is not None:
                log.info("reading the rest of the old content from logrotate's copy %s", copy.path)
                copy.fp, copy.lines, copy.ship = t.fp, t.lines, t.ship
                self.draining.append(copy)
            else:
                log.warning(
                    "no rotated copy of %s (fingerprint %s) found: lines written after byte %d and before "
                    "the truncation could not be read",
                    self.path,
                    t.fp,
                    read_to,
                )
                for piece in t.lines.finish():
                    self._hand_over(t, piece, final=True)
                t.ship.closed = True
        # the same descriptor now reads the new content from its start
        self.live = Tail(t.fd, self.path, t.ident, self._lines())

    def _find_copy(self, fp: str, min_size: int) -> Tail | None:
        for p in self._siblings():
            try:
                if os.stat(p).st_size >= min_size and fingerprint_path(p, complete=True) == fp:
                    return self._open_tail(p)
            except OSError:
                continue
        return None

    def _finish(self, t: Tail) -> None:
        """A rotated file that stopped growing: ship its last partial line and close it."""
        if t.ship is not None:
            while not t.ship.closed and self._pump(t):
                pass
            for piece in t.lines.finish():
                self._hand_over(t, piece, final=True)
            t.ship.closed = True
            t.ship.size = t.lines.pos
            log.info("finished %s at byte %d", t.path, t.lines.pos)
        os.close(t.fd)

    def _close_all(self) -> None:
        for t in [*self.draining, *([self.live] if self.live else [])]:
            try:
                os.close(t.fd)
            except OSError:
                pass
        self.draining, self.live = [], None

    # -- checkpoints and metrics --------------------------------------------------------
    def _checkpoint(self) -> None:
        for f in self.sender.update_committed():
            self.store.set(
                f.fp, f.committed, f.path, max(f.size, f.committed), done=f.closed and f.committed >= f.produced_end
            )
        self.store.save()

    def _lag(self) -> int:
        lag = 0
        for t in [*self.draining, *([self.live] if self.live else [])]:
            committed = t.ship.committed if t.ship else 0
            size = t.size()
            if t.ship:
                t.ship.size = size
            lag += max(0, size - committed)
        return lag

    def _report(self, force: bool = False) -> None:
        c = self.counters

        def snapshot():
            return {
                "lines": c.lines,
                "bytes": c.bytes,
                "lag_bytes": self._lag(),
                "in_flight": self.sender.in_flight() if self.sender else 0,
                "errors": c.errors,
                "dead_letters": c.dead_letters,
                "empty_lines": c.empty_lines,
                "restarts": c.rewinds,
                "file": self.path,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }

        self.metrics.maybe_report(snapshot, force=force)


def ship(settings: Settings, path: str | os.PathLike, should_stop=lambda: False, **kwargs) -> Counters:
    f = Follower(settings, path, should_stop=should_stop, **kwargs)
    f.run()
    return f.counters
