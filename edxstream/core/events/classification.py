"""What an event is, as a table a reader can audit and extend: the taxonomy.

A tracking log records requests as much as it records what learners did: one problem
submission writes a browser ``problem_check``, a server ``problem_check``, a browser
``problem_graded``, the ``.../xmodule_handler/problem_check`` request and a grades event.
Counting lines counts requests. So every event gets three marks:

- a **kind**: ``learner`` (a learner interaction, counted), ``echo`` (another record of
  an action that a ``learner`` row already counts: the browser and server halves of one
  click, the AJAX request behind it), ``plumbing`` (requests a page makes while it loads
  or keeps itself up to date: transcripts, saved player state, translations, static
  files), ``authoring`` (Studio and the course team's tools), ``system`` (what the
  platform computes or logs by itself: grades, health checks, analytics echoes), ``api``
  (REST and OAuth calls), and ``other`` when no row matches;
- a **category**: :data:`CATEGORIES` (access, content, video, forum, assessment,
  enrollment, other);
- an **interaction** name shared by every record of one action (``problem.submitted``
  for all five records above), so the records of one action count once: only its
  ``learner`` record is counted as an interaction.

The rows are built from Open edX's tracking-log event reference (the "Student event
types" and "Course team event types" pages of the edX Research Guide) and cross-checked
with event-routing-backends' xAPI transformers, which list the events Open edX itself
turns into learner statements. docs/taxonomy.md is this table, written by
``python scripts/taxonomy_table.py --write``; a test checks every event of the shared
corpus and of the generator against the document.

A row's pattern is a whole event name (``problem_check``), a dotted prefix ending in
``*`` (``edx.forum.*``: the longest matching prefix wins), or, for URL event types (a
server request logged under its path, reduced to a route template), a substring of the
route starting with ``/`` (rows in table order, first match wins, so specific handlers
come before the pages that contain them). A row may be limited to one ``event_source``
(the browser and the server both log ``problem_check``). An interaction ending in ``*``
takes the rest of the event name.

To classify a new event, add one row; the tests check every row.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional

ACCESS = "access"
CONTENT = "content"
VIDEO = "video"
FORUM = "forum"
ASSESSMENT = "assessment"
ENROLLMENT = "enrollment"
OTHER = "other"

CATEGORIES: tuple[str, ...] = (ACCESS, CONTENT, VIDEO, FORUM, ASSESSMENT, ENROLLMENT, OTHER)

LEARNER = "learner"
ECHO = "echo"
PLUMBING = "plumbing"
AUTHORING = "authoring"
SYSTEM = "system"
API = "api"
KINDS: tuple[str, ...] = (LEARNER, ECHO, PLUMBING, AUTHORING, SYSTEM, API, OTHER)


class Rule(NamedTuple):
    """One row of the taxonomy: an event pattern and the kind and category it gives."""

    pattern: str
    kind: str
    category: str
    interaction: str
    source: Optional[str] = None  # the event_source the row is limited to (None: any)
    ref: str = ""  # where the rule comes from


class Taxon(NamedTuple):
    """What the taxonomy says about one event."""

    kind: str
    category: str
    interaction: str


# Reference names used in the ref column.
_STUDENT = "event reference: student events"
_TEAM = "event reference: course team events"
_XAPI = "xAPI transformer"
_R = Rule

# 1. Event names: the row for the name and the event's event_source, else the row for
# the name without a source, else the name's first row, else the longest matching prefix.
NAMES: tuple[Rule, ...] = (
    # --- access: sign-in, dashboard, course home, catalog ---------------------------------
    _R("edx.user.login", LEARNER, ACCESS, "logged_in", ref=_STUDENT),
    _R("edx.user.logout", LEARNER, ACCESS, "logged_out", ref=_STUDENT),
    _R("edx.user.settings.*", LEARNER, ACCESS, "settings.changed", ref=_STUDENT),
    _R("edx.user.*", LEARNER, ACCESS, "user.*", ref=_STUDENT),
    _R("edx.bi.user.account.*", SYSTEM, ACCESS, "account.*", ref="analytics copy of a sign-in"),
    _R("edx.course.home.*", LEARNER, ACCESS, "course_home.*", ref=_STUDENT),
    _R("edx.course.tool.accessed", LEARNER, ACCESS, "course_tool.accessed", ref=_STUDENT),
    _R("edx.course_discovery.search.initiated", LEARNER, ACCESS, "catalog.searched", ref=_STUDENT),
    _R("edx.course_discovery.*", SYSTEM, ACCESS, "catalog.searched", ref=_STUDENT),
    # --- enrollment -----------------------------------------------------------------------
    _R("edx.course.enrollment.activated", LEARNER, ENROLLMENT, "enrolled", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.course.enrollment.deactivated", LEARNER, ENROLLMENT, "unenrolled", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.course.enrollment.mode_changed", LEARNER, ENROLLMENT, "mode_changed", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.course.enrollment.*", LEARNER, ENROLLMENT, "enrollment.*", ref=_STUDENT),
    # --- content: courseware navigation, links, textbooks, bookmarks, notes --------------
    _R("seq_goto", LEARNER, CONTENT, "unit.selected", "browser", ref=_STUDENT),
    _R("seq_next", LEARNER, CONTENT, "unit.next", "browser", ref=_STUDENT),
    _R("seq_prev", LEARNER, CONTENT, "unit.previous", "browser", ref=_STUDENT),
    _R("edx.ui.lms.sequence.tab_selected", LEARNER, CONTENT, "unit.selected", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.ui.lms.sequence.next_selected", LEARNER, CONTENT, "unit.next", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.ui.lms.sequence.previous_selected", LEARNER, CONTENT, "unit.previous", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.ui.lms.*", LEARNER, CONTENT, "navigation.*", ref=f"{_STUDENT}; {_XAPI}"),
    _R("page_close", PLUMBING, CONTENT, "page.closed", "browser", ref=f"{_STUDENT} (sent on unload)"),
    _R("book", LEARNER, CONTENT, "textbook.read", ref=_STUDENT),
    _R("book.*", LEARNER, CONTENT, "textbook.*", ref=_STUDENT),
    _R("textbook.*", LEARNER, CONTENT, "textbook.*", ref=_STUDENT),
    _R("edx.bookmark.*", LEARNER, CONTENT, "bookmark.*", ref=_STUDENT),
    _R("edx.course.student_notes.*", LEARNER, CONTENT, "notes.*", ref=_STUDENT),
    _R("edx.done.toggled", LEARNER, CONTENT, "done.toggled", ref=_STUDENT),
    _R("edx.completion.*", SYSTEM, CONTENT, "block.completed", ref=_XAPI),
    # --- video: player events; edx.video.* (mobile, newer players) name the same actions ---
    _R("load_video", PLUMBING, VIDEO, "video.loaded", ref=f"{_STUDENT} (sent when the page loads)"),
    _R("edx.video.loaded", PLUMBING, VIDEO, "video.loaded", ref=f"{_STUDENT} (sent when the page loads)"),
    _R("play_video", LEARNER, VIDEO, "video.played", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.played", LEARNER, VIDEO, "video.played", ref=f"{_STUDENT}; {_XAPI}"),
    _R("pause_video", LEARNER, VIDEO, "video.paused", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.paused", LEARNER, VIDEO, "video.paused", ref=f"{_STUDENT}; {_XAPI}"),
    _R("seek_video", LEARNER, VIDEO, "video.seeked", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.position.changed", LEARNER, VIDEO, "video.seeked", ref=f"{_STUDENT}; {_XAPI}"),
    _R("stop_video", LEARNER, VIDEO, "video.stopped", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.stopped", LEARNER, VIDEO, "video.stopped", ref=f"{_STUDENT}; {_XAPI}"),
    _R("complete_video", LEARNER, VIDEO, "video.completed", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.completed", LEARNER, VIDEO, "video.completed", ref=f"{_STUDENT}; {_XAPI}"),
    _R("speed_change_video", LEARNER, VIDEO, "video.speed_changed", ref=f"{_STUDENT}; {_XAPI}"),
    _R("show_transcript", LEARNER, VIDEO, "transcript.shown", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.transcript.shown", LEARNER, VIDEO, "transcript.shown", ref=f"{_STUDENT}; {_XAPI}"),
    _R("hide_transcript", LEARNER, VIDEO, "transcript.hidden", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.transcript.hidden", LEARNER, VIDEO, "transcript.hidden", ref=f"{_STUDENT}; {_XAPI}"),
    _R("video_show_cc_menu", LEARNER, VIDEO, "captions.shown", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.closed_captions.shown", LEARNER, VIDEO, "captions.shown", ref=f"{_STUDENT}; {_XAPI}"),
    _R("video_hide_cc_menu", LEARNER, VIDEO, "captions.hidden", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.video.closed_captions.hidden", LEARNER, VIDEO, "captions.hidden", ref=f"{_STUDENT}; {_XAPI}"),
    _R("fullscreen", LEARNER, VIDEO, "video.fullscreen", ref=_STUDENT),
    _R("not_fullscreen", LEARNER, VIDEO, "video.fullscreen_left", ref=_STUDENT),
    _R("edx.video.*", LEARNER, VIDEO, "video.*", ref=_STUDENT),
    _R("video.*", LEARNER, VIDEO, "video.*", ref=_STUDENT),
    # --- forum ----------------------------------------------------------------------------
    _R("edx.forum.*", LEARNER, FORUM, "forum.*", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.discussion.*", LEARNER, FORUM, "forum.*", ref=_STUDENT),
    _R("edx.team.*", LEARNER, FORUM, "team.*", ref=_STUDENT),
    # --- assessment: the server record of a capa action is the one counted ---------------
    _R("problem_check", LEARNER, ASSESSMENT, "problem.submitted", "server", ref=f"{_STUDENT}; {_XAPI} (evaluated)"),
    _R(
        "problem_check",
        ECHO,
        ASSESSMENT,
        "problem.submitted",
        "browser",
        ref=f"{_STUDENT}; {_XAPI} (browser: attempted)",
    ),
    _R("problem_check", LEARNER, ASSESSMENT, "problem.submitted", ref=_STUDENT),
    _R("problem_check_fail", LEARNER, ASSESSMENT, "problem.submitted", ref=f"{_STUDENT} (submission refused)"),
    _R("problem_graded", ECHO, ASSESSMENT, "problem.submitted", ref=f"{_STUDENT} (browser, after the check)"),
    _R("edx.grades.problem.submitted", ECHO, ASSESSMENT, "problem.submitted", ref=f"{_STUDENT}; {_XAPI}"),
    _R(
        "edx.problem.hint.feedback_displayed",
        ECHO,
        ASSESSMENT,
        "problem.submitted",
        ref=f"{_STUDENT} (shown with the check's result)",
    ),
    _R("problem_show", ECHO, ASSESSMENT, "answer.shown", "browser", ref=_STUDENT),
    _R("showanswer", LEARNER, ASSESSMENT, "answer.shown", ref=f"{_STUDENT}; {_XAPI}"),
    _R("show_answer", LEARNER, ASSESSMENT, "answer.shown", ref=_STUDENT),
    _R("problem_reset", ECHO, ASSESSMENT, "problem.reset", "browser", ref=_STUDENT),
    _R("reset_problem", LEARNER, ASSESSMENT, "problem.reset", ref=_STUDENT),
    _R("reset_problem_fail", LEARNER, ASSESSMENT, "problem.reset", ref=_STUDENT),
    _R("problem_save", ECHO, ASSESSMENT, "problem.saved", "browser", ref=_STUDENT),
    _R("save_problem_success", LEARNER, ASSESSMENT, "problem.saved", ref=_STUDENT),
    _R("save_problem_fail", LEARNER, ASSESSMENT, "problem.saved", ref=_STUDENT),
    _R("save_problem_check", LEARNER, ASSESSMENT, "problem.saved", ref=_STUDENT),
    _R("edx.problem.hint.demandhint_displayed", LEARNER, ASSESSMENT, "hint.shown", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.problem.hint.*", LEARNER, ASSESSMENT, "hint.*", ref=_STUDENT),
    _R("edx.problem.completed", SYSTEM, ASSESSMENT, "problem.completed", ref=_XAPI),
    _R("edx.problem.*", LEARNER, ASSESSMENT, "problem.*", ref=_STUDENT),
    _R("problem_rescore", SYSTEM, ASSESSMENT, "problem.rescored", ref=_TEAM),
    _R("problem_rescore_fail", SYSTEM, ASSESSMENT, "problem.rescored", ref=_TEAM),
    _R("problem_delete_all_submissions", SYSTEM, ASSESSMENT, "submissions.deleted", ref=_TEAM),
    _R("edx.grades.*", SYSTEM, ASSESSMENT, "grade.*", ref=f"{_STUDENT}; {_XAPI}"),
    _R("edx.course.grade.*", SYSTEM, ASSESSMENT, "course_grade.*", ref=f"{_STUDENT}; {_XAPI}"),
    _R("openassessment.*", LEARNER, ASSESSMENT, "ora.*", ref=_STUDENT),
    _R("openassessmentblock.*", LEARNER, ASSESSMENT, "ora.*", ref=_STUDENT),
    _R("edx.drag_and_drop_v2.loaded", PLUMBING, ASSESSMENT, "dnd.loaded", ref=_STUDENT),
    _R("edx.drag_and_drop_v2.*", LEARNER, ASSESSMENT, "dnd.*", ref=_STUDENT),
    _R("edx.special_exam.*", LEARNER, ASSESSMENT, "exam.*", ref=f"{_STUDENT}; {_XAPI}"),
    _R("peer_grading_show_question", LEARNER, ASSESSMENT, "peer_grading.question_shown", ref=_STUDENT),
    _R("ubc.peer_instruction.*", LEARNER, ASSESSMENT, "peer_instruction.*", ref=_STUDENT),
    # --- Studio --------------------------------------------------------------------------
    _R("edx.course.index.*", AUTHORING, OTHER, "course.published", ref=_TEAM),
    _R("edx.instructor.*", AUTHORING, OTHER, "instructor.*", ref=_TEAM),
)

# 2. URL event types (server requests), reduced to route templates: a whole route in
# PAGES, else the first row of ROUTES whose pattern is part of the route.
PAGES: tuple[Rule, ...] = (
    _R("/", LEARNER, ACCESS, "home.viewed", ref="site home page"),
    _R("/courses", LEARNER, ACCESS, "catalog.viewed", ref="course catalog page"),
    _R("/courses/", LEARNER, ACCESS, "catalog.viewed", ref="course catalog page"),
    _R("/course", AUTHORING, OTHER, "studio.outline", ref="Studio request"),
)

ROUTES: tuple[Rule, ...] = (
    # Studio's previews and transcript tools contain the LMS handler names: first
    _R("/preview/", AUTHORING, OTHER, "studio.preview", ref="Studio request"),
    _R("/transcripts/", AUTHORING, OTHER, "studio.transcripts", ref="Studio request"),
    _R("/xblock/resource/", PLUMBING, OTHER, "static", ref="LMS static resource"),
    # Handlers of XBlocks in the LMS (/courses/{course_id}/xblock/{usage_id}/handler/...,
    # old /modx/): the AJAX half of a browser action, or a request the page makes by itself.
    _R("/problem_check", ECHO, ASSESSMENT, "problem.submitted", ref=_STUDENT),
    _R("/problem_show", ECHO, ASSESSMENT, "answer.shown", ref=_STUDENT),
    _R("/problem_reset", ECHO, ASSESSMENT, "problem.reset", ref=_STUDENT),
    _R("/problem_save", ECHO, ASSESSMENT, "problem.saved", ref=_STUDENT),
    _R("/hint_button", ECHO, ASSESSMENT, "hint.shown", ref=_STUDENT),
    _R("/drop_item", ECHO, ASSESSMENT, "dnd.item.dropped", ref=_STUDENT),
    _R("/do_attempt", ECHO, ASSESSMENT, "dnd.attempted", ref=_STUDENT),
    _R("/save_answer", ECHO, ASSESSMENT, "problem.submitted", ref="old open response"),
    _R("/save_grade", ECHO, ASSESSMENT, "peer_grading.graded", ref="old open response"),
    _R("/is_student_calibrated", PLUMBING, ASSESSMENT, "peer_grading.calibration", ref="old open response"),
    _R("/problem_get", PLUMBING, ASSESSMENT, "problem.loaded", ref="capa: fetched while the page loads"),
    _R("/input_ajax", PLUMBING, ASSESSMENT, "problem.input", ref="capa: input widgets' own requests"),
    _R("/score_update", SYSTEM, ASSESSMENT, "problem.scored", ref="external grader callback"),
    _R("/goto_position", ECHO, CONTENT, "unit.selected", ref=f"{_STUDENT}: saves seq_goto's position"),
    _R("/save_user_state", PLUMBING, VIDEO, "video.state_saved", ref="video player: saves position and speed"),
    _R("/transcript", PLUMBING, VIDEO, "transcript.fetched", ref="video player: loads transcripts"),
    _R("/publish_event", ECHO, OTHER, "xblock.event", ref="XBlock runtime: forwards a block's event"),
    _R("/get_user_state", PLUMBING, OTHER, "xblock.state", ref="XBlock runtime"),
    _R("/courses/{course_id}/xblock/", PLUMBING, OTHER, "xblock.handler", ref="LMS XBlock handler"),
    _R("/modx/", PLUMBING, OTHER, "xblock.handler", ref="LMS XBlock handler"),
    # forum: posts and votes are echoes of the edx.forum.* event the server writes for them
    _R("/threads/create", ECHO, FORUM, "forum.thread.created", ref=_STUDENT),
    _R("/reply", ECHO, FORUM, "forum.reply", ref=_STUDENT),
    _R("/upvote", ECHO, FORUM, "forum.voted", ref=_STUDENT),
    _R("/inline", PLUMBING, FORUM, "forum.loaded", ref="inline discussion, loaded with the unit"),
    _R("/discussion", LEARNER, FORUM, "forum.viewed", ref=_STUDENT),
    _R("/forum/", LEARNER, FORUM, "forum.viewed", ref=_STUDENT),
    # course team tools in the LMS
    _R("/instructor", AUTHORING, OTHER, "instructor_dashboard", ref=_TEAM),
    _R("/legacy_instructor_dash", AUTHORING, OTHER, "instructor_dashboard", ref=_TEAM),
    _R("/submission_history", AUTHORING, ASSESSMENT, "submission_history", ref=_TEAM),
    _R("/wiki", LEARNER, CONTENT, "wiki.viewed", ref=_STUDENT),
    # courseware pages: the page load is the learner's visit
    _R("/courseware", LEARNER, CONTENT, "courseware.viewed", ref=_STUDENT),
    _R("/jump_to", ECHO, CONTENT, "courseware.viewed", ref="redirects to the courseware page"),
    _R("/pdfbook/", LEARNER, CONTENT, "textbook.opened", ref=_STUDENT),
    _R("/htmlbook/", LEARNER, CONTENT, "textbook.opened", ref=_STUDENT),
    _R("/book/", LEARNER, CONTENT, "textbook.opened", ref=_STUDENT),
    _R("/bookmarks", API, CONTENT, "bookmarks", ref="bookmarks API"),
    _R("/progress", LEARNER, ACCESS, "progress.viewed", ref=_STUDENT),
    _R("/courses/{course_id}/course", LEARNER, ACCESS, "course_home.viewed", ref=_STUDENT),
    _R("/courses/{course_id}/info", LEARNER, ACCESS, "course_home.viewed", ref=_STUDENT),
    _R("/courses/{course_id}/about", LEARNER, ACCESS, "course_about.viewed", ref=_STUDENT),
    # sign-in, registration, enrollment
    _R("/user_api/v1/account/login_session", LEARNER, ACCESS, "logged_in", ref="sign-in request"),
    _R("/user_api/v1/account/registration", LEARNER, ACCESS, "registered", ref="registration request"),
    _R("/create_account", LEARNER, ACCESS, "registered", ref="registration request"),
    _R("/register", LEARNER, ACCESS, "registration.viewed", ref="registration page"),
    _R("/login", LEARNER, ACCESS, "login.viewed", ref="sign-in page"),
    _R("/signin", LEARNER, ACCESS, "login.viewed", ref="sign-in page"),
    _R("/logout", LEARNER, ACCESS, "logged_out", ref="sign-out request"),
    _R("/activate/", LEARNER, ACCESS, "account.activated", ref="account activation link"),
    _R(
        "/change_enrollment",
        ECHO,
        ENROLLMENT,
        "enrollment.changed",
        ref=f"{_STUDENT}: the request behind edx.course.enrollment.*",
    ),
    _R("/dashboard", LEARNER, ACCESS, "dashboard.viewed", ref=_STUDENT),
    _R("/search/course_discovery", ECHO, ACCESS, "catalog.searched", ref="catalog search request"),
    _R("/oauth2/", API, ACCESS, "oauth2", ref="OAuth2 provider"),
    _R("/api/", API, OTHER, "api", ref="REST API"),
    _R("/user_api/", API, ACCESS, "api", ref="REST API"),
    # Studio (the CMS): outline, units, containers, settings, import/export, transcripts
    _R("/xblock", AUTHORING, OTHER, "studio.xblock", ref="Studio request"),
    _R("/container/", AUTHORING, OTHER, "studio.container", ref="Studio request"),
    _R("/unit/", AUTHORING, OTHER, "studio.unit", ref="Studio request"),
    _R("/subsection/", AUTHORING, OTHER, "studio.subsection", ref="Studio request"),
    _R("/course/", AUTHORING, OTHER, "studio.outline", ref="Studio request"),
    _R("/account/settings", LEARNER, ACCESS, "settings.viewed", ref="account settings page"),
    _R("/settings/", AUTHORING, OTHER, "studio.settings", ref="Studio request"),
    _R("/import", AUTHORING, OTHER, "studio.import", ref="Studio request"),
    _R("/export", AUTHORING, OTHER, "studio.export", ref="Studio request"),
    _R("/assets/", AUTHORING, OTHER, "studio.assets", ref="Studio request"),
    _R("/textbooks/", AUTHORING, OTHER, "studio.textbooks", ref="Studio request"),
    _R("/tabs/", AUTHORING, OTHER, "studio.tabs", ref="Studio request"),
    _R("/group_configurations/", AUTHORING, OTHER, "studio.groups", ref="Studio request"),
    _R("/course_team/", AUTHORING, OTHER, "studio.team", ref="Studio request"),
    _R("/certificates/", AUTHORING, OTHER, "studio.certificates", ref="Studio request"),
    _R("/library/", AUTHORING, OTHER, "studio.library", ref="Studio request"),
    _R("/home/", AUTHORING, OTHER, "studio.home", ref="Studio request"),
    # page-load plumbing and the platform's own requests
    _R("/jsi18n", PLUMBING, OTHER, "static", ref="translations loaded by every page"),
    _R("/i18n.js", PLUMBING, OTHER, "static", ref="translations loaded by every page"),
    _R("/xmodule/", PLUMBING, OTHER, "static", ref="static files"),
    _R("/static/", PLUMBING, OTHER, "static", ref="static files"),
    _R("/favicon.ico", PLUMBING, OTHER, "static", ref="static files"),
    _R("/update_lang", PLUMBING, OTHER, "language", ref="language preference request"),
    _R("/notification_prefs/", PLUMBING, OTHER, "notification_prefs", ref="page-load request"),
    _R("/heartbeat", SYSTEM, OTHER, "heartbeat", ref="health check"),
    _R("/organizations", API, OTHER, "api", ref="REST API"),
)

UNMATCHED = Taxon(OTHER, OTHER, "")

_EXACT: dict[tuple[str, Optional[str]], Rule] = {}
_ANY_SOURCE: dict[str, Rule] = {}  # a name's first row, for a source no row names
_PREFIX: list[tuple[str, Rule]] = []
for _rule in NAMES:
    if _rule.pattern.endswith("*"):
        _PREFIX.append((_rule.pattern[:-1], _rule))
    else:
        _EXACT.setdefault((_rule.pattern, _rule.source), _rule)
        _ANY_SOURCE.setdefault(_rule.pattern, _rule)
_PREFIX.sort(key=lambda pr: len(pr[0]), reverse=True)
_PAGES: dict[str, Rule] = {r.pattern: r for r in PAGES}


def match_rule(action: str, source: Optional[str] = None) -> tuple[Optional[Rule], str]:
    """The row that decides an action, and what a prefix row's ``*`` stands for; ``(None,
    "")`` when no row does."""
    if action.startswith("/"):
        rule = _PAGES.get(action)
        if rule is not None:
            return rule, ""
        for rule in ROUTES:
            if rule.pattern in action:
                return rule, ""
        return None, ""
    rule = _EXACT.get((action, source)) or _EXACT.get((action, None)) or _ANY_SOURCE.get(action)
    if rule is not None:
        return rule, ""
    for prefix, rule in _PREFIX:
        if action.startswith(prefix):
            return rule, action[len(prefix) :]
    return None, ""


@lru_cache(maxsize=16384)
def describe(action: str, source: Optional[str] = None) -> Taxon:
    """Kind, category and interaction of a normalised action name (see
    :func:`route_template`) logged by ``source`` (the event's ``event_source``)."""
    rule, rest = match_rule(action, source)
    if rule is None:
        return UNMATCHED
    name = rule.interaction
    if name.endswith("*"):
        name = name[:-1] + rest
    return Taxon(rule.kind, rule.category, name)


def counted_as(kind: str, category: str) -> str:
    """What the window counts count an event under: a learner interaction under its
    category, any other event under its kind (an event without a kind, made before the
    taxonomy, under its category)."""
    return category if kind == LEARNER or not kind else kind


def classify(action: str) -> str:
    """The category of a normalised action name."""
    return describe(action, None).category


ALL_RULES: tuple[Rule, ...] = NAMES + PAGES + ROUTES


# --- URL event types -> route templates -------------------------------------------
# Server events log the request path as event_type; one action per URL would make the
# action dimension unbounded, so ids in the path are replaced by named placeholders.

_HEX = frozenset("0123456789abcdefABCDEF")

# segment after which the next N segments are ids: name -> placeholders
_ID_AFTER: dict[str, tuple[str, ...]] = {
    "courseware": ("{chapter}", "{sequential}", "{position}"),
    "forum": ("{discussion_id}",),
    "threads": ("{thread_id}",),
    "comments": ("{comment_id}",),
    "activate": ("{activation_key}",),
    "pdfbook": ("{book_index}", "{page}"),
    "htmlbook": ("{book_index}", "{page}"),
    "book": ("{book_index}", "{page}"),
    "wiki": ("{path}",),
    "asset": ("{path}",),
    "users": ("{user}",),
    # a learner's profile and account APIs: the action must not name the learner
    "u": ("{username}",),
    "accounts": ("{username}",),
    "preferences": ("{username}",),
    "resource": ("{block_type}",),
    "submission_history": ("{student}", "{usage_id}"),
    "password_reset_confirm": ("{token}",),
}
# words that follow an id-taking segment without being an id
_VERBS: frozenset[str] = frozenset(
    {"create", "reply", "search", "inline", "upvote", "follow", "email_opt_in", "time_zones"}
)
# segments that swallow the rest of the path
_REST_AFTER: frozenset[str] = frozenset({"wiki", "resource", "c4x", "asset", "static"})


def _is_key_part(seg: str) -> bool:
    return bool(seg) and all(c.isalnum() or c in "._-~" for c in seg)


def _looks_like_id(seg: str) -> bool:
    if seg.isdigit():
        return True
    n = len(seg)
    if n >= 16 and all(c in _HEX for c in seg):  # mongo ids (24), uuids without dashes
        return True
    if n == 36 and seg.count("-") == 4:  # uuid
        return all(c in _HEX for c in seg.replace("-", ""))
    return False


def _is_key_segment(seg: str) -> bool:
    return (
        seg.startswith("block-v1:")
        or seg.startswith("i4x:;_")
        or seg.startswith("course-v1:")
        or seg.startswith("ccx-v1:")
        or seg.startswith("library-v1:")
        or seg.startswith("lib-block-v1:")
    )


@lru_cache(maxsize=16384)
def route_template(url: str) -> str:
    """Reduce a URL event type to its route, e.g.
    ``/courses/course-v1:A+B+C/courseware/ch1/seq2/`` ->
    ``/courses/{course_id}/courseware/{chapter}/{sequential}/``."""
    path = url
    if path.startswith("http://") or path.startswith("https://"):
        slash = path.find("/", path.find("//") + 2)
        path = path[slash:] if slash != -1 else "/"
    for sep in ("?", "#"):
        i = path.find(sep)
        if i != -1:
            path = path[:i]
    # i4x://Org/Course/Category/Name spans four segments: collapse it first
    i = path.find("i4x://")
    while i != -1:
        rest = path[i + 6 :].split("/", 4)
        tail = "/" + rest[4] if len(rest) > 4 else ""
        path = path[:i] + "{usage_id}" + tail
        i = path.find("i4x://")
    segs = path.split("/")
    out: list[str] = []
    n = len(segs)
    k = 0
    while k < n:
        seg = segs[k]
        if seg == "courses" and k + 1 < n and segs[k + 1]:
            out.append(seg)
            nxt = segs[k + 1]
            if nxt.startswith("course-v1:") or nxt.startswith("ccx-v1:"):
                out.append("{course_id}")
                k += 2
            elif k + 3 < n and all(_is_key_part(x) for x in segs[k + 1 : k + 4]):
                # old Org/Course/Run spans three segments
                out.append("{course_id}")
                k += 4
            else:
                k += 1
            continue
        if seg in _REST_AFTER and k + 1 < n and any(segs[k + 1 :]):
            out.append(seg)
            out.append(_ID_AFTER.get(seg, ("{path}",))[0])
            if seg == "resource" and k + 2 < n:
                out.append("{path}")
            break
        holders = _ID_AFTER.get(seg)
        if holders is not None:
            out.append(seg)
            k += 1
            for holder in holders:
                if k < n and segs[k] and segs[k] not in _VERBS:
                    out.append("{id}" if holder == "{username}" and _looks_like_id(segs[k]) else holder)
                    k += 1
                else:
                    break
            continue
        if _is_key_segment(seg):
            out.append("{course_id}" if seg.startswith(("course-v1:", "ccx-v1:")) else "{usage_id}")
        elif _looks_like_id(seg):
            out.append("{id}")
        elif "@" in seg or "%40" in seg:  # an e-mail address in a path (a usage key was matched above)
            out.append("{email}")
        else:
            out.append(seg)
        k += 1
    return "/".join(out) or "/"
