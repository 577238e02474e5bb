"""SKILL.md: the whole agent protocol in ≤ 400 tokens, in the format Claude Code, Codex and
OpenClaw load, printed and installed by `fleetbot agent skill`."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from agent_cli_fleet import FLEETBOT

from fleetbot.agent import cli, skill

MAX_TOKENS = 400


def test_the_skill_fits_in_400_tokens() -> None:
    text = skill.text()
    # skill.tokens: the larger of words × 1.3 and characters / 4.
    assert skill.tokens(text) <= MAX_TOKENS, skill.tokens(text)
    assert skill.tokens("one two three four") == round(max(4 * 1.3, 18 / 4))


def test_it_is_a_skill_file_with_name_and_description() -> None:
    text = skill.text()
    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert front is not None, "YAML frontmatter between --- lines first"
    meta = yaml.safe_load(front[1])
    assert meta["name"] == "fleetbot"
    assert 20 < len(meta["description"]) <= 1024  # the loaders' limit on a description
    assert text[front.end() :].lstrip().startswith("# ")


def test_it_teaches_the_whole_protocol() -> None:
    text = skill.text()
    for env in ("FLEETBOT_API_URL", "FLEETBOT_TOKEN", "FLEETBOT_RUN_ID", "FLEETBOT_ISSUE_ID"):
        assert env in text
    for step in ("show", "comment", "usage", "finish", "ask", "wait-answer", "file", "summary"):
        assert re.search(rf"`(fleetbot agent )?{step}\b", text), step
    for outcome in ("done", "blocked", "failed", "waiting"):
        assert f"`{outcome}`" in text or f"--outcome {outcome}" in text, outcome
    exits = text[text.index("Exit codes") :]
    for code in range(8):
        assert re.search(rf"(^- |; ){code} \w", exits, re.M), code
    # Every command it names exists.
    commands = set(cli.COMMANDS)
    named = set(re.findall(r"`fleetbot agent ([a-z-]+)", text))
    assert named <= commands, named - commands


def test_fleetbot_agent_skill_prints_it_and_installs_it(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, str(FLEETBOT), "agent", "skill"], capture_output=True, text=True
    )
    assert shown.returncode == 0 and shown.stdout == skill.text()
    target = tmp_path / "skills"
    for _ in range(2):  # installing again replaces it
        done = subprocess.run(
            [sys.executable, str(FLEETBOT), "agent", "skill", "--install", str(target)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    installed = target / "fleetbot" / "SKILL.md"
    assert done.stdout.strip() == f"Wrote {installed}."
    assert installed.read_text() == skill.text()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    assert [p.name for p in installed.parent.iterdir()] == ["SKILL.md"]  # no temp file left


def test_a_reader_that_leaves_early_is_no_error() -> None:
    # The pipe's only reader is gone before the command writes (`fleetbot agent skill | true`).
    proc = subprocess.Popen(
        [sys.executable, str(FLEETBOT), "agent", "skill"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(10) == 0 and err == b""


def test_an_install_that_fails_keeps_the_old_skill_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fleetbot").mkdir()
    (tmp_path / "fleetbot" / "SKILL.md").write_text("old")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        skill.install(tmp_path)
    assert [p.name for p in (tmp_path / "fleetbot").iterdir()] == ["SKILL.md"]
    assert (tmp_path / "fleetbot" / "SKILL.md").read_text() == "old"

    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    done = subprocess.run(
        [sys.executable, str(FLEETBOT), "agent", "skill", "--install", str(not_a_folder)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"fleetbot agent: cannot write {not_a_folder}/fleetbot/SKILL.md")
