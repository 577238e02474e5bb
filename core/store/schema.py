"""The schema as an ordered list of migrations; `PRAGMA user_version` records how many ran.

Append new migrations; never edit a released one.
"""

from __future__ import annotations

_AGENT_STATUSES = "'idle','running','paused','error','unauthenticated'"
_ISSUE_STATUSES = "'todo','in_progress','in_review','done','blocked','cancelled'"
_RUN_STATUSES = "'running','succeeded','failed','timed_out','cancelled','interrupted'"

# Migrations that rebuild a table others refer to run with foreign keys off (SQLite's documented
# way: a DROP of the old table would otherwise fail on its children's references), then must
# pass `PRAGMA foreign_key_check` before they commit (core.store.db).
REBUILDS = "-- rebuilds a referenced table"

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
    # alerts (grouped by cause, members by fingerprint), mutes, the durable outbox and its
    # per-chat delivery records, and the monitors' and recovery's own bookkeeping
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        cause TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('critical','warning')),
        state TEXT NOT NULL CHECK (state IN ('firing','acknowledged','resolved')),
        title TEXT NOT NULL,
        fixes TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL,
        changed_at REAL NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        notified_version INTEGER NOT NULL DEFAULT 0,
        notifications INTEGER NOT NULL DEFAULT 0,
        last_notified_at REAL,
        acked_at REAL,
        acked_by TEXT,
        resolved_at REAL,
        closed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alerts_open ON alerts(closed, cause);
    CREATE TABLE alert_members (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        fingerprint TEXT NOT NULL,
        subject TEXT NOT NULL,
        company_id TEXT,
        label TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        reason_code TEXT NOT NULL DEFAULT '',
        first_at REAL NOT NULL,
        last_at REAL NOT NULL,
        resolved_at REAL,
        PRIMARY KEY (alert_id, fingerprint)
    );
    CREATE UNIQUE INDEX alert_members_live ON alert_members(fingerprint)
        WHERE resolved_at IS NULL;
    CREATE TABLE mutes (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        until REAL NOT NULL,
        author TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        lifted_at REAL,
        lifted_by TEXT
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('alert','alert_edit','summary','text')),
        chat TEXT NOT NULL,
        thread_id INTEGER,
        company_id TEXT,
        alert_id INTEGER,
        payload TEXT NOT NULL DEFAULT '{}',
        dedupe_key TEXT UNIQUE,
        state TEXT NOT NULL
            CHECK (state IN ('pending','sending','sent','in_doubt','dead','superseded')),
        created_at REAL NOT NULL,
        due_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at REAL,
        sent_at REAL,
        message_id INTEGER,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX outbox_due ON outbox(state, due_at);
    CREATE INDEX outbox_alert ON outbox(alert_id, chat);
    CREATE INDEX runs_issue ON runs(issue_id, started_at);
    CREATE TABLE deliveries (
        alert_id INTEGER NOT NULL,
        chat TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        sent_at REAL NOT NULL,
        PRIMARY KEY (alert_id, chat)
    );
    CREATE TABLE recipients (
        chat TEXT PRIMARY KEY,
        migrated_to TEXT,
        undeliverable_at REAL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE queue_watch (
        company_id TEXT PRIMARY KEY,
        empty_beats INTEGER NOT NULL DEFAULT 0,
        empty_since REAL
    );
    CREATE TABLE auto_resets (
        agent_id TEXT PRIMARY KEY,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL,
        last_at REAL
    );
    CREATE TABLE recovery_loops (
        issue_id TEXT PRIMARY KEY,
        dispatches INTEGER NOT NULL,
        window_seconds REAL NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE escalations (
        issue_id TEXT PRIMARY KEY,
        chain TEXT NOT NULL,
        escalated_to TEXT,
        escalation_issue TEXT,
        at REAL NOT NULL
    );
    CREATE TABLE budget_actions (
        subject TEXT NOT NULL,
        month TEXT NOT NULL,
        action TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (subject, month, action)
    ) WITHOUT ROWID;
    """,
    # The monthly summary per company without joining every run and heartbeat counter to its
    # agent: at 10k agents that join made core.reports.board.fleet_board take 130 ms+ (50k runs and
    # 200k+ counters a month; bench/scale.py). Runs carry their company (set by a trigger, so
    # every insert path gets it) under a covering index; heartbeat counters are mirrored, by
    # triggers, into per-company daily totals.
    """
    ALTER TABLE runs ADD COLUMN company_id TEXT REFERENCES companies(id);
    UPDATE runs SET company_id = (SELECT company_id FROM agents WHERE agents.id = runs.agent_id);
    CREATE INDEX runs_company_month
        ON runs(started_at, company_id, input_tokens, output_tokens, cost);
    CREATE TRIGGER runs_company AFTER INSERT ON runs WHEN NEW.company_id IS NULL BEGIN
        UPDATE runs SET company_id = (SELECT company_id FROM agents WHERE id = NEW.agent_id)
        WHERE id = NEW.id;
    END;
    CREATE TABLE company_heartbeats (
        outcome TEXT NOT NULL,
        day TEXT NOT NULL,
        company_id TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (outcome, day, company_id)
    ) WITHOUT ROWID;
    INSERT INTO company_heartbeats (outcome, day, company_id, count)
        SELECT h.outcome, h.day, a.company_id, sum(h.count) FROM heartbeats h
        JOIN agents a ON a.id = h.agent_id GROUP BY 1, 2, 3;
    CREATE TRIGGER heartbeats_total_insert AFTER INSERT ON heartbeats BEGIN
        INSERT INTO company_heartbeats (outcome, day, company_id, count)
            SELECT NEW.outcome, NEW.day, company_id, NEW.count FROM agents WHERE id = NEW.agent_id
            ON CONFLICT (outcome, day, company_id) DO UPDATE SET count = count + excluded.count;
    END;
    CREATE TRIGGER heartbeats_total_update AFTER UPDATE OF count ON heartbeats BEGIN
        UPDATE company_heartbeats SET count = count + NEW.count - OLD.count
        WHERE outcome = NEW.outcome AND day = NEW.day
        AND company_id = (SELECT company_id FROM agents WHERE id = NEW.agent_id);
    END;
    CREATE TRIGGER heartbeats_total_delete AFTER DELETE ON heartbeats BEGIN
        UPDATE company_heartbeats SET count = count - OLD.count
        WHERE outcome = OLD.outcome AND day = OLD.day
        AND company_id = (SELECT company_id FROM agents WHERE id = OLD.agent_id);
    END;
    """,
    # The runtime's own id for a run's turn (OpenClaw's runId), shown on the run card.
    """
    ALTER TABLE runs ADD COLUMN external_id TEXT NOT NULL DEFAULT '';
    """,
    # An outage's backlog is one digest per chat (kind 'alert_digest'); the new-alert rows it
    # carries are kept as 'coalesced'. SQLite cannot widen a CHECK in place: rebuild the table.
    """
    CREATE TABLE outbox_new (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL
            CHECK (kind IN ('alert','alert_edit','alert_digest','summary','text')),
        chat TEXT NOT NULL,
        thread_id INTEGER,
        company_id TEXT,
        alert_id INTEGER,
        payload TEXT NOT NULL DEFAULT '{}',
        dedupe_key TEXT UNIQUE,
        state TEXT NOT NULL CHECK (state IN
            ('pending','sending','sent','in_doubt','dead','superseded','coalesced')),
        created_at REAL NOT NULL,
        due_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at REAL,
        sent_at REAL,
        message_id INTEGER,
        error TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO outbox_new SELECT id, kind, chat, thread_id, company_id, alert_id, payload,
        dedupe_key, state, created_at, due_at, attempts, started_at, sent_at, message_id, error
        FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox(state, due_at);
    CREATE INDEX outbox_alert ON outbox(alert_id, chat);
    """,
    # Agents' questions about their issues (answered from the phone; an open one makes its issue
    # not workable: core.store.issues.workable), and which sent message shows which issue or
    # question (what a Telegram reply to it is about).
    """
    CREATE TABLE questions (
        id INTEGER PRIMARY KEY,
        company_id TEXT NOT NULL REFERENCES companies(id),
        issue_id TEXT NOT NULL REFERENCES issues(id),
        agent_id TEXT NOT NULL REFERENCES agents(id),
        run_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('question','approval')),
        text TEXT NOT NULL,
        choices TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open','answered','cancelled')),
        answer TEXT,
        answered_by TEXT,
        answered_name TEXT NOT NULL DEFAULT '',
        asked_at REAL NOT NULL,
        answered_at REAL
    );
    CREATE INDEX questions_issue ON questions(issue_id, id);
    CREATE INDEX questions_open ON questions(issue_id) WHERE status = 'open';
    CREATE TABLE message_links (
        chat TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('summary','run','issue','question','pin')),
        issue_id TEXT,
        question_id INTEGER,
        created_at REAL NOT NULL,
        PRIMARY KEY (chat, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX message_links_pin ON message_links(chat, kind, created_at);
    """,
    # Queues that feed themselves (core.queues): issue priorities (0 critical … 3 low; inboxes
    # by priority, then age), the `backlog` status no heartbeat works, the routine that filed an
    # issue, routines, and the spend-velocity breaker's trips. The status CHECK widens by a
    # rebuild of `issues`, which comments, runs and questions refer to.
    f"""
    {REBUILDS}
    CREATE TABLE issues_new (
        id TEXT PRIMARY KEY,
        company_id TEXT NOT NULL REFERENCES companies(id),
        number INTEGER NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('backlog',{_ISSUE_STATUSES})),
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
        priority INTEGER NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 3),
        routine_id INTEGER,
        UNIQUE (company_id, number)
    );
    INSERT INTO issues_new (id, company_id, number, title, body, status, assignee_id,
        created_by, model, attempts, max_attempts, lease_run_id, lease_until, not_before, reason,
        created_at, updated_at)
        SELECT id, company_id, number, title, body, status, assignee_id, created_by, model,
        attempts, max_attempts, lease_run_id, lease_until, not_before, reason, created_at,
        updated_at FROM issues;
    DROP TABLE issues;
    ALTER TABLE issues_new RENAME TO issues;
    CREATE INDEX issues_inbox ON issues(assignee_id, status, priority, created_at);
    CREATE INDEX issues_company_status ON issues(company_id, status, priority, created_at);
    CREATE INDEX issues_routine ON issues(routine_id) WHERE routine_id IS NOT NULL;
    -- What the feeder and the monitors ask every minute (core.queues.planner): what one
    -- filer (the planner) filed last; and the ROI's issues closed. (A company's backlog is
    -- counted on issues_company_status.)
    CREATE INDEX issues_filer ON issues(company_id, created_by, created_at);
    CREATE INDEX issues_done ON issues(updated_at) WHERE status = 'done';
    -- AUTOINCREMENT: a removed routine's id (R5) is never reused, so an old button or audit
    -- row never comes to mean another routine.
    CREATE TABLE routines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        company_id TEXT NOT NULL REFERENCES companies(id),
        name TEXT NOT NULL,
        assignee TEXT NOT NULL,
        schedule TEXT NOT NULL,
        timezone TEXT NOT NULL DEFAULT 'UTC',
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        priority INTEGER NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 3),
        source TEXT NOT NULL CHECK (source IN ('config','chat')),
        paused INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        last_at REAL,
        last_issue TEXT,
        skipped INTEGER NOT NULL DEFAULT 0,
        streak INTEGER NOT NULL DEFAULT 0,
        missed INTEGER NOT NULL DEFAULT 0,
        late TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (company_id, name)
    );
    CREATE INDEX routines_due ON routines(next_at) WHERE paused = 0;
    CREATE TABLE breaker_trips (
        agent_id TEXT NOT NULL REFERENCES agents(id),
        at REAL NOT NULL,
        cost REAL NOT NULL,
        tokens INTEGER NOT NULL,
        baseline_cost REAL NOT NULL,
        paused INTEGER NOT NULL,
        PRIMARY KEY (agent_id, at)
    ) WITHOUT ROWID;
    -- The digest lists the day's promotions (core.queues.backlog): one action, one window.
    CREATE INDEX audit_action ON audit(action, at);
    """,
    # Replicas (core.cluster): the one leader's lease, renewed on the database's clock, whose
    # epoch fences the leader's writes; each replica's last sign of life; the replica whose
    # process runs each run's turn (a replica starting, or the leader, interrupts only the runs
    # of replicas gone quiet).
    """
    CREATE TABLE leader_lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        seen_at REAL NOT NULL
    );
    ALTER TABLE runs ADD COLUMN replica TEXT NOT NULL DEFAULT '';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
