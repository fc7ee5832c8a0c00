"""``edxstream course import``: a course's structure into the analyst database (see
``edxstream.ops.course_import``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "course",
        help="course structure: names, sections, due dates and video lengths for the block ids in the logs",
        description="Read a course's structure so reports and views show names instead of block ids.",
    )
    sub = p.add_subparsers(
        dest="course_command",
        metavar="SUBCOMMAND",
        required=True,
        help="import: store a course's structure from an export or an API response",
    )
    imp = sub.add_parser(
        "import",
        help="import an OLX export (.tar.gz) or a saved Course Blocks API response (JSON)",
        description="Store a course's blocks (name, type, section and subsection, position, graded, weight, "
        "due date, video length where known) in the analyst database. PATH is the .tar.gz that Studio's "
        "export writes (or its unpacked folder), or a saved response of the LMS Course Blocks API "
        "(/api/courses/v2/blocks/?course_id=...&all_blocks=true&depth=all&requested_fields=graded,format,"
        "due,weight,student_view_data,children). Importing a course again replaces its blocks; events "
        "already stored get the names without being reprocessed.",
    )
    imp.add_argument("path", type=Path, metavar="PATH", nargs="+", help="export file or folder, or JSON response")
    imp.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from edxstream.core import clickhouse
    from edxstream.core.settings import load
    from edxstream.ops.course_import import read_structure, store
    from sinks import migrate

    structures = [read_structure(p) for p in args.path]  # every file readable before anything is written
    settings = load()
    client = clickhouse.connect(settings)
    migrate.migrate_clickhouse(settings, client=client)
    for path, s in zip(args.path, structures, strict=False):
        n = store(client, s)
        graded = sum(1 for b in s.blocks if b.graded and b.due is not None and b.block_type == "sequential")
        print(
            f"{s.course_id}: {n} blocks from {path} ({s.count('chapter')} sections, "
            f"{s.count('sequential')} subsections, {s.count('video')} videos, {s.count('problem')} problems; "
            f"{graded} graded subsections with a due date)"
        )
    return 0
