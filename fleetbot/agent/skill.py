"""SKILL.md, the agent protocol in ≤ 400 tokens: printed by `fleetbot agent skill`, installed into
an agent's skills folder by `--install DIR` (Claude Code: ~/.claude/skills, Codex:
~/.agents/skills, OpenClaw: ~/.openclaw/skills or its workspace's skills/) as
DIR/fleetbot/SKILL.md."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

NAME = "fleetbot"


def text() -> str:
    """SKILL.md as shipped in the package."""
    return resources.files(__package__).joinpath("SKILL.md").read_text(encoding="utf-8")


def tokens(content: str) -> int:
    """A tokenizer-free estimate: the larger of words × 1.3 and characters / 4 (no tokenizer
    ships here; the first is the usual rule for English prose, the second for code and ids)."""
    return round(max(len(content.split()) * 1.3, len(content) / 4))


def install(folder: Path) -> Path:
    """Write folder/fleetbot/SKILL.md atomically (a reader sees the old file or the new one,
    never half of it); the path written."""
    target = folder / NAME / "SKILL.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".SKILL.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text())
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
