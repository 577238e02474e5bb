"""Agent authentication against the store: token files, versions, per-run tokens.

core.auth.tokens proves what a token alone can prove; this module adds what needs the fleet's state:
the agent must still exist, the token must name its current token version (so one agent's token
can be revoked alone), and a run token may act only on its own run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from core.auth.keyring import KeyRing, keyring_problem
from core.auth.secretfile import locked, writable_by_others
from core.auth.tokens import Claims, TokenAuthority, read_token_file, token_path, write_token_file
from core.clock import Clock
from core.config import AuthConfig
from core.errors import KeyRingError, NotYourRun, TokenInvalid
from core.models import Agent, AuthReason

log = logging.getLogger(__name__)
T = TypeVar("T")

ROTATE_ONE = "`fleetbot tokens rotate --agent {a}` (or /rotate {a} in the chat)"
ROTATE_ALL = "`fleetbot tokens rotate` (or /rotate all in the chat)"
# Per reason: what it means (for the operator) and the fix. Reasons marked fleet-wide usually
# hit every agent at once, and one rotate-all fixes them all.
REASONS: dict[str, tuple[str, str]] = {
    AuthReason.MISSING_FILE: ("the agent has no token file", ROTATE_ONE),
    AuthReason.MALFORMED: ("the token is not a fleetbot token (edited or cut short)", ROTATE_ONE),
    AuthReason.BAD_SIGNATURE: (
        "signed with a secret the key ring does not hold (made outside fleetbot?)",
        ROTATE_ALL,
    ),
    AuthReason.UNKNOWN_KEY: (
        "signed by a key this key ring lacks or has retired (another key ring, or older "
        "than the rotation grace)",
        ROTATE_ALL,
    ),
    AuthReason.EXPIRED: ("older than auth.token_ttl", ROTATE_ONE),
    AuthReason.REVOKED: (
        "superseded: the agent was rotated or removed, or the file holds another agent's token",
        ROTATE_ONE,
    ),
    AuthReason.WRONG_AUDIENCE: (
        "issued for another issuer/audience (auth.issuer or auth.audience changed)",
        ROTATE_ALL,
    ),
    AuthReason.MISSING_TOKEN: (
        "the agent sent no token",
        "make its runtime send `Authorization: Bearer <contents of its token file>`",
    ),
}
FLEET_WIDE = frozenset(
    {AuthReason.BAD_SIGNATURE, AuthReason.UNKNOWN_KEY, AuthReason.WRONG_AUDIENCE}
)


def fix_for(code: str, agent_id: str) -> str:
    """The one thing to do about `code` for `agent_id`, as an operator reads it."""
    return REASONS.get(code, ("", ROTATE_ONE))[1].format(a=agent_id)


def token_dir_problem(folder: Path) -> str | None:
    """Why the token folder must not be used as it is, with the fix; None when fine (or when
    it does not exist yet: fleetbot creates it 0700).

    Anyone who may write in the folder can swap an agent's token file for another one, or
    for a link that makes fleetbot's next write land elsewhere.
    """
    try:
        loose = writable_by_others(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{folder}: cannot check the token folder ({exc.strerror or exc})."
    if loose:
        return (
            f"{folder}: the token folder is writable by other users; fix it with "
            f"`chmod 700 {folder}`."
        )
    return None


class KeyRingFile:
    """The key ring, re-read when its file changes.

    A rotation by `fleetbot tokens rotate` in another process must not leave this one verifying
    with stale keys: every access compares the file's identity (inode, mtime, size) with the
    one loaded, one `stat` call, and re-reads it when it changed. The ring in use is swapped
    whole, so a verification never sees half a rotation.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ring = KeyRing.load(path)
        self._stamp = self._stat()
        self.reload_error: str | None = None  # why the file on disk was not taken, if so

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @property
    def ring(self) -> KeyRing:
        try:
            stamp = self._stat()
        except OSError:
            return self._ring  # keep verifying with what we have; `check` reports the problem
        if stamp != self._stamp:
            try:
                ring = KeyRing.load(self.path)
            except KeyRingError as exc:
                # A broken file on disk must not take working keys away from a running fleet;
                # the next self-test (and `fleetbot check`) says what is wrong with it.
                if self.reload_error != exc.message:
                    log.error("kept the loaded key ring: %s", exc.message)
                self.reload_error = exc.message
                return self._ring
            self._ring, self._stamp, self.reload_error = ring, stamp, None
        return self._ring

    def problem(self) -> str | None:
        """Why the file on disk must not be used now (a link, too open, gone), with the fix.

        The loaded keys go on verifying meanwhile; `AgentAuth` signs nothing with them.
        """
        try:
            return keyring_problem(self.path)
        except FileNotFoundError:
            return (
                f"{self.path}: the key ring file is gone; restore it from a backup (the "
                "running process still verifies with the keys it loaded)."
            )
        except OSError as exc:
            return f"{self.path}: cannot check the key ring ({exc.strerror or exc})."

    def update(self, change: Callable[[KeyRing], T]) -> T:
        """Apply `change` to a fresh copy of the file under an exclusive lock, then swap it in.

        Re-reading under the lock means a rotation in another process is never overwritten
        with this process's older view of the keys.
        """
        with locked(self.path):
            return self.update_held(change)

    def update_held(self, change: Callable[[KeyRing], T]) -> T:
        """`update` for a caller that already holds the key ring's lock (a rotation holds it
        from start to end; taking it again here would wait for itself)."""
        ring = KeyRing.load(self.path)
        result = change(ring)
        self._ring, self._stamp, self.reload_error = ring, self._stat(), None
        return result


class AgentAuth:
    """Issues, files and checks agent tokens.

    Refuses to start on a token folder others may write in, and refuses to sign while the key
    ring file is a link or too open (verifying goes on, so the fleet keeps working while the
    operator fixes it).
    """

    def __init__(self, keyring: KeyRingFile, config: AuthConfig, clock: Clock) -> None:
        problem = token_dir_problem(config.token_dir)
        if problem is not None:
            raise KeyRingError(problem)
        self.keyring = keyring
        self.config = config
        self.clock = clock
        self._authority: TokenAuthority | None = None

    def problems(self) -> list[str]:
        """What is wrong with the key ring file and the token folder on disk now, each with
        its fix (re-checked while running: both were fine at start)."""
        found = [self.keyring.problem(), token_dir_problem(self.config.token_dir)]
        return [p for p in found if p is not None]

    @property
    def authority(self) -> TokenAuthority:
        ring = self.keyring.ring
        if self._authority is None or self._authority.keyring is not ring:
            self._authority = TokenAuthority(
                ring, issuer=self.config.issuer, audience=self.config.audience
            )
        return self._authority

    def check_can_sign(self) -> None:
        """Refuse (KeyRingError, with the fix) while the key ring file is a link or too open."""
        problem = self.keyring.problem()
        if problem is not None:
            raise KeyRingError(f"refused to sign a token: {problem}")

    @property
    def signing_authority(self) -> TokenAuthority:
        """`authority`, for signing: refused while the key ring file is a link or too open."""
        self.check_can_sign()
        return self.authority

    @property
    def token_dir(self) -> Path:
        return self.config.token_dir

    def token_file(self, agent_id: str) -> Path:
        return token_path(self.config.token_dir, agent_id)

    def issue(self, agent: Agent, *, fsync: bool = True) -> Path:
        """Write a fresh long-lived token for `agent` to its token file."""
        token = self.signing_authority.issue(agent, self.clock.now(), self.config.token_ttl)
        return write_token_file(self.config.token_dir, agent.id, token, fsync=fsync)

    def run_token(self, agent: Agent, run_id: str, deadline: float) -> str:
        """A short-lived token bound to one run: it dies a minute after the run's deadline."""
        now = self.clock.now()
        ttl = self.config.run_token_ttl or max(60.0, deadline - now + 60.0)
        return self.signing_authority.issue(agent, now, ttl, run_id=run_id)

    def verify(self, token: str) -> Claims:
        return self.authority.verify(token, self.clock.now())

    @staticmethod
    def check_current(claims: Claims, agent: Agent | None) -> None:
        """Refuse tokens of deleted agents and of superseded token versions."""
        if agent is None:
            raise TokenInvalid(
                f"the token belongs to agent {claims.sub!r}, which no longer exists",
                code=AuthReason.REVOKED.value,
            )
        if claims.tv != agent.token_version or claims.company != agent.company_id:
            raise TokenInvalid(
                f"the token of {agent.id} was revoked (token version {claims.tv}, current "
                f"{agent.token_version})",
                code=AuthReason.REVOKED.value,
            )

    @staticmethod
    def check_run(claims: Claims, run_agent_id: str, run_id: str) -> None:
        """A token may act on a run only if it belongs to the run's agent (and, for a run
        token, to that very run)."""
        if claims.sub != run_agent_id or (claims.run is not None and claims.run != run_id):
            raise NotYourRun(f"run {run_id} does not belong to agent {claims.sub}")

    def superseded_file(self, agent: Agent) -> bool:
        """True when the agent's token file holds its own long-lived token of an earlier token
        version: revoked by a rotation whose new file was never written, or by the agent
        leaving the config and coming back. Replacing such a file grants nothing the old
        token had lost."""
        try:
            claims = self.verify(read_token_file(self.config.token_dir, agent.id))
        except TokenInvalid:
            return False
        return claims.sub == agent.id and claims.run is None and claims.tv < agent.token_version

    def check_file(self, agent: Agent) -> TokenInvalid | None:
        """Why the agent's token file would be refused, or None when it verifies."""
        try:
            token = read_token_file(self.config.token_dir, agent.id)
            claims = self.verify(token)
            if claims.sub != agent.id:
                return TokenInvalid(
                    f"the token file of {agent.id} holds a token of {claims.sub}",
                    code=AuthReason.REVOKED.value,
                )
            if claims.run is not None:
                return TokenInvalid(
                    f"the token file of {agent.id} holds a per-run token, which dies with its run",
                    code=AuthReason.REVOKED.value,
                )
            self.check_current(claims, agent)
        except TokenInvalid as exc:
            return exc
        return None
