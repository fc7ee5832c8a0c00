"""Which category an event belongs to, as a table a reader can audit and extend.

Every event gets exactly one of :data:`CATEGORIES`. The lookup goes, first match wins:

1. :data:`EXACT` - whole action names (``problem_check``, ``play_video`` ...);
2. :data:`PREFIXES` - dotted name prefixes (``edx.video.``, ``edx.forum.`` ...), the
   longest matching prefix wins, so a specific prefix can override a general one;
3. :data:`ROUTES` - for URL event types (server page views), substrings of the route
   template the URL was reduced to (``/discussion/`` -> forum ...), in table order;
4. otherwise ``other``.

To classify a new event, add one row to the right table; the tests check every row.
"""

from __future__ import annotations

from functools import lru_cache

ACCESS = "access"
CONTENT = "content"
VIDEO = "video"
FORUM = "forum"
ASSESSMENT = "assessment"
OTHER = "other"

CATEGORIES: tuple[str, ...] = (ACCESS, CONTENT, VIDEO, FORUM, ASSESSMENT, OTHER)

# 1. Whole event names.
EXACT: dict[str, str] = {
    # access: login/logout, enrolment, dashboard, course home
    "edx.user.login": ACCESS,
    "edx.user.logout": ACCESS,
    "edx.course.tool.accessed": ACCESS,  # course home tools
    # content: courseware navigation, page close, links, textbooks, bookmarks
    "page_close": CONTENT,
    "seq_goto": CONTENT,
    "seq_next": CONTENT,
    "seq_prev": CONTENT,
    "book": CONTENT,
    "edx.done.toggled": CONTENT,
    # video: the browser names that predate edx.video.*
    "play_video": VIDEO,
    "pause_video": VIDEO,
    "seek_video": VIDEO,
    "stop_video": VIDEO,
    "load_video": VIDEO,
    "complete_video": VIDEO,
    "speed_change_video": VIDEO,
    "show_transcript": VIDEO,
    "hide_transcript": VIDEO,
    "video_show_cc_menu": VIDEO,
    "video_hide_cc_menu": VIDEO,
    "fullscreen": VIDEO,
    "not_fullscreen": VIDEO,
    # assessment: capa problems, answers, hints, grading
    "problem_check": ASSESSMENT,
    "problem_check_fail": ASSESSMENT,
    "problem_graded": ASSESSMENT,
    "problem_show": ASSESSMENT,
    "problem_reset": ASSESSMENT,
    "problem_save": ASSESSMENT,
    "problem_rescore": ASSESSMENT,
    "problem_rescore_fail": ASSESSMENT,
    "problem_delete_all_submissions": ASSESSMENT,
    "reset_problem": ASSESSMENT,
    "reset_problem_fail": ASSESSMENT,
    "save_problem_check": ASSESSMENT,
    "save_problem_fail": ASSESSMENT,
    "save_problem_success": ASSESSMENT,
    "showanswer": ASSESSMENT,
    "show_answer": ASSESSMENT,
    "peer_grading_show_question": ASSESSMENT,  # old open response (combinedopenended)
}

# 2. Dotted prefixes; the longest match wins.
PREFIXES: dict[str, str] = {
    "edx.course.enrollment.": ACCESS,  # activated, deactivated, mode_changed, upgrade.*
    "edx.course.home.": ACCESS,
    "edx.user.": ACCESS,  # login, logout, settings
    "edx.bi.user.account.": ACCESS,  # registered, authenticated, linked
    "edx.ui.lms.": CONTENT,  # sequence.*, outline.*, link_clicked, jump_nav
    "edx.bookmark.": CONTENT,
    "textbook.": CONTENT,  # textbook.pdf.*
    "book.": CONTENT,
    "edx.course.student_notes.": CONTENT,
    "edx.video.": VIDEO,  # incl. closed_captions, transcript, bumper, language_menu
    "video.": VIDEO,
    "edx.forum.": FORUM,
    "edx.discussion.": FORUM,
    "edx.grades.": ASSESSMENT,
    "edx.course.grade.": ASSESSMENT,  # now_passed, now_failed
    "edx.problem.": ASSESSMENT,  # hint.*, completion.*
    "openassessment.": ASSESSMENT,  # open response assessment
    "openassessmentblock.": ASSESSMENT,
    "edx.drag_and_drop_v2.": ASSESSMENT,
    "edx.special_exam.": ASSESSMENT,  # timed, proctored, practice exams
    "ubc.peer_instruction.": ASSESSMENT,
}

# 3. Route templates of URL event types: (substring, category), first match wins, so
# specific handlers come before the pages that contain them.
ROUTES: tuple[tuple[str, str], ...] = (
    ("/discussion", FORUM),
    ("/forum/", FORUM),
    # problem handlers: capa (xmodule_handler/*, modx/*), hints, drag and drop, ORA
    ("/problem_check", ASSESSMENT),
    ("/problem_show", ASSESSMENT),
    ("/problem_reset", ASSESSMENT),
    ("/problem_save", ASSESSMENT),
    ("/problem_get", ASSESSMENT),
    ("/input_ajax", ASSESSMENT),
    ("/hint_button", ASSESSMENT),
    ("/score_update", ASSESSMENT),
    ("/save_answer", ASSESSMENT),
    ("/save_grade", ASSESSMENT),
    ("/is_student_calibrated", ASSESSMENT),
    ("/drop_item", ASSESSMENT),
    ("/do_attempt", ASSESSMENT),
    ("/modx/{usage_id}/problem", ASSESSMENT),
    ("/progress", ASSESSMENT),  # the learner's grades page
    # video player handlers
    ("/save_user_state", VIDEO),
    ("/transcript", VIDEO),
    # courseware
    ("/courseware", CONTENT),
    ("/jump_to", CONTENT),
    ("/goto_position", CONTENT),
    ("/pdfbook/", CONTENT),
    ("/htmlbook/", CONTENT),
    ("/book/", CONTENT),
    ("/bookmarks", CONTENT),
    # access: account, enrolment, dashboard, course home tabs
    ("/login", ACCESS),
    ("/logout", ACCESS),
    ("/signin", ACCESS),
    ("/register", ACCESS),
    ("/create_account", ACCESS),
    ("/account/registration", ACCESS),
    ("/activate/", ACCESS),
    ("/oauth2/", ACCESS),
    ("/change_enrollment", ACCESS),
    ("/dashboard", ACCESS),
    ("/courses/{course_id}/course", ACCESS),
    ("/courses/{course_id}/info", ACCESS),
    ("/courses/{course_id}/about", ACCESS),
)

_PREFIX_ORDER: tuple[tuple[str, str], ...] = tuple(
    sorted(PREFIXES.items(), key=lambda kv: len(kv[0]), reverse=True)
)


@lru_cache(maxsize=16384)
def classify(action: str) -> str:
    """The category of a normalised action name (see :func:`route_template`)."""
    cat = EXACT.get(action)
    if cat is not None:
        return cat
    if action.startswith("/"):
        for needle, cat in ROUTES:
            if needle in action:
                return cat
        return OTHER
    for prefix, cat in _PREFIX_ORDER:
        if action.startswith(prefix):
            return cat
    return OTHER


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
_VERBS: frozenset[str] = frozenset({"create", "reply", "search", "inline", "upvote", "follow",
                                    "email_opt_in", "time_zones"})
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
        rest = path[i + 6:].split("/", 4)
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
            elif k + 3 < n and all(_is_key_part(x) for x in segs[k + 1:k + 4]):
                # old Org/Course/Run spans three segments
                out.append("{course_id}")
                k += 4
            else:
                k += 1
            continue
        if seg in _REST_AFTER and k + 1 < n and any(segs[k + 1:]):
            out.append(seg)
            holders = _ID_AFTER.get(seg, ("{path}",))
            out.append(holders[0])
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
