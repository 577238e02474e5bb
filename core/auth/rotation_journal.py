"""The rotation journal: how rotating every key survives being killed at any moment.

Rotating all keys changes the key ring and every agent's token file, and no single atomic write
covers both. Saving the key ring first and then the token files, with nothing in between, meant
that a rotation killed between the two left every token file on the previous key; when its grace
ended the running process retired that key, and the whole fleet went `unauthenticated` at once,
later, with nobody at the keyboard.

`core.auth.rotation.rotate_all` takes these steps, holding the key ring's lock
(`.keyring.json.lock`, an flock: it dies with its process) from the first to the last:

1. **journal written**: `.keyring.json.rotation` beside the key ring (atomic, mode 0600) names
   the key that is active now, who started the rotation, and when;
2. **key ring saved**: a new active key, the previous one verify-only for `auth.rotation_grace`
   (one atomic write: both change together);
3. **token files re-issued**: every agent's, with the new key; then the folder is fsync'd;
4. **journal removed**: the rotation is complete.

Recovery (`core.auth.rotation.recover`, run at every start, by the running process's check
every minute, and by every rotation before its own) takes the same lock, so a journal it finds
belongs to a rotation whose process is gone (or that failed). If the key ring's active key is
still the one the journal names, step 2 never happened and nothing changed: the journal is
removed (rolled back). Otherwise step 3 is redone for every agent, which is idempotent (a
re-issued token is as good as the one before), and the journal removed (completed). A journal
that cannot be read is completed: re-issuing every token with the active key is always safe.

The last phase, the previous key going from verify-only to retired once its grace is over, is
guarded on its own: `core.auth.retirement.retire_expired` (under the same lock) first re-signs
every token file still signed by that key with the active key, and keeps verifying a key that a
file could not be moved off.

Invariant, whenever nobody holds the lock:
(a) a journal exists if a rotate-all may have saved its new key and not yet re-issued every
    token file since (the journal is written before the key ring and removed only once every
    token file is durable);
(b) no token file fleetbot wrote carries a valid signature of a retired key (a key is retired
    only under the lock, after every file signed by it has been re-signed with the active key,
    and only the active key signs new tokens).
Recovery under the lock discharges (a): afterwards every agent's token file is signed by the
active key, whichever step the rotation was killed after. (b) holds throughout, so no key that
a token file needs is ever retired.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from core.auth.secretfile import fsync_dir, write_secret

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotate-all that has begun and has not yet re-issued every token file."""

    old_kid: str  # the active key when it began; "" when the journal could not be read
    started_at: float
    actor: str


UNREADABLE = Rotation(old_kid="", started_at=0.0, actor="unknown")


def journal_path(keyring: Path) -> Path:
    return keyring.with_name(f".{keyring.name}.rotation")


def pending(keyring: Path) -> bool:
    """Whether a rotation's journal is there (one stat: cheap enough for every check)."""
    return journal_path(keyring).exists()


def begin(keyring: Path, rotation: Rotation) -> None:
    """Write the journal (before the key ring changes)."""
    doc = {
        "version": FORMAT_VERSION,
        "old_kid": rotation.old_kid,
        "started_at": rotation.started_at,
        "actor": rotation.actor,
    }
    write_secret(journal_path(keyring), json.dumps(doc) + "\n")
    fsync_dir(keyring.parent)


def read(keyring: Path) -> Rotation | None:
    """The journal's rotation, None without a journal, UNREADABLE for a damaged one."""
    path = journal_path(keyring)
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != FORMAT_VERSION:
            raise ValueError("unsupported version")
        old, started, actor = raw["old_kid"], raw["started_at"], raw["actor"]
        if not (
            isinstance(old, str) and isinstance(started, int | float) and isinstance(actor, str)
        ):
            raise TypeError
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("%s: cannot read the rotation journal; completing the rotation", path)
        return UNREADABLE
    return Rotation(old, float(started), actor)


def clear(keyring: Path) -> None:
    """Remove the journal (after every token file is durable)."""
    journal_path(keyring).unlink(missing_ok=True)
    fsync_dir(keyring.parent)
