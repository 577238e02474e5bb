"""The `process` runtime: run a command per dispatch and see it through, bounded by the deadline.

No shell is involved: `command` is an argv list. The child gets a minimal environment (PATH, HOME
and LANG from fleetbot's env, then the runtime's `env`, then FLEETBOT_*), runs in a session of its
own so the whole process group can be signalled, and has its output drained concurrently into
small tail buffers so a chatty child never blocks on a full pipe.

The run token reaches the child as FLEETBOT_TOKEN, valid for this run only; the child is never told
where a long-lived token lives. Exit 0 ends the run well: if the agent did not call `finish`, its
last lines of stdout are the summary and the work goes to review. Any other exit fails the run.

`command` may carry placeholders ({prompt}, {issue_id}, …), and a preset (core.runtimes.presets)
supplies the whole command for a coding-agent CLI and reads its machine-readable output as it
comes, for the reply, the usage and the session id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from core.config import ProcessRuntime
from core.errors import AgentFailure, AgentTimeout, ProcessFailed
from core.runtimes import presets
from core.runtimes.base import Dispatch, DispatchResult, Probe, Runtime, read_secret
from core.runtimes.presets import MAX_LINE, OutputParser, Report

TAIL_BYTES = 4096
LINE_CHARS = 200
SUMMARY_CHARS = 500
EXITED = "the process exited 0 without calling finish; its last output is the summary"
MISSING = "runtime_missing"
_BASE_ENV = ("PATH", "HOME", "LANG")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class _Tail:
    """The last TAIL_BYTES of a stream, and whether anything before them was dropped."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > TAIL_BYTES:
            del self.data[:-TAIL_BYTES]
            self.dropped = True

    def lines(self, secret: str) -> list[str]:
        """The non-empty lines, printable, with `secret` redacted."""
        lines = self.data.decode("utf-8", "replace").splitlines()
        if self.dropped and len(lines) > 1:
            lines = lines[1:]  # cut short, it might start with the second half of a split secret
        if secret:
            lines = [line.replace(secret, "[redacted]") for line in lines]
        lines = [" ".join(_UNPRINTABLE.sub(" ", line).split()) for line in lines]
        return [line for line in lines if line]

    def last_line(self, secret: str) -> str:
        """The last non-empty line, printable, ≤ 200 chars, with `secret` redacted."""
        return self.last_lines(secret, LINE_CHARS, 1)

    def last_lines(self, secret: str, limit: int, most: int | None = None) -> str:
        """The last non-empty lines (at most `most`) that fit in `limit` chars, redacted."""
        lines = self.lines(secret)
        picked: list[str] = []
        size = 0
        for line in reversed(lines[-most:] if most else lines):
            size += len(line) + (1 if picked else 0)
            if size > limit:
                if not picked:
                    # Keep the end: a lone line longer than the tail was cut at its start.
                    picked.append("…" + line[-(limit - 1) :])
                break
            picked.append(line)
        return "\n".join(reversed(picked))


class _Lines:
    """Hands each complete line of a stream to a preset's parser; overlong lines are skipped."""

    def __init__(self, parser: OutputParser) -> None:
        self.parser = parser
        self._part = bytearray()
        self._skipping = False

    def add(self, chunk: bytes) -> None:
        *done, rest = chunk.split(b"\n")
        for piece in done:
            if not self._skipping and len(self._part) + len(piece) <= MAX_LINE:
                self.parser.feed((self._part + piece).decode("utf-8", "replace"))
            self._part.clear()
            self._skipping = False
        self._part += rest
        if len(self._part) > MAX_LINE:
            self._part.clear()
            self._skipping = True

    def close(self) -> Report:
        self.add(b"\n")  # a last line without a newline
        return self.parser.report()


async def _drain(stream: asyncio.StreamReader | None, tail: _Tail, lines: _Lines | None) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        tail.add(chunk)
        if lines is not None:
            lines.add(chunk)


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # start_new_session=True made the child a group leader, so its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(proc.pid, sig)


class ProcessAgentRuntime(Runtime):
    """Runs `command` once per dispatch; exit 0 ends the run well, anything else fails it."""

    kind = "process"

    def __init__(
        self,
        config: ProcessRuntime,
        env: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._env = env
        self._clock = clock
        self._preset = presets.preset_of(config)
        self._template = presets.command_template(config)
        self._name = self._template[0]
        self._live: set[asyncio.subprocess.Process] = set()

    def argv(self, job: Dispatch) -> list[str]:
        """The command for `job`, its placeholders filled."""
        return presets.fill(self._template, presets.placeholder_values(job, self._template))

    def child_env(self, job: Dispatch) -> dict[str, str]:
        """The child's whole environment: nothing else of fleetbot's leaks into it. Raises
        AgentFailure naming the place when a secret of `secret_env` is missing."""
        env = {key: self._env[key] for key in _BASE_ENV if key in self._env}
        if self._preset is not None:
            env.update(self._preset.env)
        env.update(self._config.env)
        env["PATH"] = self._child_path()
        for name, ref in self._config.secret_env.items():
            env[name] = read_secret(ref, self._env, f"{name} for process {self._name}")
        env.update(
            FLEETBOT_API_URL=job.api_url,
            FLEETBOT_RUN_ID=job.run_id,
            FLEETBOT_AGENT_ID=job.agent_id,
            FLEETBOT_ISSUE_ID=job.issue_id,
            FLEETBOT_TOKEN=job.token,
            FLEETBOT_MODEL=job.model,
            FLEETBOT_MAX_TURNS=str(job.max_turns),
            FLEETBOT_DEADLINE=str(job.deadline),
            FLEETBOT_WAKE_REASON=job.wake_reason,
            FLEETBOT_WAKE_NOTE=job.wake_note,
        )
        return env

    def _child_path(self) -> str:
        """The child's PATH. A preset's agent must find `fleetbot` to report back, so the folder
        of the fleetbot that runs this (a virtualenv's bin) goes first when it is there."""
        path = self._config.env.get("PATH", self._env.get("PATH", os.defpath))
        if self._preset is None:
            return path
        here = Path(sys.executable).parent
        if not (here / presets.AGENT_COMMAND).is_file() or str(here) in path.split(os.pathsep):
            return path
        return os.pathsep.join([str(here), path]) if path else str(here)

    def executable(self) -> Path | None:
        """Where `command[0]` resolves for the child, as exec will find it; None if nowhere."""
        given = self._given()
        if given is not None:
            return given if given.is_file() and os.access(given, os.X_OK) else None
        found = shutil.which(self._name, path=self._child_path())
        return Path(found) if found is not None else None

    def _given(self) -> Path | None:
        """`command[0]` as a path, if it is one (exec resolves a relative one inside cwd)."""
        if os.sep not in self._name:
            return None
        path = Path(self._name)
        cwd = self._config.cwd
        return cwd / path if not path.is_absolute() and cwd is not None else path

    async def probe(self, agent_id: str) -> Probe:
        """The command resolves to an executable file and its working directory exists."""
        return self._check()

    def _check(self) -> Probe:
        target = f"the command {self._name}"
        cwd = self._config.cwd
        if cwd is not None and not cwd.is_dir():
            return Probe(
                ok=False,
                target=target,
                problem=f"its working directory {cwd} does not exist",
                fix="Create it, or fix `cwd` in the agent's runtime config.",
                code=MISSING,
            )
        if self.executable() is not None:
            missing = self._missing_needs()
            if missing is not None:
                return missing
            return Probe(ok=True, target=target)
        given = self._given()
        if given is not None and given.is_file():
            problem, fix = (
                f"{self._name} is not executable",
                "Run `chmod +x` on it, or check the permissions of the folders on its path.",
            )
        else:
            where = "" if given is not None else " on the PATH the process gets"
            problem, fix = (
                f"{self._name} was not found{where}",
                "Install it, or give its full path as the first item of `command` in the "
                "agent's runtime config.",
            )
        return Probe(ok=False, target=target, problem=problem, fix=fix, code=MISSING)

    def _missing_needs(self) -> Probe | None:
        """A failed probe if a preset's agent would not find what it reports back with."""
        if self._preset is None:
            return None
        for needed in self._preset.needs:
            if shutil.which(needed, path=self._child_path()) is None:
                return Probe(
                    ok=False,
                    target=f"the command {self._name}",
                    problem=f"{needed} is not on the PATH the {self._preset.name} agent gets, so "
                    "it cannot report back",
                    fix=f"Install fleetbot where the agent runs, or put the folder {needed} is in "
                    "first on `env: {PATH: …}` in the agent's runtime config.",
                    code=MISSING,
                )
        return None

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        """Run the command until it exits or the deadline; raise on anything but exit 0."""
        self._check_open()
        left = job.deadline - self._clock()
        if left <= 0:
            raise AgentTimeout(
                f"run {job.run_id} reached its deadline before process {self._name} started; "
                "check the run timeout and whether dispatches are queueing up."
            )
        argv = self.argv(job)
        proc = await self._spawn(job, argv)
        self._live.add(proc)
        out, err = _Tail(), _Tail()
        lines = _Lines(self._preset.parser(argv)) if self._preset is not None else None
        drains = [
            asyncio.create_task(_drain(proc.stdout, out, lines)),
            asyncio.create_task(_drain(proc.stderr, err, None)),
        ]
        try:
            try:
                # On 3.11 wait() also waits for the pipes to close, i.e. for the whole group.
                await asyncio.wait_for(proc.wait(), left)
            except TimeoutError:
                if proc.returncode is None:
                    killed = await self._stop(proc)
                    grace = self._config.kill_grace
                    stopped = f", then SIGKILL after {grace:g} s" if killed else " and it stopped"
                    last = err.last_line(job.token)
                    raise AgentTimeout(
                        f"process {self._name} was still running at its deadline; sent SIGTERM"
                        f"{stopped}{f' (last stderr: {last})' if last else ''}; "
                        "raise the run timeout or make the agent finish sooner."
                    ) from None
                # The child exited, but something it left in its group still holds the pipes.
                await self._stop(proc)
        except asyncio.CancelledError:
            await self._stop(proc)
            raise
        finally:
            self._live.discard(proc)
            await _settle(drains)
        report = lines.close() if lines is not None else Report()
        return self._verdict(proc, out, err, job, report)

    def _verdict(
        self,
        proc: asyncio.subprocess.Process,
        out: _Tail,
        err: _Tail,
        job: Dispatch,
        report: Report,
    ) -> DispatchResult:
        code = proc.returncode
        if code == 0:
            said = _clean(report.summary, job.token)
            return DispatchResult(
                finished=True,
                summary=_cut(said) if said else out.last_lines(job.token, SUMMARY_CHARS),
                usage=report.usage,
                external_id=report.external_id,
                reason=EXITED,
                reason_code="exited",
            )
        if self.closed:
            raise AgentFailure(
                f"process {self._name} was stopped because fleetbot is shutting down."
            )
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        last = (
            _cut(_clean(report.error, job.token, one_line=True), LINE_CHARS)
            or err.last_line(job.token)
            or "(nothing on stderr)"
        )
        raise ProcessFailed(f"process {self._name} {how}: {last}")

    async def _spawn(self, job: Dispatch, argv: list[str]) -> asyncio.subprocess.Process:
        cwd = self._config.cwd
        if cwd is not None and not cwd.is_dir():
            raise ProcessFailed(
                f"process {self._name} cannot start: its working directory {cwd} does not exist; "
                "create it or fix `cwd` in the agent's runtime config."
            )
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env=self.child_env(job),
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise ProcessFailed(
                f"command {self._name} was not found; install it, or give its full path as the "
                "first item of `command` in the agent's runtime config."
            ) from exc
        except PermissionError as exc:
            raise ProcessFailed(
                f"command {self._name} is not executable; run `chmod +x` on it or check the "
                "permissions of the folders on its path."
            ) from exc
        except OSError as exc:
            raise ProcessFailed(
                f"command {self._name} could not start ({exc.strerror or exc}); check that it is "
                "a program for this machine."
            ) from exc

    async def _stop(self, proc: asyncio.subprocess.Process) -> bool:
        """SIGTERM the group, allow kill_grace, then SIGKILL it; True if it outlived the grace."""
        _signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._config.kill_grace)
            outlived = False
        except TimeoutError:
            outlived = True
        finally:
            # Always, even when cancelled again: stragglers in the group must not outlive the run.
            _signal_group(proc, signal.SIGKILL)
        # A descendant that left the group may still hold the pipes; there is nothing to signal.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), max(self._config.kill_grace, 1.0))
        return outlived

    async def _close(self) -> None:
        """Stop every child still running."""
        await asyncio.gather(*(self._stop(proc) for proc in list(self._live)))


def _clean(text: str, secret: str, *, one_line: bool = False) -> str:
    """`text`'s non-empty lines, printable, `secret` redacted (joined by spaces if one_line)."""
    if secret:
        text = text.replace(secret, "[redacted]")
    lines = [" ".join(_UNPRINTABLE.sub(" ", line).split()) for line in text.splitlines()]
    return (" " if one_line else "\n").join(line for line in lines if line)


def _cut(text: str, limit: int = SUMMARY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _settle(drains: list[asyncio.Task[None]]) -> None:
    """Let the drains read to EOF briefly, then cancel any a straggler keeps open."""
    _done, pending = await asyncio.wait(drains, timeout=1.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
