"""The "are you sure?" of bulk and irreversible actions, kept by the bot process, not in the
button.

Asking records who asked, for what action, in which chat, until when; the button carries only
the record's random id. Callback data comes from the client and a modified one can send any
bytes, so nothing in it is believed: a tap acts only if its id names a record that is still
here, for the chat it was pressed in, and before its expiry; taking the record acts once.
Records are dropped when taken and pruned when they expire. A restart forgets them all, which
is what "expired" means for a prompt from before it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

# 12 random bytes: 16 URL-safe characters, so `v1:c:<id>:yes` is 25 bytes of Telegram's 64.
ID_BYTES = 12
TTL = 600.0  # seconds a confirmation can be tapped


@dataclass(frozen=True, slots=True)
class Pending:
    """One confirmation waiting for its tap."""

    id: str
    action: str  # "reset_all", "rotate_all" or "remove_routine"
    user_id: int  # who asked
    chat_id: int  # where the prompt was shown, and the only chat its tap counts from
    expires_at: float
    subject: str = ""  # what the action acts on, if one thing: a routine's ref
    scope: str = ""  # the list the prompt sits in (a company id, or "*"), to redraw it


class Confirmations:
    """Confirmations asked and not yet tapped, by id; every method takes `now`."""

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def ask(
        self,
        action: str,
        user_id: int,
        chat_id: int,
        now: float,
        *,
        subject: str = "",
        scope: str = "",
    ) -> Pending:
        self.prune(now)
        entry = Pending(
            secrets.token_urlsafe(ID_BYTES),
            action,
            user_id,
            chat_id,
            now + self.ttl,
            subject,
            scope,
        )
        self._pending[entry.id] = entry
        return entry

    def find(self, confirm_id: str, chat_id: int | None, now: float) -> Pending | None:
        """The live confirmation `confirm_id` names for this chat, if there is one."""
        self.prune(now)
        entry = self._pending.get(confirm_id)
        return entry if entry is not None and entry.chat_id == chat_id else None

    def take(self, confirm_id: str, chat_id: int | None, now: float) -> Pending | None:
        """Like `find`, and the confirmation is used up: a second tap finds nothing."""
        entry = self.find(confirm_id, chat_id, now)
        if entry is not None:
            del self._pending[entry.id]
        return entry

    def prune(self, now: float) -> int:
        """Drop the expired ones; returns how many."""
        expired = [k for k, e in self._pending.items() if e.expires_at <= now]
        for k in expired:
            del self._pending[k]
        return len(expired)
