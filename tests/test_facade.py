"""The core's public surface: what the bot, the CLI and the demo may import, and nothing else."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import core

REPO = Path(__file__).resolve().parents[1]

# Changing this list changes what the adapters may rely on: do it on purpose, in this file.
PUBLIC = {
    "DURATION_USAGE",
    "OPEN_ISSUE_STATUSES",
    "TERMINAL_ISSUE_STATUSES",
    "Agent",
    "AgentAuth",
    "AgentCheck",
    "AgentNotFound",
    "AgentStatus",
    "Alert",
    "AlertBook",
    "AlertKind",
    "AlertMember",
    "AlertNotFound",
    "AlertState",
    "AmbiguousAssignee",
    "AuthReason",
    "AuthReport",
    "Clock",
    "Comment",
    "Company",
    "CompanyActivity",
    "CompanyBoard",
    "CompanyNotFound",
    "Config",
    "ConfigError",
    "Database",
    "database_for",
    "migrate_store",
    "EventBus",
    "Fix",
    "Fleet",
    "FleetService",
    "FleetbotError",
    "InvalidInput",
    "Issue",
    "IssueFilter",
    "IssueNotFound",
    "IssueStatus",
    "Leadership",
    "LeadershipLost",
    "MessageLink",
    "Question",
    "QuestionAnswered",
    "QuestionAsked",
    "Replica",
    "QuestionCancelled",
    "QuestionKind",
    "QuestionStatus",
    "Talk",
    "KeyRing",
    "KeyRingFile",
    "ManualClock",
    "MonthCosts",
    "Mute",
    "Outbox",
    "OutboxKind",
    "OutboxRow",
    "OutboxState",
    "PRIORITY_USAGE",
    "Priority",
    "Run",
    "Roi",
    "Routine",
    "RunOutcome",
    "RunStatus",
    "RuntimeCheck",
    "RuntimeReport",
    "SCHEDULE_USAGE",
    "Severity",
    "SystemClock",
    "TargetFailure",
    "TelegramConfig",
    "TokenAuthority",
    "Usage",
    "check_single_source",
    "format_duration",
    "issue_missing",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_priority",
    "parse_schedule",
    "record_self_test",
    "resolve_paths",
    "rotate_agent",
    "rotate_all",
    "self_test_async",
    "self_test_runtimes",
    "utc",
    "write_token_file",
}


def test_the_public_surface_is_pinned() -> None:
    assert set(core.__all__) == PUBLIC
    assert len(core.__all__) == len(PUBLIC), "a name is listed twice"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(core, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = core.nothing_here  # type: ignore[attr-defined]


def _core_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("core.")]
    return found


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(REPO).as_posix()
        for d in ("bot", "fleetbot")
        for p in (REPO / d).rglob("*.py")
    ),
)
def test_adapters_import_the_facade_only(path: str) -> None:
    assert _core_imports(REPO / path) == [], f"{path} reaches past `core`; import from core"


def test_importing_the_models_stays_light() -> None:
    """`import core.models` must not drag in the web server, the store or the scheduler."""
    code = (
        "import sys, core.models; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'aiosqlite', 'apscheduler', 'jwt') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
