"""The taxonomy table (kind, category, interaction) and the route templates."""

from __future__ import annotations

import pytest

from edxstream.core.events.classification import (
    ALL_RULES,
    CATEGORIES,
    KINDS,
    NAMES,
    PAGES,
    ROUTES,
    classify,
    describe,
    match_rule,
    route_template,
)


def test_every_row_names_a_known_kind_and_category():
    for rule in ALL_RULES:
        assert rule.kind in KINDS and rule.kind != "other", rule
        assert rule.category in CATEGORIES, rule
        assert rule.interaction, rule
        assert rule.ref, rule


@pytest.mark.parametrize("rule", [r for r in NAMES if not r.pattern.endswith("*")], ids=str)
def test_name_rows(rule):
    assert match_rule(rule.pattern, rule.source)[0] == rule


@pytest.mark.parametrize("rule", [r for r in NAMES if r.pattern.endswith("*")], ids=str)
def test_prefix_rows(rule):
    got = describe(rule.pattern[:-1] + "something_new")
    assert (got.kind, got.category) == (rule.kind, rule.category)
    assert got.interaction == rule.interaction.replace("*", "something_new")


@pytest.mark.parametrize("rule", PAGES, ids=str)
def test_page_rows(rule):
    assert match_rule(rule.pattern)[0] == rule


@pytest.mark.parametrize("rule", ROUTES, ids=str)
def test_route_rows_are_reachable(rule):
    # a route that is the row's pattern alone (plus a tail) reaches this row or an
    # earlier row whose pattern it contains: no row is hidden behind an unrelated one
    got, _ = match_rule(rule.pattern + "x")
    assert got == rule or got.pattern in rule.pattern + "x"


@pytest.mark.parametrize(
    "action, source, kind, category, interaction",
    [
        # one problem submission: five records, one interaction, counted once
        ("problem_check", "server", "learner", "assessment", "problem.submitted"),
        ("problem_check", "browser", "echo", "assessment", "problem.submitted"),
        ("problem_graded", "browser", "echo", "assessment", "problem.submitted"),
        ("edx.grades.problem.submitted", "server", "echo", "assessment", "problem.submitted"),
        (
            "/courses/{course_id}/xblock/{usage_id}/handler/xmodule_handler/problem_check",
            "server",
            "echo",
            "assessment",
            "problem.submitted",
        ),
        ("/courses/{course_id}/modx/{usage_id}/problem_check", "server", "echo", "assessment", "problem.submitted"),
        # navigation: the browser's seq_goto counts, the server's goto_position echoes it
        ("seq_goto", "browser", "learner", "content", "unit.selected"),
        (
            "/courses/{course_id}/xblock/{usage_id}/handler/xmodule_handler/goto_position",
            "server",
            "echo",
            "content",
            "unit.selected",
        ),
        # the progress page is a page view, not an assessment
        ("/courses/{course_id}/progress", "server", "learner", "access", "progress.viewed"),
        # video requests the page makes while it loads
        (
            "/courses/{course_id}/xblock/{usage_id}/handler/transcript/translation/en",
            "server",
            "plumbing",
            "video",
            "transcript.fetched",
        ),
        (
            "/courses/{course_id}/xblock/{usage_id}/handler/xmodule_handler/save_user_state",
            "server",
            "plumbing",
            "video",
            "video.state_saved",
        ),
        ("load_video", "browser", "plumbing", "video", "video.loaded"),
        ("play_video", "browser", "learner", "video", "video.played"),
        ("edx.video.played", "mobile", "learner", "video", "video.played"),
        # Studio
        ("/xblock/{usage_id}", "server", "authoring", "other", "studio.xblock"),
        (
            "/preview/xblock/{usage_id}/handler/xmodule_handler/problem_get",
            "server",
            "authoring",
            "other",
            "studio.preview",
        ),
        ("/transcripts/check", "server", "authoring", "other", "studio.transcripts"),
        ("/course/{course_id}", "server", "authoring", "other", "studio.outline"),
        ("edx.course.index.published", "server", "authoring", "other", "course.published"),
        # enrollment
        ("edx.course.enrollment.activated", "server", "learner", "enrollment", "enrolled"),
        ("/change_enrollment", "server", "echo", "enrollment", "enrollment.changed"),
        ("edx.course.enrollment.upgrade.clicked", "server", "learner", "enrollment", "enrollment.upgrade.clicked"),
        # forum: the post request echoes the server's edx.forum event
        ("edx.forum.thread.created", "server", "learner", "forum", "forum.thread.created"),
        ("/courses/{course_id}/discussion/{id}/threads/create", "server", "echo", "forum", "forum.thread.created"),
        ("/courses/{course_id}/discussion/forum/{discussion_id}/inline", "server", "plumbing", "forum", "forum.loaded"),
        (
            "/courses/{course_id}/instructor/api/list_forum_members",
            "server",
            "authoring",
            "other",
            "instructor_dashboard",
        ),
        ("/jsi18n/", "server", "plumbing", "other", "static"),
        ("/heartbeat", "server", "system", "other", "heartbeat"),
        ("/api/courses/v1/blocks/", "server", "api", "other", "api"),
        (
            "edx.grades.subsection.grade_calculated",
            "server",
            "system",
            "assessment",
            "grade.subsection.grade_calculated",
        ),
        (
            "/courses/{course_id}/courseware/{chapter}/{sequential}/",
            "server",
            "learner",
            "content",
            "courseware.viewed",
        ),
        ("/dashboard", "server", "learner", "access", "dashboard.viewed"),
        ("something.nobody.logs", "server", "other", "other", ""),
        ("", None, "other", "other", ""),
    ],
)
def test_taxonomy_examples(action, source, kind, category, interaction):
    assert tuple(describe(action, source)) == (kind, category, interaction)
    assert classify(action) == category


@pytest.mark.parametrize(
    "url, template",
    [
        ("/courses/course-v1:A+B+C/courseware/ch/seq/", "/courses/{course_id}/courseware/{chapter}/{sequential}/"),
        (
            "/courses/A/B/C/courseware/ch/seq/3?activate_block_id=x",
            "/courses/{course_id}/courseware/{chapter}/{sequential}/{position}",
        ),
        ("/courses/ccx-v1:A+B+C+ccx@2/info", "/courses/{course_id}/info"),
        (
            "/courses/A/B/C/xblock/i4x:;_;_A;_B;_problem;_p1/handler/xmodule_handler/problem_get",
            "/courses/{course_id}/xblock/{usage_id}/handler/xmodule_handler/problem_get",
        ),
        (
            "/courses/A/B/C/modx/i4x://A/B/problem/p1/problem_check",
            "/courses/{course_id}/modx/{usage_id}/problem_check",
        ),
        ("/courses/A/B/C/jump_to/i4x://A/B/vertical/v1", "/courses/{course_id}/jump_to/{usage_id}"),
        ("/xblock/block-v1:A+B+C+type@vertical+block@v1", "/xblock/{usage_id}"),
        (
            "/courses/A/B/C/discussion/forum/cba3e4cd91d0466b9ac50926e495b76f/threads/553024d156c02c8f55000001",
            "/courses/{course_id}/discussion/forum/{discussion_id}/threads/{thread_id}",
        ),
        (
            "/courses/A/B/C/discussion/comments/553024e056c02c3a14000004/reply",
            "/courses/{course_id}/discussion/comments/{comment_id}/reply",
        ),
        (
            "/courses/A/B/C/discussion/forum/d1/threads/create",
            "/courses/{course_id}/discussion/forum/{discussion_id}/threads/create",
        ),
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
