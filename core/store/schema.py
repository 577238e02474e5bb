"""The schema as an ordered list of migrations; `PRAGMA user_version` records how many ran.

Append new migrations; never edit a released one.
"""

from __future__ import annotations

_AGENT_STATUSES = "'idle','running','paused','error','unauthenticated'"
_ISSUE_STATUSES = "'todo','in_progress','in_review','done','blocked','cancelled'"
_RUN_STATUSES = "'running','succeeded','failed','timed_out','cancelled','interrupted'"

MIGRATIONS: list[str] = [
    # 1: companies, agents, issues, comments, runs, heartbeat counters, audit log, summaries
    f"""
    CREATE TABLE companies (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        chat TEXT,
        next_issue_number INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        company_id TEXT NOT NULL REFERENCES companies(id),
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        role_set_by TEXT,
        reports_to TEXT,
        status TEXT NOT NULL DEFAULT 'idle' CHECK (status IN ({_AGENT_STATUSES})),
        reason TEXT NOT NULL DEFAULT '',
        reason_code TEXT NOT NULL DEFAULT '',
        status_changed_at REAL NOT NULL,
        model TEXT NOT NULL,
        heartbeat_seconds REAL NOT NULL,
        next_heartbeat_at REAL NOT NULL,
        token_version INTEGER NOT NULL DEFAULT 1,
        skills TEXT NOT NULL DEFAULT '[]',
        max_turns INTEGER NOT NULL,
        run_timeout_seconds REAL NOT NULL,
        runtime TEXT NOT NULL DEFAULT '{{}}',
        last_seen_at REAL,
        deleted_at REAL
    );
    CREATE INDEX agents_due ON agents(next_heartbeat_at) WHERE deleted_at IS NULL;
    CREATE INDEX agents_company_role ON agents(company_id, role);
    CREATE TABLE issues (
        id TEXT PRIMARY KEY,
        company_id TEXT NOT NULL REFERENCES companies(id),
        number INTEGER NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ({_ISSUE_STATUSES})),
        assignee_id TEXT REFERENCES agents(id),
        created_by TEXT NOT NULL,
        model TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        lease_run_id TEXT,
        lease_until REAL,
        not_before REAL,
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (company_id, number)
    );
    CREATE INDEX issues_inbox ON issues(assignee_id, status, created_at);
    CREATE INDEX issues_company_status ON issues(company_id, status);
    CREATE TABLE comments (
        id INTEGER PRIMARY KEY,
        issue_id TEXT NOT NULL REFERENCES issues(id),
        author TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX comments_issue ON comments(issue_id, id);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL REFERENCES agents(id),
        issue_id TEXT REFERENCES issues(id),
        status TEXT NOT NULL CHECK (status IN ({_RUN_STATUSES})),
        reason TEXT NOT NULL DEFAULT '',
        reason_code TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        deadline REAL NOT NULL,
        ended_at REAL,
        turns INTEGER NOT NULL DEFAULT 0,
        max_turns INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        model TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        last_progress_at REAL NOT NULL
    );
    CREATE INDEX runs_live ON runs(deadline) WHERE status = 'running';
    CREATE INDEX runs_agent ON runs(agent_id, started_at);
    CREATE INDEX runs_started ON runs(started_at);
    CREATE TABLE heartbeats (
        agent_id TEXT NOT NULL REFERENCES agents(id),
        day TEXT NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (agent_id, day, outcome)
    ) WITHOUT ROWID;
    CREATE INDEX heartbeats_day ON heartbeats(day, outcome);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        result TEXT NOT NULL
    );
    CREATE TABLE summaries (
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL REFERENCES agents(id),
        issue_id TEXT,
        run_id TEXT,
        source TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
