"""The course report: built from the analyst views, opened from the file system in a
headless Chromium (no server, no network) and checked as an image."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from edxstream.analyst import report

from edxstream.core import chdb_server, privacy
from tests.test_analyst_data import COURSE, LEARNERS, load_course

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Where the last screenshot is kept for a human to look at (also attached to CI artefacts).
SHOT_DIR = Path(os.environ.get("EDXSTREAM_TEST_ARTEFACTS", Path(tempfile.gettempdir()) / "edxstream-test-artefacts"))


def screenshot(index: Path, png: Path, tmp: Path) -> Image.Image:
    assert CHROMIUM, "Chromium is needed to look at the report: apt-get install -y chromium"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'profile'}",
            "--virtual-time-budget=10000",
            f"--screenshot={png}",
            "--window-size=1200,2600",
            index.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Image.open(png).convert("RGB")


def colour_share(img: Image.Image, rgb: tuple[int, int, int], tol: int = 12) -> float:
    small = img.resize((img.width // 4, img.height // 4), Image.NEAREST)
    px = list(small.get_flattened_data()) if hasattr(small, "get_flattened_data") else list(small.getdata())
    hits = sum(1 for p in px if all(abs(a - b) <= tol for a, b in zip(p[:3], rgb, strict=True)))
    return hits / len(px)


def hex_rgb(h: str) -> tuple[int, int, int]:
    return tuple(int(h[i : i + 2], 16) for i in (1, 3, 5))


def test_report_renders_charts_without_a_server(settings, tmp_path):
    load_course(settings)
    out = tmp_path / "report"
    index = report.write_report(chdb_server.open_runner(settings), COURSE, out)
    page = index.read_text()

    # self-contained: the library next to the page, the data inside it, nothing fetched
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert not re.search(r"""(src|href)=["']https?://""", page)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert data["summary"]["events"] == 29 and data["summary"]["learners"] == 3
    assert {r["video_id"].rsplit("@", 1)[1] for r in data["videos"]} == {"intro_video", "week2_video"}
    assert not any(name in page for name in LEARNERS)  # pseudonymized at the source
    # names from the imported structure instead of block ids, the length of each video
    # (the structure's, or estimated from what learners played), the due date on the chart
    assert "<td>Welcome to the course</td><td>95 s</td>" in page
    assert "<td>How the data flows</td><td>25 s (estimated)</td>" in page
    assert "<td>Quiz 1: Averages</td><td>Homework 1</td>" in page
    assert data["due"] == [{"day": "2024-03-05", "display_name": "Homework 1", "assignment_type": "Homework"}]
    assert data["summary"]["events"] == 29 and sum(int(r["events"]) for r in data["daily"]) == 29

    png = tmp_path / "report.png"
    img = screenshot(index, png, tmp_path)
    SHOT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(png, SHOT_DIR / "report.png")
    colours = img.resize((300, 650)).getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 50, "the page looks blank"
    # each chart's own colour is on screen: the stacked categories, the learners line,
    # the videos bars and the problems' first-try bars were drawn by plotly
    for name in ("video", "content", "assessment", "forum"):
        assert colour_share(img, hex_rgb(report.CATEGORY_COLOURS[name])) > 0.0005, f"no {name} bars"
    assert colour_share(img, hex_rgb("#9ecae9")) > 0.0005, "no problem bars"
    assert colour_share(img, hex_rgb(report.DUE_COLOUR)) > 0, "no due date line"
    non_white = sum(n for n, c in colours if sum(c) < 720)
    assert non_white / sum(n for n, _ in colours) > 0.05


def test_report_of_an_empty_course_still_opens(settings, tmp_path):
    load_course(settings)
    index = report.write_report(chdb_server.open_runner(settings), "course-v1:No+Such+Course", tmp_path / "r")
    page = index.read_text()
    assert "no events yet" in page and "No data yet." in page
    img = screenshot(index, tmp_path / "empty.png", tmp_path)
    assert len(img.resize((300, 650)).getcolors(maxcolors=1 << 16) or []) > 10  # text and empty axes drawn


@pytest.mark.slow
def test_report_cli_through_the_process_holding_the_folder(settings, tmp_path):
    """`edxstream report` from another process while a holder serves the folder."""
    from tests.test_analyst_cli import HOLDER, REPO, edxstream_cmd, env_for  # noqa: F401
    import sys

    env = env_for(settings, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        out = tmp_path / "cli-report"
        p = subprocess.run(
            edxstream_cmd("report", "--course", COURSE, "--out", str(out)),
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        page = (out / "index.html").read_text()
        alice = privacy.pseudonym_username("alice_w", settings.pseudonym_key)
        assert "quiz1" in page and "intro_video" in page and "alice_w" not in page and alice not in page
        img = screenshot(out / "index.html", tmp_path / "cli.png", tmp_path)
        assert colour_share(img, hex_rgb(report.CATEGORY_COLOURS["video"])) > 0.0005
    finally:
        proc.terminate()
        proc.wait(10)
