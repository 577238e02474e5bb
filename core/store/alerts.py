"""Alerts, their members and mutes, in the store.

core.alerting.book decides how findings group, when an alert resolves and what is notified;
core.alerting.mutes what a mute covers. These are their statements; rows come back as they
are and the alerting modules turn them into records.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.store.conn import Conn, Row
from core.store.db import fetch_all, fetch_one, inserted_id

ALERT_COLUMNS = (
    "id, kind, cause, severity, state, title, fixes, created_at, changed_at, version, "
    "notified_version, notifications, last_notified_at, acked_at, acked_by, resolved_at, closed"
)
MEMBER_COLUMNS = (
    "alert_id, fingerprint, subject, company_id, label, detail, reason_code, first_at, last_at, "
    "resolved_at"
)
MUTE_COLUMNS = "id, target, until, author, reason, created_at, lifted_at, lifted_by"
_ALERTS = f"SELECT {ALERT_COLUMNS} FROM alerts"


async def get(conn: Conn, alert_id: int) -> Row | None:
    return await fetch_one(conn, f"{_ALERTS} WHERE id = ?", (alert_id,))


async def unresolved(conn: Conn) -> list[Row]:
    """Alerts not resolved (firing or acknowledged), newest first."""
    return await fetch_all(conn, f"{_ALERTS} WHERE state != 'resolved' ORDER BY id DESC")


async def newest(conn: Conn, limit: int) -> list[Row]:
    return await fetch_all(conn, f"{_ALERTS} ORDER BY id DESC LIMIT ?", (limit,))


async def open_alerts(conn: Conn) -> list[Row]:
    """Alerts not yet closed (a resolved alert closes once its resolution is notified)."""
    return await fetch_all(conn, f"{_ALERTS} WHERE closed = 0 ORDER BY id")


async def firing_for(conn: Conn, cause: str) -> int | None:
    """The newest open, firing alert of `cause`: the one new members join."""
    row = await fetch_one(
        conn,
        "SELECT id FROM alerts WHERE closed = 0 AND cause = ? AND state = 'firing' "
        "ORDER BY id DESC LIMIT 1",
        (cause,),
    )
    return None if row is None else int(row[0])


async def insert(
    conn: Conn,
    kind: str,
    cause: str,
    severity: str,
    title: str,
    fixes: str,
    now: float,
) -> int:
    return await inserted_id(
        conn,
        "INSERT INTO alerts (kind, cause, severity, state, title, fixes, created_at, "
        "changed_at) VALUES (?, ?, ?, 'firing', ?, ?, ?, ?) RETURNING id",
        (kind, cause, severity, title, fixes, now, now),
    )


async def bump(conn: Conn, alert_id: int, now: float) -> None:
    """The alert changed: a new version, so its messages are edited."""
    await conn.execute(
        "UPDATE alerts SET version = version + 1, changed_at = ? WHERE id = ?", (now, alert_id)
    )


async def resolve(conn: Conn, alert_id: int, now: float) -> None:
    await conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = ?, version = version + 1, "
        "changed_at = ? WHERE id = ?",
        (now, now, alert_id),
    )


async def acknowledge(conn: Conn, alert_id: int, actor: str, now: float) -> None:
    await conn.execute(
        "UPDATE alerts SET state = 'acknowledged', acked_at = ?, acked_by = ?, "
        "version = version + 1, changed_at = ? WHERE id = ? AND state = 'firing'",
        (now, actor, now, alert_id),
    )


async def notified(conn: Conn, alert_id: int, seq: int, now: float) -> None:
    """Message number `seq` of the alert went to the outbox."""
    await conn.execute(
        "UPDATE alerts SET notified_version = version, notifications = ?, "
        "last_notified_at = ? WHERE id = ?",
        (seq, now, alert_id),
    )


async def edited(conn: Conn, alert_id: int, *, close: bool) -> None:
    """The alert's current version went to the outbox as edits; `close`: nothing follows."""
    await conn.execute(
        "UPDATE alerts SET notified_version = version, closed = ? WHERE id = ?",
        (int(close), alert_id),
    )


async def members(conn: Conn, alert_id: int) -> list[Row]:
    """The alert's members, live first, by company and label."""
    return await fetch_all(
        conn,
        f"SELECT {MEMBER_COLUMNS} FROM alert_members WHERE alert_id = ? "
        "ORDER BY resolved_at IS NOT NULL, company_id, label",
        (alert_id,),
    )


async def live_members(conn: Conn, fingerprints: Sequence[str] | None) -> dict[str, Row]:
    """fingerprint -> (alert_id, fingerprint, label, detail, reason_code, last_at, cause) of the
    live members with these fingerprints (None: all of them)."""
    sql = (
        "SELECT m.alert_id, m.fingerprint, m.label, m.detail, m.reason_code, m.last_at, "
        "a.cause FROM alert_members m JOIN alerts a ON a.id = m.alert_id "
        "WHERE m.resolved_at IS NULL"
    )
    args: Sequence[str] = ()
    if fingerprints is not None:
        if not fingerprints:
            return {}
        sql += f" AND m.fingerprint IN ({','.join('?' for _ in fingerprints)})"
        args = fingerprints
    return {r["fingerprint"]: r for r in await fetch_all(conn, sql, args)}


async def add_member(
    conn: Conn,
    alert_id: int,
    fingerprint: str,
    subject: str,
    company_id: str | None,
    label: str,
    detail: str,
    reason_code: str,
    now: float,
) -> None:
    """A new member of the alert, or a resolved one live again."""
    await conn.execute(
        f"INSERT INTO alert_members ({MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "NULL) ON CONFLICT (alert_id, fingerprint) DO UPDATE SET resolved_at = NULL, "
        "label = excluded.label, detail = excluded.detail, "
        "reason_code = excluded.reason_code, last_at = excluded.last_at",
        (alert_id, fingerprint, subject, company_id, label, detail, reason_code, now, now),
    )


async def update_member(
    conn: Conn,
    alert_id: int,
    fingerprint: str,
    label: str,
    detail: str,
    reason_code: str,
    now: float,
) -> None:
    await conn.execute(
        "UPDATE alert_members SET label = ?, detail = ?, reason_code = ?, "
        "last_at = ? WHERE alert_id = ? AND fingerprint = ?",
        (label, detail, reason_code, now, alert_id, fingerprint),
    )


async def resolve_member(conn: Conn, alert_id: int, fingerprint: str, now: float) -> bool:
    """Resolve a live member; False if it was not live."""
    cur = await conn.execute(
        "UPDATE alert_members SET resolved_at = ? WHERE alert_id = ? AND fingerprint = ? "
        "AND resolved_at IS NULL",
        (now, alert_id, fingerprint),
    )
    return cur.rowcount == 1


async def live_member_count(conn: Conn, alert_id: int) -> int:
    row = await fetch_one(
        conn,
        "SELECT count(*) FROM alert_members WHERE alert_id = ? AND resolved_at IS NULL",
        (alert_id,),
    )
    return 0 if row is None else int(row[0])


async def mutes(conn: Conn, now: float | None) -> list[Row]:
    """Mutes active at `now`, newest first (the newest 500); every mute when `now` is None."""
    sql = f"SELECT {MUTE_COLUMNS} FROM mutes"
    args: tuple[float, ...] = ()
    if now is not None:
        sql, args = sql + " WHERE lifted_at IS NULL AND until > ?", (now,)
    return await fetch_all(conn, sql + " ORDER BY id DESC LIMIT 500", args)


async def add_mute(
    conn: Conn, target: str, until: float, author: str, reason: str, now: float
) -> int:
    return await inserted_id(
        conn,
        "INSERT INTO mutes (target, until, author, reason, created_at) VALUES (?, ?, ?, ?, ?) "
        "RETURNING id",
        (target, until, author, reason, now),
    )


async def lift_mute(conn: Conn, mute_id: int, actor: str, now: float) -> None:
    await conn.execute(
        "UPDATE mutes SET lifted_at = ?, lifted_by = ? WHERE id = ? AND lifted_at IS NULL",
        (now, actor, mute_id),
    )


async def kind_of(conn: Conn, alert_id: int) -> str | None:
    row = await fetch_one(conn, "SELECT kind FROM alerts WHERE id = ?", (alert_id,))
    return None if row is None else str(row[0])
