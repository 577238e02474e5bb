"""The config into the store: companies and agents upserted, agents that left soft-deleted.

A role set by an operator with /role (`role_set_by`) wins over the config, and so do the skills
of that role. An agent's next heartbeat never moves later than one interval from now, so a
shorter interval in the config takes effect at once. An agent that comes back after it left
the config gets a new token version: every token it held before it left stays revoked (the
next `issue_missing` writes it a new token file).
"""

from __future__ import annotations

import json

from core.config import Config
from core.store.conn import Conn
from core.store.db import fetch_all


async def sync(conn: Conn, config: Config, now: float) -> None:
    """Make the companies and agents match `config`, inside the caller's transaction."""
    d = config.defaults
    set_roles = {
        r[0]: r[1]
        for r in await fetch_all(conn, "SELECT id, role FROM agents WHERE role_set_by IS NOT NULL")
    }
    keep: list[str] = []
    for c in config.companies:
        await conn.execute(
            "INSERT INTO companies (id, name, prefix, chat) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
            "prefix = excluded.prefix, chat = excluded.chat",
            (c.id, c.name, c.prefix, None if c.chat is None else str(c.chat)),
        )
        for a in c.agents:
            keep.append(a.id)
            heartbeat = a.heartbeat or d.heartbeat
            skills = config.skills_for(a.model_copy(update={"role": set_roles.get(a.id, a.role)}))
            await conn.execute(
                "INSERT INTO agents (id, company_id, name, role, reports_to, "
                "status_changed_at, model, heartbeat_seconds, next_heartbeat_at, skills, "
                "max_turns, run_timeout_seconds, runtime) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET company_id = excluded.company_id, "
                "name = excluded.name, "
                "role = CASE WHEN agents.role_set_by IS NULL THEN excluded.role "
                "ELSE agents.role END, "
                "reports_to = excluded.reports_to, model = excluded.model, "
                "next_heartbeat_at = LEAST(agents.next_heartbeat_at, ? + excluded."
                "heartbeat_seconds), heartbeat_seconds = excluded.heartbeat_seconds, "
                "skills = excluded.skills, max_turns = excluded.max_turns, "
                "run_timeout_seconds = excluded.run_timeout_seconds, "
                "runtime = excluded.runtime, deleted_at = NULL, "
                "token_version = agents.token_version + "
                "CASE WHEN agents.deleted_at IS NULL THEN 0 ELSE 1 END",
                (
                    *(a.id, c.id, a.name or a.id.title(), a.role, a.reports_to, now),
                    *(a.model or d.model, heartbeat, now + heartbeat, json.dumps(skills)),
                    a.max_turns_per_run or d.max_turns_per_run,
                    a.run_timeout or d.run_timeout,
                    a.runtime.model_dump_json(),
                    now,
                ),
            )
    # The set difference in Python: no parameter list to outgrow (SQLite caps them at 32,766)
    # and no JSON function, which the two engines spell differently.
    kept = set(keep)
    live = await fetch_all(conn, "SELECT id FROM agents WHERE deleted_at IS NULL")
    for row in live:
        if row[0] not in kept:
            await conn.execute("UPDATE agents SET deleted_at = ? WHERE id = ?", (now, row[0]))
