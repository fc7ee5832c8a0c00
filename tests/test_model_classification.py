"""The category table and the route templates."""

from __future__ import annotations

import pytest

from edxstream.core.events.classification import (
    CATEGORIES,
    EXACT,
    PREFIXES,
    ROUTES,
    classify,
    route_template,
)


def test_every_table_row_names_a_known_category():
    for table in (EXACT, PREFIXES, dict(ROUTES)):
        assert set(table.values()) <= set(CATEGORIES) - {"other"}


@pytest.mark.parametrize("name, category", sorted(EXACT.items()))
def test_exact_rows(name, category):
    assert classify(name) == category


@pytest.mark.parametrize("prefix, category", sorted(PREFIXES.items()))
def test_prefix_rows(prefix, category):
    assert classify(prefix + "something_new") == category


@pytest.mark.parametrize("needle, category", ROUTES)
def test_route_rows(needle, category):
    # a route containing the needle and nothing an earlier row would catch
    assert classify(needle if needle.startswith("/") else "/" + needle) == category


@pytest.mark.parametrize(
    "action, category",
    [
        ("edx.course.enrollment.mode_changed", "access"),
        ("edx.course.enrollment.upgrade.clicked", "access"),
        ("edx.user.login", "access"),
        ("/dashboard", "access"),
        ("/courses/{course_id}/course/", "access"),
        ("/courses/{course_id}/courseware/{chapter}/{sequential}/", "content"),
        ("edx.ui.lms.sequence.next_selected", "content"),
        ("edx.ui.lms.outline.selected", "content"),
        ("textbook.pdf.page.scrolled", "content"),
        ("edx.bookmark.listed", "content"),
        ("edx.video.transcript.shown", "video"),
        ("/courses/{course_id}/xblock/{usage_id}/handler/transcript/translation/en", "video"),
        ("edx.forum.response.voted", "forum"),
        ("/courses/{course_id}/discussion/forum/{discussion_id}/inline", "forum"),
        ("edx.grades.subsection.grade_calculated", "assessment"),
        ("openassessmentblock.peer_assess", "assessment"),
        ("edx.special_exam.timed.attempt.created", "assessment"),
        ("edx.problem.hint.demandhint_displayed", "assessment"),
        ("/courses/{course_id}/xblock/{usage_id}/handler/xmodule_handler/problem_check", "assessment"),
        ("/courses/{course_id}/instructor/api/list_forum_members", "other"),
        ("/jsi18n/", "other"),
        ("edx.team.created", "other"),
        ("", "other"),
    ],
)
def test_classify_examples(action, category):
    assert classify(action) == category


@pytest.mark.parametrize(
    "url, template",
    [
        ("/courses/course-v1:A+B+C/courseware/ch/seq/", "/courses/{course_id}/courseware/{chapter}/{sequential}/"),
        ("/courses/A/B/C/courseware/ch/seq/3?activate_block_id=x",
         "/courses/{course_id}/courseware/{chapter}/{sequential}/{position}"),
        ("/courses/ccx-v1:A+B+C+ccx@2/info", "/courses/{course_id}/info"),
        ("/courses/A/B/C/xblock/i4x:;_;_A;_B;_problem;_p1/handler/xmodule_handler/problem_get",
         "/courses/{course_id}/xblock/{usage_id}/handler/xmodule_handler/problem_get"),
        ("/courses/A/B/C/modx/i4x://A/B/problem/p1/problem_check",
         "/courses/{course_id}/modx/{usage_id}/problem_check"),
        ("/courses/A/B/C/jump_to/i4x://A/B/vertical/v1", "/courses/{course_id}/jump_to/{usage_id}"),
        ("/xblock/block-v1:A+B+C+type@vertical+block@v1", "/xblock/{usage_id}"),
        ("/courses/A/B/C/discussion/forum/cba3e4cd91d0466b9ac50926e495b76f/threads/553024d156c02c8f55000001",
         "/courses/{course_id}/discussion/forum/{discussion_id}/threads/{thread_id}"),
        ("/courses/A/B/C/discussion/comments/553024e056c02c3a14000004/reply",
         "/courses/{course_id}/discussion/comments/{comment_id}/reply"),
        ("/courses/A/B/C/discussion/forum/d1/threads/create",
         "/courses/{course_id}/discussion/forum/{discussion_id}/threads/create"),
        ("/activate/2d3a39b4064b44f9ba3d0d04c007fbc4", "/activate/{activation_key}"),
        ("/xblock/resource/drag-and-drop-v2/public/js/x.js", "/xblock/resource/{block_type}/{path}"),
        ("https://lms.example.org/dashboard?x=1#top", "/dashboard"),
        ("/api/user/v1/accounts/12345", "/api/user/v1/accounts/{id}"),
        ("/api/courses/v1/blocks/", "/api/courses/v1/blocks/"),
        ("/api/courses/v1/courses/course-v1:A+B+C", "/api/courses/v1/courses/{course_id}"),
        ("/", "/"),
        ("/courses", "/courses"),
    ],
)
def test_route_templates(url, template):
    assert route_template(url) == template
