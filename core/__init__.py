"""fleetbot's core: the domain, the engine and the agent API. Never imports telegram.

This module is the public surface: the bot, the CLI and the demo import from `core` only, and
tests/test_facade.py pins the list. Names resolve on first use (PEP 562 `__getattr__`): an eager
import of every subpackage costs ~1.2 s of FastAPI, uvicorn and aiosqlite start-up, which a
process that needs only `core.models` (the agent CLI, a test subprocess) must not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.alerting.book import (
        Alert as Alert,
        AlertBook as AlertBook,
        AlertKind as AlertKind,
        AlertMember as AlertMember,
        AlertState as AlertState,
        Fix as Fix,
        Severity as Severity,
    )
    from core.alerting.mutes import (
        Mute as Mute,
    )
    from core.alerting.outbox import (
        Outbox as Outbox,
        OutboxKind as OutboxKind,
        OutboxRow as OutboxRow,
        OutboxState as OutboxState,
    )
    from core.auth.agent_auth import (
        AgentAuth as AgentAuth,
        KeyRingFile as KeyRingFile,
    )
    from core.auth.keyring import (
        KeyRing as KeyRing,
        check_single_source as check_single_source,
    )
    from core.auth.rotation import (
        AgentCheck as AgentCheck,
        AuthReport as AuthReport,
        issue_missing as issue_missing,
        record as record_self_test,
        rotate_agent as rotate_agent,
        rotate_all as rotate_all,
        self_test_async as self_test_async,
    )
    from core.auth.tokens import (
        TokenAuthority as TokenAuthority,
        write_token_file as write_token_file,
    )
    from core.clock import (
        Clock as Clock,
        ManualClock as ManualClock,
        SystemClock as SystemClock,
        utc as utc,
    )
    from core.cluster.leadership import (
        Leadership as Leadership,
    )
    from core.config import (
        Config as Config,
        TelegramConfig as TelegramConfig,
        load_config as load_config,
        parse_config as parse_config,
        resolve_paths as resolve_paths,
    )
    from core.durations import (
        USAGE as DURATION_USAGE,
        format_duration as format_duration,
        parse_duration as parse_duration,
    )
    from core.engine.runtime_check import (
        RuntimeCheck as RuntimeCheck,
        RuntimeReport as RuntimeReport,
        TargetFailure as TargetFailure,
        self_test_runtimes as self_test_runtimes,
    )
    from core.errors import (
        AgentNotFound as AgentNotFound,
        AlertNotFound as AlertNotFound,
        AmbiguousAssignee as AmbiguousAssignee,
        CompanyNotFound as CompanyNotFound,
        ConfigError as ConfigError,
        FleetbotError as FleetbotError,
        InvalidInput as InvalidInput,
        IssueNotFound as IssueNotFound,
        LeadershipLost as LeadershipLost,
    )
    from core.events import (
        EventBus as EventBus,
        QuestionAnswered as QuestionAnswered,
        QuestionAsked as QuestionAsked,
        QuestionCancelled as QuestionCancelled,
    )
    from core.fleet import (
        Fleet as Fleet,
    )
    from core.models import (
        OPEN_ISSUE_STATUSES as OPEN_ISSUE_STATUSES,
        TERMINAL_ISSUE_STATUSES as TERMINAL_ISSUE_STATUSES,
        Agent as Agent,
        AgentStatus as AgentStatus,
        AuthReason as AuthReason,
        Comment as Comment,
        Company as Company,
        Issue as Issue,
        IssueStatus as IssueStatus,
        MessageLink as MessageLink,
        Priority as Priority,
        Question as Question,
        QuestionKind as QuestionKind,
        QuestionStatus as QuestionStatus,
        Routine as Routine,
        Run as Run,
        RunOutcome as RunOutcome,
        RunStatus as RunStatus,
    )
    from core.queries import (
        IssueFilter as IssueFilter,
    )
    from core.questions import (
        Talk as Talk,
    )
    from core.queues.facade import (
        PRIORITY_USAGE as PRIORITY_USAGE,
        parse_priority as parse_priority,
    )
    from core.queues.schedule import (
        USAGE as SCHEDULE_USAGE,
        parse_schedule as parse_schedule,
    )
    from core.reports.activity import (
        CompanyActivity as CompanyActivity,
    )
    from core.reports.board import (
        CompanyBoard as CompanyBoard,
    )
    from core.reports.costs import (
        MonthCosts as MonthCosts,
        Usage as Usage,
    )
    from core.reports.roi import (
        Roi as Roi,
    )
    from core.service import (
        FleetService as FleetService,
    )
    from core.store.copy import (
        migrate_store as migrate_store,
    )
    from core.store.db import (
        Database as Database,
    )
    from core.store.engines import (
        database_for as database_for,
    )
    from core.store.lease import (
        Replica as Replica,
    )

# public name -> (module, name in that module)
_WHERE: dict[str, tuple[str, str]] = {
    "Agent": ("core.models", "Agent"),
    "AgentStatus": ("core.models", "AgentStatus"),
    "AuthReason": ("core.models", "AuthReason"),
    "Comment": ("core.models", "Comment"),
    "Company": ("core.models", "Company"),
    "Issue": ("core.models", "Issue"),
    "IssueStatus": ("core.models", "IssueStatus"),
    "MessageLink": ("core.models", "MessageLink"),
    "Priority": ("core.models", "Priority"),
    "Routine": ("core.models", "Routine"),
    "PRIORITY_USAGE": ("core.queues.facade", "PRIORITY_USAGE"),
    "parse_priority": ("core.queues.facade", "parse_priority"),
    "SCHEDULE_USAGE": ("core.queues.schedule", "USAGE"),
    "parse_schedule": ("core.queues.schedule", "parse_schedule"),
    "Roi": ("core.reports.roi", "Roi"),
    "Question": ("core.models", "Question"),
    "QuestionKind": ("core.models", "QuestionKind"),
    "QuestionStatus": ("core.models", "QuestionStatus"),
    "QuestionAsked": ("core.events", "QuestionAsked"),
    "QuestionAnswered": ("core.events", "QuestionAnswered"),
    "QuestionCancelled": ("core.events", "QuestionCancelled"),
    "Talk": ("core.questions", "Talk"),
    "Run": ("core.models", "Run"),
    "RunStatus": ("core.models", "RunStatus"),
    "RunOutcome": ("core.models", "RunOutcome"),
    "OPEN_ISSUE_STATUSES": ("core.models", "OPEN_ISSUE_STATUSES"),
    "TERMINAL_ISSUE_STATUSES": ("core.models", "TERMINAL_ISSUE_STATUSES"),
    "FleetbotError": ("core.errors", "FleetbotError"),
    "ConfigError": ("core.errors", "ConfigError"),
    "AgentNotFound": ("core.errors", "AgentNotFound"),
    "AlertNotFound": ("core.errors", "AlertNotFound"),
    "AmbiguousAssignee": ("core.errors", "AmbiguousAssignee"),
    "CompanyNotFound": ("core.errors", "CompanyNotFound"),
    "InvalidInput": ("core.errors", "InvalidInput"),
    "IssueNotFound": ("core.errors", "IssueNotFound"),
    "LeadershipLost": ("core.errors", "LeadershipLost"),
    "Leadership": ("core.cluster.leadership", "Leadership"),
    "Replica": ("core.store.lease", "Replica"),
    "Clock": ("core.clock", "Clock"),
    "SystemClock": ("core.clock", "SystemClock"),
    "ManualClock": ("core.clock", "ManualClock"),
    "utc": ("core.clock", "utc"),
    "DURATION_USAGE": ("core.durations", "USAGE"),
    "format_duration": ("core.durations", "format_duration"),
    "parse_duration": ("core.durations", "parse_duration"),
    "Config": ("core.config", "Config"),
    "TelegramConfig": ("core.config", "TelegramConfig"),
    "load_config": ("core.config", "load_config"),
    "parse_config": ("core.config", "parse_config"),
    "resolve_paths": ("core.config", "resolve_paths"),
    "EventBus": ("core.events", "EventBus"),
    "Fleet": ("core.fleet", "Fleet"),
    "FleetService": ("core.service", "FleetService"),
    "IssueFilter": ("core.queries", "IssueFilter"),
    "Database": ("core.store.db", "Database"),
    "database_for": ("core.store.engines", "database_for"),
    "migrate_store": ("core.store.copy", "migrate_store"),
    "Alert": ("core.alerting.book", "Alert"),
    "AlertBook": ("core.alerting.book", "AlertBook"),
    "AlertKind": ("core.alerting.book", "AlertKind"),
    "AlertMember": ("core.alerting.book", "AlertMember"),
    "AlertState": ("core.alerting.book", "AlertState"),
    "Fix": ("core.alerting.book", "Fix"),
    "Severity": ("core.alerting.book", "Severity"),
    "Mute": ("core.alerting.mutes", "Mute"),
    "Outbox": ("core.alerting.outbox", "Outbox"),
    "OutboxRow": ("core.alerting.outbox", "OutboxRow"),
    "OutboxKind": ("core.alerting.outbox", "OutboxKind"),
    "OutboxState": ("core.alerting.outbox", "OutboxState"),
    "AgentAuth": ("core.auth.agent_auth", "AgentAuth"),
    "KeyRingFile": ("core.auth.agent_auth", "KeyRingFile"),
    "KeyRing": ("core.auth.keyring", "KeyRing"),
    "check_single_source": ("core.auth.keyring", "check_single_source"),
    "TokenAuthority": ("core.auth.tokens", "TokenAuthority"),
    "write_token_file": ("core.auth.tokens", "write_token_file"),
    "AgentCheck": ("core.auth.rotation", "AgentCheck"),
    "AuthReport": ("core.auth.rotation", "AuthReport"),
    "issue_missing": ("core.auth.rotation", "issue_missing"),
    "record_self_test": ("core.auth.rotation", "record"),
    "rotate_agent": ("core.auth.rotation", "rotate_agent"),
    "rotate_all": ("core.auth.rotation", "rotate_all"),
    "self_test_async": ("core.auth.rotation", "self_test_async"),
    "RuntimeCheck": ("core.engine.runtime_check", "RuntimeCheck"),
    "RuntimeReport": ("core.engine.runtime_check", "RuntimeReport"),
    "TargetFailure": ("core.engine.runtime_check", "TargetFailure"),
    "self_test_runtimes": ("core.engine.runtime_check", "self_test_runtimes"),
    "CompanyActivity": ("core.reports.activity", "CompanyActivity"),
    "CompanyBoard": ("core.reports.board", "CompanyBoard"),
    "MonthCosts": ("core.reports.costs", "MonthCosts"),
    "Usage": ("core.reports.costs", "Usage"),
}

__all__ = [
    "DURATION_USAGE",
    "OPEN_ISSUE_STATUSES",
    "PRIORITY_USAGE",
    "SCHEDULE_USAGE",
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
    "KeyRing",
    "KeyRingFile",
    "Leadership",
    "LeadershipLost",
    "ManualClock",
    "MessageLink",
    "MonthCosts",
    "Mute",
    "Outbox",
    "OutboxKind",
    "OutboxRow",
    "OutboxState",
    "Priority",
    "Question",
    "QuestionAnswered",
    "QuestionAsked",
    "QuestionCancelled",
    "QuestionKind",
    "QuestionStatus",
    "Replica",
    "Roi",
    "Routine",
    "Run",
    "RunOutcome",
    "RunStatus",
    "RuntimeCheck",
    "RuntimeReport",
    "Severity",
    "SystemClock",
    "Talk",
    "TargetFailure",
    "TelegramConfig",
    "TokenAuthority",
    "Usage",
    "check_single_source",
    "database_for",
    "format_duration",
    "issue_missing",
    "load_config",
    "migrate_store",
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
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'core' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
