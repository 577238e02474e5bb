"""Alerts: every bad state the monitors find, grouped by cause, with its lifecycle in the store.

A `Finding` is one bad state of one subject: `kind` + `subject` is its fingerprint (e.g.
`agent_unauthenticated:agent:ripley`). Findings with the same `cause` (kind plus reason, e.g.
`agent_unauthenticated:unknown_key`) join one *alert*, the unit people see: one message per
audience that lists its members and offers one fix. Twelve agents failing with `unknown_key` are
one alert with twelve members.

An alert is `firing`, then maybe `acknowledged`, and `resolved` once every member is; `muted` is
shown while an active mute covers it. Only a firing alert takes new members: an acknowledged
one covers what its reader saw, so a new failure after the ack starts a new alert.

The bot calls (ids are alert ids as shown, e.g. "42" or "#42"):

    firing() -> list[Alert]                  open alerts (firing, acked or muted), newest first
    recent(limit) -> list[Alert]             every alert, resolved too, newest first
    get(alert_id) -> Alert                   AlertNotFound if there is none
    ack(alert_id, actor) -> Alert            idempotent; Conflict if already resolved
    mute(target, until, actor, reason) -> Mute
    unmute(mute_or_alert_id, actor) -> list[Mute]   the mutes lifted; NotFound if none
    mutes(active_only=True) -> list[Mute]

A mute `target` is one of: an alert id (`42`, `#42`, `alert:42`); an alert kind (`agent_error`,
`kind:agent_error`); an agent (`ripley`, `agent:ripley`), a company (`aliens`, `ALI`,
`company:aliens`) or an issue (`ALI-12`, `issue:ALI-12`). A subject mute silences an alert when
it covers every live member (a company covers its agents and issues). `until` is epoch seconds,
in the future and at most 90 days ahead. `unmute` takes a mute id (`m7`, `mute:7`), an alert id
(lifts every active mute covering that alert) or a target as above (lifts mutes on exactly it).

Notifications are decided by core.alerting.policy.decide in `flush`, which writes outbox rows in the
same transaction that records them as sent-to-outbox: an alert is handed to the outbox once.
"""

from __future__ import annotations

import json
from typing import Any

from core.alerting.mutes import Mute, covering, lift_mutes, load_mutes, parse_target, touching
from core.alerting.outbox import Outbox
from core.alerting.policy import Action, NotifyState, decide, quiet_until
from core.alerting.records import (
    KINDS,
    Alert,
    AlertKind,
    AlertMember,
    AlertState,
    Finding,
    Fix,
    Severity,
)
from core.clock import Clock
from core.config import Config
from core.errors import AlertNotFound, Conflict, InvalidInput, NotFound
from core.store import alerts as alert_store, audit
from core.store.conn import Conn
from core.store.db import Database

MAX_MUTE = 90 * 86400

__all__ = [
    "Alert",
    "AlertBook",
    "AlertKind",
    "AlertMember",
    "AlertState",
    "Finding",
    "Fix",
    "Severity",
]


def _member(row: Any) -> AlertMember:
    return AlertMember(*(row[k] for k in alert_store.MEMBER_COLUMNS.split(", ")[1:]))


def _alert_id(value: int | str) -> int:
    text = str(value).strip().lower().removeprefix("alert:").lstrip("#")
    # isascii: "²" passes isdigit() but not int().
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise AlertNotFound(f"no alert {value!r}; alert ids are numbers, /alerts lists them")
    return int(text)


class AlertBook:
    """The alert store: raise/refresh/resolve by fingerprint, ack, mute, and `flush` to outbox."""

    def __init__(self, db: Database, clock: Clock, config: Config, outbox: Outbox) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.outbox = outbox
        if config.alerts.quiet_hours is not None:  # a bad time zone fails at start, not later
            quiet_until(0.0, config.alerts.quiet_hours)

    # -- the core's side ------------------------------------------------------------------------

    async def raise_(self, *findings: Finding) -> None:
        """Record findings: new members join the firing alert of their cause, or start one."""
        now = self.clock.now()
        async with self.db.write() as conn:
            live = await alert_store.live_members(conn, [f.fingerprint for f in findings])
            for f in findings:
                await self._raise_in(conn, f, now, live.get(f.fingerprint))

    async def resolve(self, *fingerprints: str) -> int:
        """Resolve these members wherever they are; returns how many were live."""
        now = self.clock.now()
        async with self.db.write() as conn:
            live = await alert_store.live_members(conn, list(fingerprints))
            for fp, row in live.items():
                await self._resolve_member(conn, row["alert_id"], fp, now)
        return len(live)

    async def reconcile(
        self, findings: list[Finding], kinds: frozenset[AlertKind], taken_at: float
    ) -> None:
        """Make the live members of `kinds` match a monitor pass over state read at `taken_at`:
        raise every finding, resolve what was not found. A member raised by an event after the
        state was read is kept; the next pass decides about it."""
        now = self.clock.now()
        found = {f.fingerprint for f in findings}
        async with self.db.write() as conn:
            live = await alert_store.live_members(conn, None)
            for f in findings:
                await self._raise_in(conn, f, now, live.get(f.fingerprint))
            for fp, row in live.items():
                if fp not in found and fp.partition(":")[0] in kinds and row["last_at"] <= taken_at:
                    await self._resolve_member(conn, row["alert_id"], fp, now)

    async def _raise_in(self, conn: Conn, f: Finding, now: float, live: Any | None) -> None:
        if live is not None and live["cause"] == f.cause:
            if (live["label"], live["detail"], live["reason_code"]) != (
                f.label,
                f.detail,
                f.reason_code,
            ):
                await alert_store.update_member(
                    conn, live["alert_id"], f.fingerprint, f.label, f.detail, f.reason_code, now
                )
                await alert_store.bump(conn, live["alert_id"], now)
            return
        if live is not None:  # same subject, new cause: it moves to the other cause's alert
            await self._resolve_member(conn, live["alert_id"], f.fingerprint, now)
        alert_id = await alert_store.firing_for(conn, f.cause)
        if alert_id is None:
            title, severity, fixes = KINDS[f.kind]
            alert_id = await alert_store.insert(
                conn,
                f.kind.value,
                f.cause,
                (f.severity or severity).value,
                title,
                json.dumps([x.value for x in (fixes if f.fixes is None else f.fixes)]),
                now,
            )
        else:
            await alert_store.bump(conn, alert_id, now)
        await alert_store.add_member(
            conn,
            alert_id,
            f.fingerprint,
            f.subject,
            f.company_id,
            f.label,
            f.detail,
            f.reason_code,
            now,
        )

    async def _resolve_member(
        self, conn: Conn, alert_id: int, fingerprint: str, now: float
    ) -> None:
        if not await alert_store.resolve_member(conn, alert_id, fingerprint, now):
            return
        if await alert_store.live_member_count(conn, alert_id):
            await alert_store.bump(conn, alert_id, now)
        else:
            await alert_store.resolve(conn, alert_id, now)

    async def flush(self) -> dict[Action, int]:
        """Decide every open alert's notification and put the due ones in the outbox."""
        now = self.clock.now()
        cfg = self.config.alerts
        done: dict[Action, int] = {}
        async with self.db.write() as conn:
            rows = await alert_store.open_alerts(conn)
            if not rows:
                return done
            mutes = await load_mutes(conn, now)
            by_subject = any(m.on_subject for m in mutes)
            for row in rows:
                members = await _members(conn, row["id"]) if by_subject else None
                muted = bool(covering(mutes, row["id"], row["kind"], members or ()))
                state = NotifyState(
                    critical=row["severity"] == Severity.CRITICAL.value,
                    created_at=row["created_at"],
                    version=row["version"],
                    notified_version=row["notified_version"],
                    last_notified_at=row["last_notified_at"],
                    acknowledged=row["state"] == AlertState.ACKNOWLEDGED.value,
                    resolved=row["state"] == AlertState.RESOLVED.value,
                    muted=muted,
                )
                decision = decide(
                    state,
                    now,
                    group_wait=cfg.group_wait,
                    repeat_interval=cfg.repeat_interval,
                    quiet=cfg.quiet_hours,
                )
                if decision.action is Action.NONE:
                    continue
                if members is None:
                    members = await _members(conn, row["id"])
                done[decision.action] = done.get(decision.action, 0) + 1
                await self._act(conn, row, members, decision.action, now, state)
        if done:
            self.outbox.notify()
        return done

    async def _act(
        self,
        conn: Conn,
        row: Any,
        members: tuple[AlertMember, ...],
        action: Action,
        now: float,
        state: NotifyState,
    ) -> None:
        alert_id = row["id"]
        if action in (Action.NEW, Action.REPEAT):
            companies = {m.company_id for m in members if m.active}
            seq = row["notifications"] + 1
            for r in self.outbox.recipients_for_alert(companies):
                await self.outbox.enqueue_alert_in(conn, alert_id, r, now, seq)
            await alert_store.notified(conn, alert_id, seq, now)
            return
        if action is Action.UPDATE:
            quiet = self.config.alerts.quiet_hours
            may_ping = not (state.acknowledged or state.muted) and (
                state.critical or quiet is None or quiet_until(now, quiet) is None
            )
            for r in self.outbox.recipients_for_alert({m.company_id for m in members}):
                await self.outbox.enqueue_edit_in(conn, alert_id, r, now, may_send=may_ping)
        elif action is Action.RESOLVED:
            for r in await self.outbox.alert_recipients_in(conn, alert_id):
                await self.outbox.enqueue_edit_in(conn, alert_id, r, now, may_send=False)
        await alert_store.edited(conn, alert_id, close=action in (Action.RESOLVED, Action.DROP))

    # -- the bot's side ---------------------------------------------------------------------------

    async def get(self, alert_id: int | str) -> Alert:
        key = _alert_id(alert_id)
        row = await alert_store.get(self.db.reader, key)
        if row is None:
            raise AlertNotFound(f"no alert #{key}; /alerts lists the open ones")
        return (await self._views([row]))[0]

    async def firing(self) -> list[Alert]:
        return await self._views(await alert_store.unresolved(self.db.reader))

    async def recent(self, limit: int = 20) -> list[Alert]:
        return await self._views(await alert_store.newest(self.db.reader, max(1, limit)))

    async def _views(self, rows: list[Any]) -> list[Alert]:
        mutes = await load_mutes(self.db.reader, self.clock.now())
        out = []
        for row in rows:
            members = await _members(self.db.reader, row["id"])
            silenced = tuple(covering(mutes, row["id"], row["kind"], members))
            state = AlertState(row["state"])
            if silenced and state is not AlertState.RESOLVED:
                state = AlertState.MUTED
            out.append(
                Alert(
                    id=row["id"],
                    kind=AlertKind(row["kind"]),
                    cause=row["cause"],
                    severity=Severity(row["severity"]),
                    state=state,
                    title=row["title"],
                    fixes=tuple(Fix(x) for x in json.loads(row["fixes"])),
                    created_at=row["created_at"],
                    changed_at=row["changed_at"],
                    version=row["version"],
                    acked_at=row["acked_at"],
                    acked_by=row["acked_by"],
                    resolved_at=row["resolved_at"],
                    members=members,
                    muted_until=_muted_until(silenced),
                    mutes=silenced,
                )
            )
        return out

    async def ack(self, alert_id: int | str, actor: str) -> Alert:
        """Acknowledge: no more reminders for these members. Repeating it changes nothing."""
        key = _alert_id(alert_id)
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await alert_store.get(conn, key)
            if row is None:
                raise AlertNotFound(f"no alert #{key}; /alerts lists the open ones")
            if row["state"] == AlertState.RESOLVED.value:
                raise Conflict(f"alert #{key} is already resolved; nothing to acknowledge")
            if row["state"] == AlertState.FIRING.value:
                await alert_store.acknowledge(conn, key, actor, now)
                await audit.record(conn, now, actor, "alert.ack", f"alert:{key}")
        self.outbox.notify()
        return await self.get(key)

    async def mute(self, target: str, until: float, actor: str, reason: str = "") -> Mute:
        """Silence `target` (see the module docstring) until `until`, with who and why."""
        now = self.clock.now()
        if until <= now:
            raise InvalidInput("a mute must end in the future; give a duration such as 4h")
        if until > now + MAX_MUTE:
            raise InvalidInput("mute for at most 90 days; acknowledge the alert to stop reminders")
        reason = " ".join(reason.split())[:500]
        async with self.db.write() as conn:
            canonical = await parse_target(conn, target)
            mute_id = await alert_store.add_mute(conn, canonical, until, actor, reason, now)
            await audit.record(
                conn, now, actor, "alert.mute", canonical, {"until": until, "reason": reason}
            )
            await self._bump_covered(conn, now, [Mute(mute_id, canonical, until, actor, reason)])
        return Mute(mute_id, canonical, until, actor, reason, now)

    async def unmute(self, mute_or_alert_id: int | str, actor: str) -> list[Mute]:
        """Lift mutes: by mute id (m7), every mute covering an alert (42), or on a target."""
        now = self.clock.now()
        async with self.db.write() as conn:
            lifted = await lift_mutes(conn, str(mute_or_alert_id), actor, now, _members)
            if not lifted:
                raise NotFound(f"nothing muted matches {mute_or_alert_id!r}; /alerts lists mutes")
            await audit.record(
                conn, now, actor, "alert.unmute", ",".join(f"m{m.id}" for m in lifted)
            )
            await self._bump_covered(conn, now, lifted)
        self.outbox.notify()
        return lifted

    async def mutes(self, active_only: bool = True) -> list[Mute]:
        now = self.clock.now()
        if active_only:
            return await load_mutes(self.db.reader, now)
        return await load_mutes(self.db.reader, None)

    async def _bump_covered(self, conn: Conn, now: float, mutes: list[Mute]) -> None:
        """A mute or unmute changes how open alerts read: their messages are edited."""
        for row in await alert_store.open_alerts(conn):
            members = await _members(conn, row["id"])
            if touching(mutes, row["id"], row["kind"], members):
                await alert_store.bump(conn, row["id"], now)


def _muted_until(silenced: tuple[Mute, ...]) -> float | None:
    """Any one alert or kind mute silences alone; subject mutes only together."""
    if not silenced:
        return None
    if not silenced[0].on_subject:
        return max(m.until for m in silenced)
    return min(m.until for m in silenced)


async def _members(conn: Conn, alert_id: int) -> tuple[AlertMember, ...]:
    return tuple(_member(r) for r in await alert_store.members(conn, alert_id))
