"""Crash consistency, the CI-sized run of bench/crash_loop.py: a real `fleetbot run` killed with
SIGKILL three times at random moments under load, restarted, and checked after every kill and
restart (acknowledged changes kept, no stale runs, finished work never redone, alerts once).

The long run (20+ kills) is `python bench/crash_loop.py`; its figures are in docs/reliability.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "crash_loop.py"


def _crash_loop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_loop", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("crash_loop", module)
    spec.loader.exec_module(module)
    return module


async def test_three_sigkills_under_load_lose_nothing(tmp_path: Path) -> None:
    # Uptimes long enough for the bot to take commands between kills on a busy 2-core CI box.
    loop = _crash_loop().CrashLoop(tmp_path / "crash", seed=5, uptime=(0.8, 1.6))
    report = await loop.run(kills=3)
    assert report.violations == [], "\n".join(report.lines())
    assert report.kills == 3
    counts = report.counts
    # The load really ran, through the API and the bot, and the fleet really worked.
    confirmed = counts["  of them by /issue"] + counts["/pause and /resume confirmed"]
    assert counts["issues acknowledged"] >= 5 and confirmed >= 1
    assert counts["comments acknowledged"] >= 1 and counts["runs"] >= 3
    assert counts["alert messages"] >= 1  # ash's broken token, at least

    # The checks bite: an acknowledgement the store does not have is a violation.
    issue = next(iter(loop.ledger.issues))
    loop.ledger.issues["ALI-99999"] = "never filed"
    loop.ledger.comments[10**9] = (issue, "never written")
    loop.ledger.moves.append((issue, "in_review"))
    loop.check_acknowledged()
    found = "\n".join(report.violations)
    assert "issue ALI-99999" in found and "comment 1000000000" in found
    assert f"move of {issue} to in_review" in found
