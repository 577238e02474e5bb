"""Retiring keys: a verify-only key is retired only when no token file is signed by it.

A key past its rotation grace verifies nothing; retiring it only makes that final. What must
never happen is that a token file is still signed by it then: an agent holding that file is
locked out, and when a rotation was interrupted that is every agent at once. So the running
process's check, shortly before a key's grace ends, re-signs every token file still signed by
it with the active key (claims unchanged: the new token grants exactly what the old one did),
and retires the key only when none is left; a key that a file cannot be moved off (a folder
that cannot be written) keeps verifying, and the log says which file and why. All of it under
the key ring's lock, the one every rotation holds throughout (core.auth.rotation_journal).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection

from core.auth.agent_auth import AgentAuth
from core.auth.keyring import Key, KeyRing, KeyState
from core.auth.secretfile import fsync_dir, locked, write_secret
from core.auth.tokens import TokenAuthority

log = logging.getLogger(__name__)

# Token files still signed by a verify-only key are moved off it this long before its grace
# ends (two of the running process's checks), so they never sit on an expired key.
RESIGN_AHEAD = 120.0
LOG_FILES = 50  # files named in one log line


def due_keys(ring: KeyRing, now: float, ahead: float = RESIGN_AHEAD) -> list[Key]:
    """Verify-only keys whose grace ends within `ahead` seconds (or has ended)."""
    return [
        k
        for k in ring.keys
        if k.state is KeyState.VERIFY_ONLY
        and k.verify_until is not None
        and k.verify_until <= now + ahead
    ]


def retire_expired(auth: AgentAuth, now: float, *, ahead: float = RESIGN_AHEAD) -> list[str]:
    """Retire verify-only keys past their grace that no token file is signed by.

    A token file still signed by a key whose grace ends within `ahead` seconds (a rotation
    that never got to it, a key ring rotated by hand) is first re-signed with the active key,
    its claims unchanged. A key that a file could not be moved off is kept verifying until
    `now + ahead`, and the log names the file and why. Locks and writes only when a key is
    due; blocks on the key ring's lock, so the running process calls it in a worker thread.
    """
    if not due_keys(auth.keyring.ring, now, ahead):
        return []
    with locked(auth.keyring.path):
        ring = auth.keyring.update_held(lambda ring: ring)  # fresh from disk
        due = {k.kid for k in due_keys(ring, now, ahead)}
        if not due:
            return []
        stuck = _resign_files(auth, ring, due)

        def settle(ring: KeyRing) -> list[str]:
            for kid in stuck:
                ring.hold(kid, now + ahead)
            return ring.retire_expired(now, keep=stuck)

        retired = auth.keyring.update_held(settle)
    for kid, files in sorted(stuck.items()):
        log.error(
            "kept key %s verifying: %d token file(s) signed by it could not be rewritten with "
            "the active key (%s). Fix the token folder; the key is retired once they are.",
            kid,
            len(files),
            "; ".join(files[:LOG_FILES]),
        )
    return retired


def _resign_files(auth: AgentAuth, ring: KeyRing, kids: Collection[str]) -> dict[str, list[str]]:
    """Re-sign every token file signed by one of `kids` with the active key; by kid, the files
    that could not be rewritten. A file that no such key signed (forged, foreign, unreadable)
    is left as it is: it needs none of them, and the self-test reports it."""
    authority = TokenAuthority(ring, issuer=auth.config.issuer, audience=auth.config.audience)
    moved: Counter[str] = Counter()
    stuck: dict[str, list[str]] = {}
    for path in sorted(auth.token_dir.glob("*.jwt")):
        try:
            found = authority.resign(path.read_text().strip(), kids)
        except OSError:
            continue
        if found is None:
            continue
        kid, token = found
        try:
            write_secret(path, token + "\n", fsync=False)
        except OSError as exc:
            stuck.setdefault(kid, []).append(f"{path.name}: {exc.strerror or exc}")
        else:
            moved[kid] += 1
    if moved:
        fsync_dir(auth.token_dir)
    for kid, count in sorted(moved.items()):
        log.warning(
            "re-signed %d token file(s) still signed by key %s with the active key %s before "
            "its grace ends (a rotation had not rewritten them)",
            count,
            kid,
            ring.active.kid,
        )
    return stuck
