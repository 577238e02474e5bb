"""Agent authentication against the store: token files, versions, per-run tokens.

core.tokens proves what a token alone can prove; this module adds what needs the fleet's state:
the agent must still exist, the token must name its current token version (so one agent's token
can be revoked alone), and a run token may act only on its own run.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.clock import Clock
from core.config import AuthConfig
from core.errors import KeyRingError, NotYourRun, TokenInvalid
from core.keyring import KeyRing
from core.models import Agent, AuthReason
from core.tokens import Claims, TokenAuthority, read_token_file, token_path, write_token_file


class KeyRingFile:
    """The key ring, re-read when its file changes (a rotation by `fleetbot tokens rotate`
    in another process must not leave this one verifying with stale keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ring = KeyRing.load(path)
        self._stamp = self._stat()

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
                self._ring = KeyRing.load(self.path)
            except KeyRingError:
                return self._ring
            self._stamp = stamp
        return self._ring

    def saved(self) -> None:
        """Call after changing `ring` in this process, so it isn't re-read needlessly."""
        self._stamp = self._stat()


class AgentAuth:
    """Issues, files and checks agent tokens."""

    def __init__(self, keyring: KeyRingFile, config: AuthConfig, clock: Clock) -> None:
        self.keyring = keyring
        self.config = config
        self.clock = clock

    @property
    def authority(self) -> TokenAuthority:
        return TokenAuthority(
            self.keyring.ring, issuer=self.config.issuer, audience=self.config.audience
        )

    @property
    def token_dir(self) -> Path:
        return self.config.token_dir

    def token_file(self, agent_id: str) -> Path:
        return token_path(self.config.token_dir, agent_id)

    def issue(self, agent: Agent, *, fsync: bool = True) -> Path:
        """Write a fresh long-lived token for `agent` to its token file."""
        token = self.authority.issue(agent, self.clock.now(), self.config.token_ttl)
        return write_token_file(self.config.token_dir, agent.id, token, fsync=fsync)

    def run_token(self, agent: Agent, run_id: str, deadline: float) -> str:
        """A short-lived token bound to one run: it dies a minute after the run's deadline."""
        now = self.clock.now()
        ttl = self.config.run_token_ttl or max(60.0, deadline - now + 60.0)
        return self.authority.issue(agent, now, ttl, run_id=run_id)

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
                f"{agent.token_version}); use the token in its token file",
                code=AuthReason.REVOKED.value,
            )

    @staticmethod
    def check_run(claims: Claims, run_agent_id: str, run_id: str) -> None:
        """A token may act on a run only if it belongs to the run's agent (and, for a run
        token, to that very run)."""
        if claims.sub != run_agent_id or (claims.run is not None and claims.run != run_id):
            raise NotYourRun(f"run {run_id} does not belong to agent {claims.sub}")

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
            self.check_current(claims, agent)
        except TokenInvalid as exc:
            return exc
        return None
