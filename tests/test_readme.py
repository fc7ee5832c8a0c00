"""The README's promises: it opens with the two commands, they are what `dev` and CI run,
and its configuration table is the one generated from Settings."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_readme_opens_with_exactly_the_two_commands():
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# edxstream"
    assert lines[1] == "" and lines[2] and lines[3] == ""  # a one-line description
    block = re.match(r"```(?:bash|sh)?\n(.*?)\n```", "\n".join(lines[4:]), re.S)
    assert block, "a code block right after the description"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./dev demo", "./dev test"]


def test_ci_runs_the_second_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in ci
    assert ci.rstrip().splitlines()[-1] == "exec ./dev test"


def test_dev_lists_its_commands_and_rejects_unknown_ones():
    dev = REPO / "dev"
    assert subprocess.run(["bash", "-n", str(dev)]).returncode == 0
    helped = subprocess.run([str(dev), "help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0
    for command in ("./dev demo", "./dev test", "./dev bench", "./dev install"):
        assert command in helped.stdout
    wrong = subprocess.run([str(dev), "deploy"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "./dev test" in wrong.stderr


def test_settings_table_is_generated_from_settings():
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "settings_table.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    text = (REPO / "README.md").read_text()
    from edxstream.core.settings import Settings

    for name in Settings.model_fields:
        assert f"`EDXSTREAM_{name.upper()}`" in text


def test_settings_table_check_detects_a_stale_table(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import settings_table
    finally:
        sys.path.remove(str(REPO / "scripts"))
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n\n{settings_table.BEGIN}\n| old |\n{settings_table.END}\n")
    monkeypatch.setattr(settings_table, "README", stale)
    assert settings_table.main(["--check"]) == 1
    assert settings_table.main(["--write"]) == 0
    assert settings_table.main(["--check"]) == 0
    assert "`EDXSTREAM_KAFKA_BOOTSTRAP` | `127.0.0.1:9092`" in stale.read_text()
