"""A synthetic Open edX tracking log: realistic lines, deterministic for a seed.

The shapes follow what the LMS really writes (see ``../shared/corpus/``): server page
views whose ``event_type`` is the request path and whose ``event`` is a JSON *string*
of ``{"GET": ..., "POST": ...}``; browser events (video, problem, navigation) whose
``event`` is a JSON-encoded string - or, for a browser ``problem_check``, a URL-encoded
query string, and for ``problem_graded`` a list; server ``problem_check`` with
``success``/``attempts``/``grade``/``max_grade`` and ``context.module.usage_key``;
forum and enrolment events with object payloads; times with and without a zone.

The activity model: course runs (``course-v1:Org+Course+Run``) with chapters,
sequentials, verticals and video/problem/html blocks (``block-v1`` usage keys);
learners enrolled in one to three runs, who enrol (an ``about`` page view, a
``/change_enrollment`` POST and ``edx.course.enrollment.activated``) before their
first action in a run; sessions - a burst of activity under one session id - that walk
the courseware, watch videos (load, play, pause, seek, speed change, transcripts),
answer problems (browser and server ``problem_check``, ``problem_graded``), visit the
forum and close pages. Events are in time order over ``days`` days ending at ``end``.

A small fraction of lines is malformed the way real logs are (truncated JSON, non-UTF-8
bytes, unreadable time, no event type); another small fraction carries a logger prefix
(``... logger.py:41 - {...}``), which is still a valid line.

Everything comes from one ``random.Random(seed)``; nothing reads the clock, so the
same arguments always produce the same bytes (gzip headers carry no time or name).
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import orjson

UTC = timezone.utc
DEFAULT_END = date(2026, 11, 1)

# Dead-letter reasons the malformed lines are built to trigger (edxstream.core.model codes).
MALFORMED_KINDS: tuple[str, ...] = ("not_json", "not_utf8", "bad_time", "missing_event_type")


@dataclass(frozen=True)
class GenConfig:
    events: int = 10_000  # lines written, malformed ones included
    courses: int = 5
    learners: int = 500
    days: int = 30
    end: date = DEFAULT_END  # exclusive: the last event is on the day before
    seed: int = 42
    malformed: float = 0.001  # fraction of lines that must dead-letter
    prefixed: float = 0.001  # fraction of (valid) lines behind a logger prefix
    naive_time: float = 0.02  # fraction of events whose time has no zone (read as UTC)
    # mean events of a session beyond its first 3: shorter sessions spread the same
    # events over more learners (the analysis bench's 100,000-learner log)
    session_events: float = 35.0
    host: str = "lms.example.edu"

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ValueError("events must be >= 0")
        if self.session_events <= 0:
            raise ValueError("session_events must be > 0")
        if self.courses < 1 or self.learners < 1 or self.days < 1:
            raise ValueError("courses, learners and days must be >= 1")
        for name in ("malformed", "prefixed", "naive_time"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")

    @property
    def first_day(self) -> date:
        return self.end - timedelta(days=self.days)


# --- the course catalogue ---------------------------------------------------------------

ORGS = ("MITx", "HarvardX", "DelftX", "UCSanDiegoX", "BerkeleyX", "UQx", "TUMx", "edX", "EPFLx", "KyotoUx")
SUBJECTS = (
    ("CS101x", "Introduction to Computer Science"),
    ("STAT110x", "Probability"),
    ("PH207x", "Health in Numbers"),
    ("ENGL2x", "Academic Writing"),
    ("CHEM1x", "General Chemistry"),
    ("DS4x", "Data Science for Everyone"),
    ("ECON15x", "Microeconomics"),
    ("BIO7x", "Genetics"),
    ("MATH18x", "Linear Algebra"),
    ("PHYS8x", "Classical Mechanics"),
    ("HIST3x", "World History"),
    ("PSY1x", "Introduction to Psychology"),
)
RUNS = ("2026_T1", "2026_T2", "3T2026", "2T2026", "2026_Spring", "2026_Fall")
MODES = ("audit", "audit", "audit", "honor", "verified")


@dataclass
class Block:
    kind: str  # video | problem | html
    key: str  # block-v1 usage key
    hash: str  # the block@ part
    duration: int = 0  # videos: seconds
    code: str = ""  # videos: youtube id or "hls"
    inputs: int = 1  # problems: number of inputs
    max_grade: int = 1


@dataclass
class Vertical:
    key: str
    blocks: list[Block]


@dataclass
class Sequential:
    key: str
    hash: str
    verticals: list[Vertical]


@dataclass
class Chapter:
    hash: str
    sequentials: list[Sequential]


@dataclass
class Course:
    course_id: str
    org: str
    code: str
    run: str
    name: str
    chapters: list[Chapter]
    popularity: float
    start_day: int  # index of the first day it has activity
    forum_threads: list[str] = field(default_factory=list)
    learners: list[int] = field(default_factory=list)
    learner_cw: list[float] = field(default_factory=list)

    @property
    def sequentials(self) -> list[tuple[Chapter, Sequential]]:
        return [(ch, sq) for ch in self.chapters for sq in ch.sequentials]


@dataclass
class Learner:
    user_id: int
    username: str
    ip: str
    agent: str
    lang: str
    activity: float
    courses: list[int]
    enrolled: dict[int, str] = field(default_factory=dict)  # course index -> mode
    enrolled_at: dict[int, float] = field(default_factory=dict)  # course index -> time
    left_at: dict[int, float] = field(default_factory=dict)  # course index -> unenrolment time
    busy_until: float = 0.0  # end of the learner's latest session so far
    # where the learner was in each course: index into course.sequentials, vertical
    position: dict[int, tuple[int, int]] = field(default_factory=dict)
    # hidden behaviour (see "Hidden profiles" below): what edxstream analyze is scored against
    profile: "Profile | None" = None
    ability: float = 0.6
    stop_after_days: float | None = None  # stops coming back this long after enrolling


AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Safari/537.36 Edg/129.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/128.0.0.0 Safari/537.36",
)
LANGS = (
    "en-US,en;q=0.9",
    "en-GB,en;q=0.8",
    "es-ES,es;q=0.9,en;q=0.8",
    "fr-FR,fr;q=0.9,en;q=0.7",
    "de-DE,de;q=0.9,en;q=0.8",
    "zh-CN,zh;q=0.9",
    "pt-BR,pt;q=0.9,en;q=0.8",
    "hi-IN,hi;q=0.9,en;q=0.8",
)
SYLLABLES = ("ka", "lo", "mi", "ra", "to", "ne", "su", "vi", "da", "jo", "el", "an", "is", "or", "ul", "be")
# Share of sessions that start in each UTC hour: learners are worldwide, with a
# trough in the European and American night.
HOUR_WEIGHTS = (3, 2, 2, 2, 2, 3, 4, 5, 6, 7, 7, 7, 7, 8, 9, 9, 9, 8, 8, 7, 7, 6, 5, 4)
# Monday..Sunday
WEEKDAY_WEIGHTS = (1.1, 1.15, 1.1, 1.05, 0.9, 0.75, 0.95)


def _hex(rng: random.Random, bits: int = 128) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _youtube_id(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(11))


def _build_course(rng: random.Random, index: int, days: int) -> Course:
    org = ORGS[index % len(ORGS)]
    code, name = SUBJECTS[(index * 7 + index // len(ORGS)) % len(SUBJECTS)]
    run = RUNS[index % len(RUNS)]
    if index >= len(SUBJECTS):  # keep ids unique for any number of courses
        code = f"{code[:-1]}{index}x"
    course_id = f"course-v1:{org}+{code}+{run}"
    base = f"{org}+{code}+{run}"
    chapters = []
    for _ in range(rng.randint(5, 9)):
        seqs = []
        for _ in range(rng.randint(2, 4)):
            sq_hash = _hex(rng)
            verticals = []
            for _ in range(rng.randint(2, 5)):
                v_key = f"block-v1:{base}+type@vertical+block@{_hex(rng)}"
                blocks = []
                for _ in range(rng.randint(1, 3)):
                    kind = rng.choices(("video", "problem", "html"), (45, 35, 20))[0]
                    h = _hex(rng)
                    b = Block(kind, f"block-v1:{base}+type@{kind}+block@{h}", h)
                    if kind == "video":
                        b.duration = rng.randint(120, 1200)
                        b.code = "hls" if rng.random() < 0.2 else _youtube_id(rng)
                    elif kind == "problem":
                        b.inputs = rng.randint(1, 3)
                        b.max_grade = b.inputs
                    blocks.append(b)
                verticals.append(Vertical(v_key, blocks))
            seqs.append(Sequential(f"block-v1:{base}+type@sequential+block@{sq_hash}", sq_hash, verticals))
        chapters.append(Chapter(_hex(rng), seqs))
    # Popularity falls off like real catalogues (a few runs draw most learners); later
    # runs open part-way through the period.
    popularity = 1.0 / (1 + index) ** 0.8
    start_day = 0 if index < 2 else rng.randint(0, max(0, int(days * 0.4)))
    return Course(course_id, org, code, run, name, chapters, popularity, start_day)


def _random_ip(rng: random.Random) -> str:
    if rng.random() < 0.08:
        return "2a01:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(7))
    first = rng.choice((24, 31, 41, 49, 62, 73, 81, 89, 98, 103, 110, 123, 138, 151, 171, 177, 186, 189, 196, 201))
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _build_learners(rng: random.Random, cfg: GenConfig, courses: list[Course]) -> list[Learner]:
    learners = []
    pops = [c.popularity for c in courses]
    taken: set[str] = set()
    for i in range(cfg.learners):
        username = ""
        while not username or username in taken:  # usernames are unique on a site
            name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
            username = f"{name}{rng.randint(1, 9999)}" if rng.random() < 0.7 else f"{name.capitalize()}_{_hex(rng, 16)}"
        taken.add(username)
        n_courses = min(len(courses), rng.choices((1, 2, 3), (60, 30, 10))[0])
        chosen: list[int] = []
        while len(chosen) < n_courses:
            c = rng.choices(range(len(courses)), pops)[0]
            if c not in chosen:
                chosen.append(c)
        # A few learners do most of the clicking (heavy-tailed activity).
        activity = rng.paretovariate(1.3)
        learners.append(
            Learner(
                user_id=1000 + i * 7 + rng.randint(0, 6),
                username=username,
                ip=_random_ip(rng),
                agent=rng.choice(AGENTS),
                lang=rng.choice(LANGS),
                activity=activity,
                courses=chosen,
            )
        )
    for li, learner in enumerate(learners):
        for c in learner.courses:
            courses[c].learners.append(li)
    for c in courses:
        c.learner_cw = list(accumulate(learners[li].activity for li in c.learners))
    return learners


# --- hidden profiles and outcomes --------------------------------------------------------
#
# Every learner gets one behaviour profile, an ability and maybe a day they stop coming
# back, drawn from their own random stream (so the rest of the log's randomness is not
# reordered by them). The stated model, with its noise:
# - profile: drawn with probability ``share``. In a session the learner watches a video
#   block they meet with probability ``video``, attempts a problem block with
#   probability ``problem``, and opens the forum after a unit with probability ``forum``.
# - ability = profile.ability + N(0, ABILITY_SD), kept in [0.05, 0.95]: each input of a
#   problem is right with probability ability + U(-0.1, 0.1) on the first try, 0.15 more
#   on each further try.
# - stopping: a ``stops`` learner's sessions in a course end STOP_MEAN_DAYS (exponential)
#   after they enrol; any other learner stops, with probability LATE_STOP, between 7 days
#   and the log's length in days after they enrol (noise). A session drawn for a learner
#   who stopped goes to another learner of the course, drawn anew up to three times; the
#   last one drawn has it even if they stopped too, so a learner who stopped still comes
#   back now and then (noise). A stop may fall after the end of the log: the outcome
#   counts it, the log cannot show it.
# - how often a learner comes: sessions go to a course's learners in proportion to their
#   activity, which is heavy-tailed (Pareto) and the same for every profile, so many
#   learners who do not stop come on a day or two only.
# - outcome of a (learner, course): final grade = ability + N(0, GRADE_SD) in [0, 1];
#   at risk = they stopped, or the final grade is under PASS_GRADE.
# ``truth`` returns these per learner and course; ``write_dir`` saves them next to the
# manifest (``truth.json``) for the analysis bench.


@dataclass(frozen=True)
class Profile:
    name: str
    share: float
    video: float
    problem: float
    forum: float
    ability: float
    stops: bool


PROFILES: tuple[Profile, ...] = (
    Profile("watcher", 0.30, video=0.95, problem=0.05, forum=0.03, ability=0.60, stops=False),
    Profile("solver", 0.25, video=0.05, problem=0.95, forum=0.05, ability=0.72, stops=False),
    Profile("engaged", 0.20, video=0.90, problem=0.90, forum=0.35, ability=0.85, stops=False),
    Profile("dropout", 0.25, video=0.50, problem=0.40, forum=0.02, ability=0.35, stops=True),
)
ABILITY_SD = 0.07
STOP_MEAN_DAYS = 5.0
LATE_STOP = 0.05
GRADE_SD = 0.05
PASS_GRADE = 0.5


def _assign_profiles(seed: int, learners: list[Learner], days: int) -> None:
    """Give each learner a hidden profile, ability and stopping time (stated model above)."""
    rng = random.Random(f"profiles-{seed}")
    weights = [p.share for p in PROFILES]
    for lr in learners:
        p = rng.choices(PROFILES, weights)[0]
        lr.profile = p
        lr.ability = min(0.95, max(0.05, rng.gauss(p.ability, ABILITY_SD)))
        if p.stops:
            lr.stop_after_days = rng.expovariate(1 / STOP_MEAN_DAYS)
        elif rng.random() < LATE_STOP:
            lr.stop_after_days = rng.uniform(7, max(8, days))


def _stopped(lr: Learner, ci: int, at: float) -> bool:
    enrolled = lr.enrolled_at.get(ci)
    return lr.stop_after_days is not None and enrolled is not None and at > enrolled + lr.stop_after_days * 86400


def truth(learners: list[Learner], courses: list[Course], seed: int) -> list[dict]:
    """The planted truth per learner and course run they enrolled in: profile, ability,
    whether they stop, and the outcome drawn from the stated model."""
    rng = random.Random(f"outcomes-{seed}")
    rows = []
    for lr in learners:
        for ci in sorted(lr.enrolled_at):
            grade = min(1.0, max(0.0, rng.gauss(lr.ability, GRADE_SD)))
            stops = lr.stop_after_days is not None
            rows.append(
                {
                    "user_id": lr.user_id,
                    "username": lr.username,
                    "course_id": courses[ci].course_id,
                    "profile": lr.profile.name if lr.profile else None,
                    "ability": round(lr.ability, 4),
                    "stops": stops,
                    "final_grade": round(grade, 4),
                    "at_risk": stops or grade < PASS_GRADE,
                }
            )
    return rows


# --- one session's events ---------------------------------------------------------------

_dumps = orjson.dumps


def _fmt_time(ts: float, naive: bool) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return s if naive else s + "+00:00"


class _Session:
    """Emits the events of one learner's burst of activity in one course run."""

    def __init__(self, gen: "_Generator", learner: Learner, ci: int, start: float, budget: int, day_end: float):
        self.g = gen
        self.rng = gen.rng
        self.learner = learner
        self.ci = ci
        self.course = gen.courses[ci]
        self.t = start
        self.reserved = 1 if budget >= 2 else 0  # for the closing page_close
        self.left = budget - self.reserved
        self.day_end = day_end
        self.session = _hex(self.rng)
        self.page: str | None = None
        self.referer: str = f"https://{gen.cfg.host}/dashboard"
        self.out = gen.day_lines

    @property
    def open(self) -> bool:
        return self.left > 0 and self.t < self.day_end

    def tick(self, mean: float, floor: float = 0.2) -> None:
        self.t += floor + self.rng.expovariate(1.0 / mean)

    def _emit(self, doc: dict) -> bool:
        if self.left <= 0 or self.t >= self.day_end:
            return False
        self.left -= 1
        doc["time"] = _fmt_time(self.t, self.rng.random() < self.g.cfg.naive_time)
        self.out.append((self.t, _dumps(doc)))
        return True

    # envelopes: the field order of current LMS lines
    def browser(self, event_type: str, event, name: str | None = None) -> bool:
        lr, c = self.learner, self.course
        return self._emit(
            {
                "name": name or event_type,
                "context": {
                    "user_id": lr.user_id,
                    "path": "/event",
                    "course_id": c.course_id,
                    "org_id": c.org,
                    "enterprise_uuid": "",
                },
                "username": lr.username,
                "session": self.session,
                "ip": lr.ip,
                "agent": lr.agent,
                "host": self.g.cfg.host,
                "referer": self.page or self.referer,
                "accept_language": lr.lang,
                "event": event,
                "time": None,
                "event_type": event_type,
                "event_source": "browser",
                "page": self.page,
            }
        )

    def server(self, event_type: str, event, path: str, module: dict | None = None, course: bool = True) -> bool:
        lr, c = self.learner, self.course
        ctx = {
            "course_id": c.course_id if course else "",
            "course_user_tags": {},
            "user_id": lr.user_id,
            "path": path,
            "org_id": c.org if course else "",
            "enterprise_uuid": "",
        }
        if module is not None:
            ctx["module"] = module
        return self._emit(
            {
                "name": event_type,
                "context": ctx,
                "username": lr.username,
                "session": self.session,
                "ip": lr.ip,
                "agent": lr.agent,
                "host": self.g.cfg.host,
                "referer": self.referer,
                "accept_language": lr.lang,
                "event": event,
                "time": None,
                "event_type": event_type,
                "event_source": "server",
                "page": None,
            }
        )

    def view(self, path: str, get: dict | None = None, post: dict | None = None, course: bool = True) -> None:
        """A server page view: the event type is the path, the payload a JSON string."""
        payload = _dumps({"GET": get or {}, "POST": post or {}}).decode()
        self.server(path, payload, path, course=course)
        self.referer = f"https://{self.g.cfg.host}{path}"

    # activities
    def enrol(self) -> None:
        c, lr = self.course, self.learner
        mode = self.rng.choice(MODES)
        self.view(f"/courses/{c.course_id}/about")
        self.tick(20)
        self.view(
            "/change_enrollment", post={"course_id": [c.course_id], "enrollment_action": ["enroll"]}, course=False
        )
        # the learner counts as enrolled only if the event made it into the log
        if self.server(
            "edx.course.enrollment.activated",
            {"course_id": c.course_id, "user_id": lr.user_id, "mode": mode},
            "/change_enrollment",
        ):
            lr.enrolled[self.ci] = mode
            lr.enrolled_at[self.ci] = self.t
        self.tick(5)

    def unenrol(self) -> None:
        c, lr = self.course, self.learner
        mode = lr.enrolled.get(self.ci, "audit")
        self.view(
            "/change_enrollment", post={"course_id": [c.course_id], "enrollment_action": ["unenroll"]}, course=False
        )
        if self.server(
            "edx.course.enrollment.deactivated",
            {"course_id": c.course_id, "user_id": lr.user_id, "mode": mode},
            "/change_enrollment",
        ):
            del lr.enrolled[self.ci]
            del lr.enrolled_at[self.ci]
            lr.left_at[self.ci] = self.t

    def upgrade(self) -> None:
        c, lr = self.course, self.learner
        if self.server(
            "edx.course.enrollment.mode_changed",
            {"course_id": c.course_id, "user_id": lr.user_id, "mode": "verified"},
            "/change_enrollment",
        ):
            lr.enrolled[self.ci] = "verified"

    def courseware_page(self, ch: Chapter, sq: Sequential, pos: int) -> None:
        c = self.course
        path = f"/courses/{c.course_id}/courseware/{ch.hash}/{sq.hash}/"
        if pos > 0:
            path += f"{pos + 1}"
        self.view(path)
        self.page = f"https://{self.g.cfg.host}{path}"

    def video(self, b: Block) -> None:
        rng = self.rng
        base = {"id": b.hash, "code": b.code, "duration": b.duration}
        self.browser("load_video", _dumps(base).decode())
        self.tick(3)
        pos = 0.0 if rng.random() < 0.6 else round(rng.uniform(0, b.duration * 0.8), 3)
        if rng.random() < 0.15:
            self.browser("show_transcript", _dumps({**base, "current_time": pos}).decode())
            self.tick(2)
        speed = "1.0"
        while self.open and pos < b.duration:
            self.browser("play_video", _dumps({**base, "currentTime": pos}).decode())
            watched = min(b.duration - pos, rng.expovariate(1 / 150) + 5)
            self.t += watched / float(speed)
            pos = round(pos + watched, 3)
            if pos >= b.duration:
                self.browser("stop_video", _dumps({**base, "currentTime": float(b.duration)}).decode())
                break
            r = rng.random()
            if r < 0.55:
                self.browser("pause_video", _dumps({**base, "currentTime": pos}).decode())
                self.tick(15)
                if rng.random() < 0.3:
                    break  # leaves the video part-way
            elif r < 0.85:
                new = round(max(0.0, min(b.duration - 1, pos + rng.uniform(-90, 120))), 3)
                self.browser(
                    "seek_video", _dumps({**base, "old_time": pos, "new_time": new, "type": "onSlideSeek"}).decode()
                )
                pos = new
                self.tick(1)
            elif r < 0.95:
                new_speed = rng.choice(("0.75", "1.25", "1.5", "2.0"))
                self.browser(
                    "speed_change_video",
                    _dumps({**base, "current_time": pos, "old_speed": speed, "new_speed": new_speed}).decode(),
                )
                speed = new_speed
                self.tick(1)
            else:
                self.browser("hide_transcript", _dumps({**base, "current_time": pos}).decode())
                self.tick(1)
        if rng.random() < 0.3:
            c = self.course
            self.view(
                f"/courses/{c.course_id}/xblock/{b.key}/handler/xmodule_handler/save_user_state",
                post={"saved_video_position": [f"00:{int(pos) // 60:02d}:{int(pos) % 60:02d}"]},
            )
        self.tick(4)

    def problem(self, b: Block) -> None:
        rng = self.rng
        c = self.course
        if rng.random() < 0.1:
            self.browser("problem_show", _dumps({"problem": b.key}).decode())
            self.tick(10)
        ability = self.learner.ability + 0.2 * (rng.random() - 0.5)
        attempts = 0
        module = {"display_name": f"Problem {b.hash[:4]}", "usage_key": b.key}
        while self.open and attempts < 4:
            attempts += 1
            self.tick(60)  # reading and answering
            answers = {f"{b.hash}_{i + 2}_1": f"choice_{rng.randint(0, 3)}" for i in range(b.inputs)}
            correct = {k: rng.random() < ability + 0.15 * (attempts - 1) for k in answers}
            query = "&".join(f"input_{k}={v}" for k, v in answers.items())
            self.browser("problem_check", query)
            self.tick(0.3, floor=0.05)
            self.view(
                f"/courses/{c.course_id}/xblock/{b.key}/handler/xmodule_handler/problem_check",
                post={f"input_{k}": [v] for k, v in answers.items()},
            )
            grade = sum(correct.values())
            cmap = {
                k: {
                    "correctness": "correct" if ok else "incorrect",
                    "npoints": None,
                    "msg": "",
                    "hint": "",
                    "hintmode": None,
                    "queuestate": None,
                }
                for k, ok in correct.items()
            }
            self.server(
                "problem_check",
                {
                    "state": {
                        "seed": 1,
                        "student_answers": {},
                        "has_saved_answers": False,
                        "correct_map": {},
                        "input_state": {k: {} for k in answers},
                        "done": attempts > 1,
                    },
                    "problem_id": b.key,
                    "answers": answers,
                    "grade": grade,
                    "max_grade": b.max_grade,
                    "correct_map": cmap,
                    "success": "correct" if grade == b.max_grade else "incorrect",
                    "attempts": attempts,
                    "submission": {
                        k: {
                            "question": "",
                            "answer": v,
                            "response_type": "multiplechoiceresponse",
                            "input_type": "choicegroup",
                            "correct": correct[k],
                            "variant": "",
                            "group_label": "",
                        }
                        for k, v in answers.items()
                    },
                },
                f"/courses/{c.course_id}/xblock/{b.key}/handler/xmodule_handler/problem_check",
                module=module,
            )
            self.tick(0.2, floor=0.05)
            html = (
                f'<h3 class="hd hd-3 problem-header" id="{b.hash}-problem-title">Problem {b.hash[:4]}</h3>'
                f'<div class="problem-progress">{grade}/{b.max_grade} point</div>'
            )
            self.browser("problem_graded", [query, html])
            if grade == b.max_grade:
                break
            if rng.random() < 0.08:
                self.server(
                    "showanswer",
                    {"problem_id": b.key},
                    f"/courses/{c.course_id}/xblock/{b.key}/handler/xmodule_handler/problem_show",
                    module=module,
                )
                break
            if rng.random() < 0.5:
                break  # gives up

    def forum(self) -> None:
        rng, c = self.rng, self.course
        self.view(f"/courses/{c.course_id}/discussion/forum/")
        self.tick(15)
        threads = c.forum_threads
        roles = {"user_course_roles": [], "user_forums_roles": ["Student"]}
        for _ in range(rng.randint(1, 3)):
            self._forum_action(threads, roles)
        self.tick(20)

    def _forum_action(self, threads: list[str], roles: dict) -> None:
        rng, c, lr = self.rng, self.course, self.learner
        host = self.g.cfg.host
        if threads and rng.random() < 0.7:
            tid = rng.choice(threads)
            url = f"https://{host}/courses/{c.course_id}/discussion/forum/course/threads/{tid}"
            self.server(
                "edx.forum.thread.viewed",
                {
                    "commentable_id": "course",
                    "id": tid,
                    "title": "Question",
                    "title_truncated": False,
                    "url": url,
                    **roles,
                },
                f"/courses/{c.course_id}/discussion/forum/course/threads/{tid}",
            )
            self.tick(40)
            r = rng.random()
            if r < 0.25:
                rid = _hex(rng, 96)
                self.server(
                    "edx.forum.response.created",
                    {
                        "body": "I had the same question, the second lecture explains it.",
                        "commentable_id": "course",
                        "discussion": {"id": tid},
                        "id": rid,
                        "options": {"followed": False},
                        "truncated": False,
                        "url": url,
                        **roles,
                    },
                    f"/courses/{c.course_id}/discussion/threads/{tid}/reply",
                )
            elif r < 0.4:
                self.server(
                    "edx.forum.comment.created",
                    {
                        "body": "Thanks!",
                        "commentable_id": "course",
                        "discussion": {"id": tid},
                        "response": {"id": _hex(rng, 96)},
                        "id": _hex(rng, 96),
                        "options": {"followed": False},
                        "truncated": False,
                        "url": url,
                        **roles,
                    },
                    f"/courses/{c.course_id}/discussion/comments/{_hex(rng, 96)}/reply",
                )
            elif r < 0.55:
                self.server(
                    "edx.forum.thread.voted",
                    {
                        "commentable_id": "course",
                        "id": tid,
                        "target_username": lr.username,
                        "undo_vote": False,
                        "url": url,
                        "vote_value": "up",
                        **roles,
                    },
                    f"/courses/{c.course_id}/discussion/threads/{tid}/upvote",
                )
        elif rng.random() < 0.5:
            tid = _hex(rng, 96)
            threads.append(tid)
            self.server(
                "edx.forum.thread.created",
                {
                    "anonymous": False,
                    "anonymous_to_peers": False,
                    "body": "How is the answer to the last problem derived?",
                    "commentable_id": "course",
                    "group_id": None,
                    "id": tid,
                    "options": {"followed": True},
                    "thread_type": "question",
                    "title": "Question about the problem set",
                    "title_truncated": False,
                    "truncated": False,
                    "url": f"https://{host}/courses/{c.course_id}/discussion/forum/",
                    **roles,
                },
                f"/courses/{c.course_id}/discussion/course/threads/create",
            )
        self.tick(20)

    def run(self) -> None:
        rng, c, lr, host = self.rng, self.course, self.learner, self.g.cfg.host
        if rng.random() < 0.25:
            self.view("/dashboard", course=False)
            self.tick(0.5, floor=0.05)
            if rng.random() < 0.3:  # the translations the page loads (not course activity)
                self.view("/jsi18n/", course=False)
            self.tick(8)
        if self.ci not in lr.enrolled:
            self.enrol()
            if self.ci not in lr.enrolled:
                return  # out of budget before the enrolment: no activity without one
        self.view(f"/courses/{c.course_id}/course/")
        self.tick(10)
        seqs = c.sequentials
        si, vi = lr.position.get(self.ci, (0, 0))
        if rng.random() < 0.15:  # jumps around the outline
            si, vi = rng.randrange(len(seqs)), 0
            self.browser(
                "edx.ui.lms.outline.selected",
                _dumps(
                    {
                        "target_url": f"https://{host}/courses/{c.course_id}/courseware/{seqs[si][0].hash}/{seqs[si][1].hash}/",
                        "target_name": "Week",
                        "widget_placement": "accordion",
                    }
                ).decode(),
            )
        ch, sq = seqs[si]
        self.courseware_page(ch, sq, vi)
        self.tick(5)
        prof = lr.profile or PROFILES[0]
        while self.open:
            vert = sq.verticals[vi]
            for b in vert.blocks:
                if not self.open:
                    break
                if b.kind == "video" and rng.random() < prof.video:
                    self.video(b)
                elif b.kind == "problem" and rng.random() < prof.problem:
                    self.problem(b)
                else:
                    self.tick(40)  # reading
            r = rng.random()
            if r < prof.forum:
                self.forum()
            elif 0.1 <= r < 0.13:
                self.browser(
                    "edx.ui.lms.link_clicked",
                    _dumps(
                        {"target_url": f"https://{host}/courses/{c.course_id}/progress", "current_url": self.page}
                    ).decode(),
                )
                self.tick(2)
                self.view(f"/courses/{c.course_id}/progress")
                self.tick(20)
            elif r < 0.14 and lr.enrolled.get(self.ci) == "audit":
                self.upgrade()
            # move on: the next unit in the sequence, or the next sequence
            tabs, old_vi = len(sq.verticals), vi
            if vi + 1 < tabs and rng.random() < 0.85:
                self.browser(
                    "seq_next",
                    _dumps(
                        {
                            "old": vi + 1,
                            "current_tab": vi + 1,
                            "tab_count": tabs,
                            "new": vi + 2,
                            "widget_placement": "top",
                            "id": sq.key,
                        }
                    ).decode(),
                    name="edx.ui.lms.sequence.next_selected",
                )
                vi += 1
            elif vi > 0 and rng.random() < 0.3:
                new = rng.randrange(tabs)
                self.browser(
                    "seq_goto",
                    _dumps(
                        {
                            "target_tab": new + 1,
                            "old": vi + 1,
                            "current_tab": vi + 1,
                            "tab_count": tabs,
                            "new": new + 1,
                            "widget_placement": "top",
                            "id": sq.key,
                        }
                    ).decode(),
                    name="edx.ui.lms.sequence.tab_selected",
                )
                vi = new
            elif vi > 0 and rng.random() < 0.2:
                self.browser(
                    "seq_prev",
                    _dumps(
                        {
                            "old": vi + 1,
                            "current_tab": vi + 1,
                            "tab_count": tabs,
                            "new": vi,
                            "widget_placement": "top",
                            "id": sq.key,
                        }
                    ).decode(),
                    name="edx.ui.lms.sequence.previous_selected",
                )
                vi -= 1
            else:
                si = (si + 1) % len(seqs)
                vi = 0
                ch, sq = seqs[si]
                self.courseware_page(ch, sq, 0)
                old_vi = 0
            if vi != old_vi:
                # the legacy courseware remembers the unit with an AJAX call
                self.tick(0.3, floor=0.05)
                self.view(
                    f"/courses/{c.course_id}/xblock/{sq.key}/handler/xmodule_handler/goto_position",
                    post={"position": [str(vi + 1)]},
                )
            self.tick(3)
        lr.position[self.ci] = (si, vi)
        # the session ends with the page closing, in the slot kept for it
        self.left += self.reserved
        self.browser("page_close", "{}" if rng.random() < 0.7 else "")

    def leave(self) -> None:
        """A learner unenrolling: a short session of its own."""
        self.view("/dashboard", course=False)
        self.tick(10)
        self.unenrol()


# --- days, malformed lines, files --------------------------------------------------------


@dataclass
class Day:
    day: date
    lines: list[bytes]  # each ends with b"\n"
    valid: int
    malformed: Counter


class _Generator:
    def __init__(self, cfg: GenConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.courses = [_build_course(self.rng, i, cfg.days) for i in range(cfg.courses)]
        self.learners = _build_learners(self.rng, cfg, self.courses)
        _assign_profiles(cfg.seed, self.learners, cfg.days)
        # The most popular run with learners is open from the first day, so every day
        # has a course to be busy in.
        first = next(c for c in self.courses if c.learners)
        first.start_day = 0
        self.day_lines: list[tuple[float, bytes]] = []
        self.hour_cw = list(accumulate(HOUR_WEIGHTS))

    def _course_weight(self, c: Course, d: int) -> float:
        if not c.learners:
            return 0.0
        if d < c.start_day:
            return 0.0
        age = d - c.start_day
        # a launch peak that settles to a steady level
        return c.popularity * (0.6 + 1.4 * 0.9**age)

    def day_counts(self) -> list[int]:
        """Events per day: weekday rhythm times the courses running that day; the total
        is exactly ``events`` (largest remainders)."""
        cfg = self.cfg
        weights = []
        for d in range(cfg.days):
            wd = (cfg.first_day + timedelta(days=d)).weekday()
            w = sum(self._course_weight(c, d) for c in self.courses) * WEEKDAY_WEIGHTS[wd]
            weights.append(w)
        total = sum(weights) or 1.0
        raw = [cfg.events * w / total for w in weights]
        counts = [int(x) for x in raw]
        rest = cfg.events - sum(counts)
        for i in sorted(range(cfg.days), key=lambda i: raw[i] - counts[i], reverse=True)[:rest]:
            counts[i] += 1
        return counts

    def _day(self, d: int, n: int) -> Day:
        cfg, rng = self.cfg, self.rng
        day = cfg.first_day + timedelta(days=d)
        t0 = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        t_end = t0 + 86400
        cws = list(accumulate(self._course_weight(c, d) for c in self.courses))
        self.day_lines = []
        made = stuck = 0
        while made < n:
            # Plan sessions for what is left, then play them in order of start time, so
            # that learner state (enrolments above all) changes in the order of the log.
            plan = []
            planned = 0
            while planned < n - made:
                ci = rng.choices(range(len(self.courses)), cum_weights=cws)[0]
                c = self.courses[ci]
                li = rng.choices(c.learners, cum_weights=c.learner_cw)[0]
                hour = rng.choices(range(24), cum_weights=self.hour_cw)[0]
                # leave room before midnight so a session is rarely cut by the day's end
                start = t0 + hour * 3600 + rng.random() * 3600
                if start > t_end - 600:
                    start = t_end - 600 - rng.random() * 3600
                # a learner who stopped (hidden profile) does not come back: someone else
                # of the course has the session (after a few tries, they do: noise)
                for _ in range(3):
                    if not _stopped(self.learners[li], ci, start):
                        break
                    li = rng.choices(c.learners, cum_weights=c.learner_cw)[0]
                budget = min(n - made - planned, 3 + int(rng.expovariate(1 / cfg.session_events)))
                plan.append((start, li, ci, budget))
                planned += budget
            plan.sort(key=lambda p: p[0])
            for start, li, ci, budget in plan:
                learner = self.learners[li]
                # Sessions of one learner may overlap, but never across a change of
                # enrolment: a session starts after the (un)enrolment it depends on.
                changed = learner.enrolled_at.get(ci) if ci in learner.enrolled else learner.left_at.get(ci)
                if changed is not None and start <= changed:
                    start = changed + 1 + rng.random() * 60
                    if start >= t_end - 1:
                        continue
                session = _Session(self, learner, ci, start, budget, t_end)
                if budget >= 3 and ci in learner.enrolled and start > learner.busy_until and rng.random() < 0.003:
                    session.leave()  # nothing of the learner's is still running
                else:
                    session.run()
                learner.busy_until = max(learner.busy_until, session.t)
            before, made = made, len(self.day_lines)
            stuck = stuck + 1 if made == before else 0
            if stuck > 1000:  # cannot happen with sane arguments; never spin forever
                raise RuntimeError(f"cannot place {n - made} more events on {day}")
        self.day_lines.sort(key=lambda x: x[0])
        lines = [doc + b"\n" for _, doc in self.day_lines]
        self.day_lines = []
        malformed: Counter = Counter()
        if cfg.malformed or cfg.prefixed:
            for i, line in enumerate(lines):
                r = rng.random()
                if r < cfg.malformed:
                    kind = MALFORMED_KINDS[rng.randrange(len(MALFORMED_KINDS))]
                    lines[i] = _corrupt(rng, line, kind)
                    malformed[kind] += 1
                elif r < cfg.malformed + cfg.prefixed:
                    lines[i] = _logger_prefix(rng, line, t0) + line
        return Day(day, lines, len(lines) - sum(malformed.values()), malformed)

    def days(self) -> Iterator[Day]:
        for d, n in enumerate(self.day_counts()):
            yield self._day(d, n)


def _corrupt(rng: random.Random, line: bytes, kind: str) -> bytes:
    """A line broken the way real ones are; each kind dead-letters with its reason."""
    if kind == "not_json":  # a write cut short (disk full, killed process)
        return line[: rng.randint(20, max(21, len(line) - 20))].rstrip(b"\n") + b"\n"
    if kind == "not_utf8":  # a Latin-1 name written as raw bytes
        i = line.find(b'"username":"')
        i = i + 12 if i != -1 else len(line) // 2
        return line[:i] + b"Jos\xe9 M\xfcller " + line[i:]
    if kind == "bad_time":  # an unrendered template, seen in exported fixtures
        i = line.find(b'"time":"')
        j = line.find(b'"', i + 8)
        return line[: i + 8] + b"{{ start_date }}T" + line[i + 19 : j] + line[j:]
    # missing_event_type: a {username, time} stub with no event type
    i = line.find(b'"time":"')
    j = line.find(b'"', i + 8)
    u = line.find(b'"username":"')
    v = line.find(b'"', u + 12)
    return b'{"username":"' + line[u + 12 : v] + b'","time":"' + line[i + 8 : j] + b'"}\n'


def _logger_prefix(rng: random.Random, line: bytes, t0: float) -> bytes:
    """The prefix Python's logging puts before a tracking line when the LMS logs
    through a formatter (valid: the parser skips it)."""
    i = line.find(b'"time":"')
    stamp = line[i + 8 : i + 27].replace(b"T", b" ")
    return stamp + b",%03d INFO %d [tracking] [user None] [ip None] logger.py:41 - " % (
        rng.randrange(1000),
        rng.randint(10, 99999),
    )


def generate_days(cfg: GenConfig) -> Iterator[Day]:
    """The log, one UTC day at a time, oldest first."""
    return _Generator(cfg).days()


def generate_lines(cfg: GenConfig) -> Iterator[bytes]:
    for day in generate_days(cfg):
        yield from day.lines


# --- writing ----------------------------------------------------------------------------


@dataclass
class FileInfo:
    name: str
    day: str | None  # the day its events are on (rotated files), else None
    lines: int
    valid: int
    bytes: int


@dataclass
class Manifest:
    seed: int
    events: int
    valid: int
    malformed: dict[str, int]
    first_day: str
    last_day: str
    courses: list[str]
    learners: int
    files: list[FileInfo]

    def to_json(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_INDENT_2)


def _gzip_bytes(data: bytes, level: int) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and no file name in the header: the same lines give the same bytes
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def write_dir(
    cfg: GenConfig,
    out: Path,
    rotate: str = "daily",
    gzip_level: int = 3,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Write ``tracking.log`` (the newest day, or everything with ``rotate="none"``) and,
    with daily rotation, one ``tracking.log-YYYYMMDD.gz`` per older day - named for the
    day its events are on, like logrotate's ``dateext`` with ``dateyesterday`` - plus
    ``manifest.json`` with the counts a consumer of the files can check against."""
    if rotate not in ("daily", "none"):
        raise ValueError(f"rotate must be 'daily' or 'none', got {rotate!r}")
    out.mkdir(parents=True, exist_ok=True)
    gen = _Generator(cfg)
    files: list[FileInfo] = []
    malformed: Counter = Counter()
    live = out / "tracking.log"
    last = cfg.days - 1
    with open(live, "wb") as live_fp:
        live_lines = live_valid = 0
        for d, day in enumerate(gen.days()):
            data = b"".join(day.lines)
            malformed.update(day.malformed)
            if rotate == "daily" and d < last:
                name = f"tracking.log-{day.day:%Y%m%d}.gz"
                blob = _gzip_bytes(data, gzip_level)
                (out / name).write_bytes(blob)
                files.append(FileInfo(name, day.day.isoformat(), len(day.lines), day.valid, len(blob)))
            else:
                live_fp.write(data)
                live_lines += len(day.lines)
                live_valid += day.valid
            if progress:
                progress(len(day.lines))
    live_day = (cfg.end - timedelta(days=1)).isoformat() if rotate == "daily" else None
    files.append(FileInfo("tracking.log", live_day, live_lines, live_valid, live.stat().st_size))
    manifest = Manifest(
        seed=cfg.seed,
        events=cfg.events,
        valid=cfg.events - sum(malformed.values()),
        malformed=dict(sorted(malformed.items())),
        first_day=cfg.first_day.isoformat(),
        last_day=(cfg.end - timedelta(days=1)).isoformat(),
        courses=[c.course_id for c in gen.courses],
        learners=cfg.learners,
        files=files,
    )
    (out / "manifest.json").write_bytes(manifest.to_json() + b"\n")
    (out / TRUTH_FILE).write_bytes(orjson.dumps(truth(gen.learners, gen.courses, cfg.seed)) + b"\n")
    return manifest


def write_stream(cfg: GenConfig, fp: BinaryIO, progress: Callable[[int], None] | None = None) -> Counter:
    """Write every line, oldest first, to ``fp``; returns the malformed counts."""
    malformed: Counter = Counter()
    for day in generate_days(cfg):
        fp.write(b"".join(day.lines))
        malformed.update(day.malformed)
        if progress:
            progress(len(day.lines))
    fp.flush()
    return malformed


TRUTH_FILE = "truth.json"  # the planted profiles and outcomes, next to manifest.json


def read_manifest(out: Path) -> dict:
    return orjson.loads((out / "manifest.json").read_bytes())


def log_files(out: Path) -> list[Path]:
    """The files ``write_dir`` made, oldest first: rotated ``.gz`` then ``tracking.log``."""
    rotated = sorted(out.glob("tracking.log-*.gz"))
    live = out / "tracking.log"
    return rotated + ([live] if live.exists() else [])


# --- the courses' structure, as OLX exports --------------------------------------------
# What Studio's export of each generated course would hold, so that `edxstream course
# import` gives the generated logs' block ids their names. Names and due dates come from
# the blocks' places in the outline, not from the random generator, so writing exports
# changes nothing in the logs.


def _olx_names(course: Course) -> dict[str, str]:
    """A display name per block key (usage keys and hashes), from its place in the outline."""
    names: dict[str, str] = {}
    counters: Counter = Counter()
    for ci, ch in enumerate(course.chapters, 1):
        names[ch.hash] = f"Week {ci}: {course.name}"
        for si, sq in enumerate(ch.sequentials, 1):
            names[sq.key] = f"{ci}.{si} " + ("Homework" if _olx_graded(ch, sq) else "Lesson")
            for vi, v in enumerate(sq.verticals, 1):
                names[v.key] = f"Unit {ci}.{si}.{vi}"
                for b in v.blocks:
                    counters[b.kind] += 1
                    label = {"video": "Video", "problem": "Quiz", "html": "Reading"}[b.kind]
                    names[b.key] = f"{label} {counters[b.kind]}: {course.name} {ci}.{si}"
    return names


def _olx_graded(ch: Chapter, sq: Sequential) -> bool:
    """The last subsection of each week is its graded homework."""
    return sq is ch.sequentials[-1]


def _olx_due(cfg: GenConfig, course: Course, week: int) -> datetime:
    """Week ``week``'s homework is due at the end of its share of the course's days."""
    span = max(1, cfg.days - course.start_day)
    day = course.start_day + max(0, min(span - 1, (week + 1) * span // len(course.chapters) - 1))
    first = datetime.combine(cfg.first_day, datetime.min.time(), UTC)
    return first + timedelta(days=day, hours=23, minutes=59)


def course_export(cfg: GenConfig, course: Course) -> bytes:
    """The ``.tar.gz`` Studio would export for the course (OLX, one file per block;
    the same bytes for the same arguments)."""
    from xml.sax.saxutils import quoteattr

    names = _olx_names(course)
    files: dict[str, str] = {}

    def el(tag: str, attrs: dict[str, str], children: list[str] = ()) -> str:
        a = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
        if not children:
            return f"<{tag}{a}/>\n"
        return f"<{tag}{a}>\n" + "".join(f"  {c}" for c in children) + f"</{tag}>\n"

    def ptr(tag: str, name: str) -> str:
        return f'<{tag} url_name="{name}"/>\n'

    files["course.xml"] = el("course", {"url_name": course.run, "org": course.org, "course": course.code})
    chapters = []
    for wi, ch in enumerate(course.chapters):
        seqs = []
        for sq in ch.sequentials:
            verts = []
            for v in sq.verticals:
                comps = []
                for b in v.blocks:
                    attrs = {"display_name": names[b.key]}
                    if b.kind == "video":
                        attrs["youtube_id_1_0"] = "" if b.code == "hls" else b.code
                    elif b.kind == "problem":
                        attrs["weight"] = str(b.max_grade)
                    files[f"{b.kind}/{b.hash}.xml"] = el(b.kind, attrs)
                    comps.append(ptr(b.kind, b.hash))
                vh = v.key.rsplit("@", 1)[1]
                files[f"vertical/{vh}.xml"] = el("vertical", {"display_name": names[v.key]}, comps)
                verts.append(ptr("vertical", vh))
            attrs = {"display_name": names[sq.key]}
            if _olx_graded(ch, sq):
                attrs.update(
                    graded="true", format="Homework", due=_olx_due(cfg, course, wi).strftime("%Y-%m-%dT%H:%M:%SZ")
                )
            files[f"sequential/{sq.hash}.xml"] = el("sequential", attrs, verts)
            seqs.append(ptr("sequential", sq.hash))
        files[f"chapter/{ch.hash}.xml"] = el("chapter", {"display_name": names[ch.hash]}, seqs)
        chapters.append(ptr("chapter", ch.hash))
    files[f"course/{course.run}.xml"] = el("course", {"display_name": course.name}, chapters)

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for path in sorted(files):
                data = files[path].encode("utf-8")
                info = tarfile.TarInfo(f"course/{path}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_course_exports(cfg: GenConfig, out: Path) -> list[Path]:
    """One OLX export per generated course, ``<org>-<course>-<run>.tar.gz`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for course in _Generator(cfg).courses:
        path = out / f"{course.org}-{course.code}-{course.run}.tar.gz"
        path.write_bytes(course_export(cfg, course))
        paths.append(path)
    return paths
