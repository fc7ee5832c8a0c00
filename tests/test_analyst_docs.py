"""Every ```sql example in docs/analysts.md runs against the views on a small course
(and, for the analysis tables, on a generated course after ``edxstream analyze``), and
every table and view the migrations create is documented there."""

from __future__ import annotations

import re
from datetime import datetime

from edxstream.analyst.analysis import run as analysis
from edxstream.core import clickhouse
from edxstream.core.chdb_server import open_runner
from tests.conftest import REPO
from tests.test_analysis import load_generated
from tests.test_analyst_data import load_course

DOC = REPO / "docs" / "analysts.md"


def examples() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


def test_every_example_query_runs_and_returns_rows(settings, tmp_path):
    load_course(settings)
    load_generated(settings, tmp_path)
    client = clickhouse.connect(settings)
    analysis.run(open_runner(settings), client)
    client.insert(
        "window_counts",
        [["course_category", "course-v1:DemoX+AN101+2024_T1", "video", 3600, datetime(2024, 3, 4, 9), 8, 1]],
        column_names=["kind", "course_id", "dimension", "window_seconds", "window_start", "count", "version"],
    )
    found = examples()
    assert len(found) >= 15
    for sql in found:
        result = client.query(sql)
        assert result.result_rows, f"example returned nothing:\n{sql}"


def test_every_table_and_view_is_documented(settings):
    load_course(settings)
    client = clickhouse.connect(settings)
    names = {
        r[0] for r in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows
    }
    names.discard("schema_migrations")
    documented = set(re.findall(r"^### `(\w+)`", DOC.read_text(), re.M)) | set(
        re.findall(r"^### `\w+` and `(\w+)`", DOC.read_text(), re.M)
    )
    assert names <= documented, f"undocumented: {sorted(names - documented)}"
