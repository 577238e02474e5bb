"""The `fleetbot` command: init, run, check, tokens, migrate, demo."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import TextIO, cast

from core import (
    AgentAuth,
    Config,
    EventBus,
    FleetbotError,
    FleetService,
    KeyRing,
    KeyRingFile,
    RuntimeReport,
    SystemClock,
    check_single_source,
    database_for,
    load_config,
)
from fleetbot.migrate import postgres_url


def version() -> str:
    """The installed distribution's version (the checkout's when run from it)."""
    try:
        return metadata.version("fleetbot")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


EXAMPLE = Path(__file__).with_name("config.example.yaml")
DEFAULT_CONFIG = "config.yaml"


def _config_path(arg: str | None, env: Mapping[str, str]) -> Path:
    return Path(arg or env.get("FLEETBOT_CONFIG") or DEFAULT_CONFIG)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"config file (default: $FLEETBOT_CONFIG or ./{DEFAULT_CONFIG})",
    )


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v", "--verbose", action="store_true", help="one line per agent, not just failures"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetbot",
        description="The operations desk for a team of AI agents, run from a phone.",
    )
    parser.add_argument("--version", action="version", version=f"fleetbot {version()}")
    sub = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    sub.required = True

    p = sub.add_parser("init", help="write config.yaml, the key ring and a token per agent")
    p.add_argument("dir", nargs="?", default=".", help="folder to set up (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config.yaml")

    p = sub.add_parser("run", help="run the bot, the core and the agent API until SIGINT/SIGTERM")
    _add_config(p)
    p.add_argument("--no-bot", action="store_true", help="run the core and the API only")

    p = sub.add_parser(
        "check", help="validate the config and self-test every agent's token and runtime"
    )
    _add_config(p)
    _add_verbose(p)

    p = sub.add_parser("tokens", help="rotate or verify agent tokens")
    tsub = _Commands(p.add_subparsers(dest="tokens_command", metavar="ACTION"))
    tsub.required = True
    r = tsub.add_parser("rotate", help="new signing key and tokens for all (or one) agent")
    _add_config(r)
    _add_verbose(r)
    r.add_argument("--agent", metavar="ID", help="rotate only this agent's token (revokes it)")
    v = tsub.add_parser("verify", help="self-test every agent's token file")
    _add_config(v)
    _add_verbose(v)
    j = tsub.add_parser("jwks", help="print the public keys (EdDSA) for services that verify")
    _add_config(j)

    p = sub.add_parser("migrate", help="copy the SQLite store into an empty PostgreSQL database")
    to = "the database: postgresql://user@host:5432/db, no password in it"
    p.add_argument("--to", required=True, type=postgres_url, metavar="URL", help=to)
    password = p.add_mutually_exclusive_group()
    password.add_argument("--password-env", metavar="VAR", help="env var with its password")
    password.add_argument(
        "--password-file", metavar="PATH", help="file with it (default: PGPASSWORD, ~/.pgpass)"
    )
    p.add_argument("--replace", action="store_true", help="delete what it holds (default: refuse)")
    _add_config(p)

    p = sub.add_parser("demo", help="offline: a simulated fleet and a chat you can type into")
    p.add_argument("--db", metavar="FILE", help="keep the demo database here (default: temp)")
    # Listed for --help only: main() hands `agent …` to fleetbot.agent before parsing.
    sub.add_parser("agent", help="the agent's side of the API: `fleetbot agent --help`")
    return parser


class _Commands:
    """A subparsers action whose commands' `--help` starts with what the command does: the
    same sentence as its line in the parent's list (argparse leaves it out otherwise)."""

    def __init__(self, action: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._action = action

    @property
    def required(self) -> bool:
        return self._action.required

    @required.setter
    def required(self, value: bool) -> None:
        self._action.required = value

    def add_parser(self, name: str, *, help: str) -> argparse.ArgumentParser:
        about = help[0].upper() + help[1:] + "."
        return self._action.add_parser(name, help=help, description=about)


# Core errors end with the chat command that helps ("; /agents lists them"); at the terminal
# the CLI names its own command instead, or nothing when the chat's has no CLI twin.
_CHAT_HINT = re.compile(r";\s*/(\w+)\b[^;]*$")
_CLI_TWIN = {"agents": "`fleetbot check -v` lists them", "authcheck": "`fleetbot tokens verify`"}


def cli_message(message: str) -> str:
    """`message` with a trailing chat-command hint swapped for the CLI's own (or dropped)."""
    found = _CHAT_HINT.search(message)
    if found is None:
        return message
    twin = _CLI_TWIN.get(found[1])
    return message[: found.start()] + (f"; {twin}" if twin else "")


class _Stdout(io.TextIOBase):
    """Standard output that outlives its reader: when the pipe closes (`fleetbot init |
    head -1`) the rest of the report goes to /dev/null and the command finishes its work,
    instead of stopping half done with a BrokenPipeError traceback."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        # Also quiets the flush Python does at exit, which would print the error again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """The `fleetbot` command: its exit status."""
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["agent"]:  # the console script (fleetbot.agent.launch) got here first
        from fleetbot.agent.cli import main as agent_main

        return agent_main(given[1:])
    stdout = sys.stdout
    sys.stdout = cast(TextIO, _Stdout(stdout))
    try:
        status = _main(argv)
        sys.stdout.flush()
        return status
    finally:
        sys.stdout = stdout


def _main(argv: Sequence[str] | None = None) -> int:
    from bot import logs

    args = build_parser().parse_args(argv)
    env = dict(os.environ)
    # One-shot commands print their own report; the log only adds warnings to it.
    quiet = args.command in ("demo", "init", "check", "tokens", "migrate")
    logs.setup(env.get("FLEETBOT_LOG_LEVEL", "WARNING" if quiet else "INFO"))
    try:
        if args.command == "init":
            return cmd_init(Path(args.dir), force=args.force, env=env)
        if args.command == "check":
            return asyncio.run(cmd_check(_load(args.config, env), env, verbose=args.verbose))
        if args.command == "tokens":
            config = _load(args.config, env)
            if args.tokens_command == "verify":
                return asyncio.run(cmd_check(config, env, verbose=args.verbose, runtimes=False))
            if args.tokens_command == "jwks":
                return asyncio.run(cmd_jwks(config, env))
            return asyncio.run(cmd_rotate(config, env, args.agent, verbose=args.verbose))
        if args.command == "run":
            config = _load(args.config, env)
            with asyncio.Runner(loop_factory=event_loop_factory(env)) as runner:
                return runner.run(cmd_run(config, env, with_bot=not args.no_bot))
        if args.command == "migrate":
            from fleetbot.migrate import cmd_migrate

            config, path = _load(args.config, env), _config_path(args.config, env)
            secret = {"password_env": args.password_env, "password_file": args.password_file}
            how = {"to": args.to, "replace": args.replace, "program": _program(), **secret}
            return cmd_migrate(config, env, path, **how)
        if args.command == "demo":
            from fleetbot.demo import run_demo

            db = Path(args.db).resolve() if args.db else None
            return asyncio.run(run_demo(db_path=db))
    except FleetbotError as exc:
        print(f"fleetbot: {cli_message(exc.message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def event_loop_factory(
    env: Mapping[str, str] | None = None,
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (a tenth more API requests per second on one core,
    bench/api_load.py), else asyncio's; FLEETBOT_EVENT_LOOP=asyncio forces asyncio's."""
    if (env or {}).get("FLEETBOT_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _load(path: str | None, env: Mapping[str, str]) -> Config:
    return load_config(_config_path(path, env), env)


def cmd_init(folder: Path, *, force: bool, env: Mapping[str, str]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / DEFAULT_CONFIG
    if target.exists() and not force:
        print(f"kept {target} (exists; --force overwrites it)")
    else:
        shutil.copyfile(EXAMPLE, target)
        print(f"wrote {target}")
    config = load_config(target, env)
    check_single_source(config.auth.keyring, env, token_dir=config.auth.token_dir)
    if config.auth.keyring.exists():
        KeyRing.load(config.auth.keyring)
        print(f"kept {config.auth.keyring} (exists)")
    else:
        KeyRing.create(config.auth.keyring, SystemClock().now(), config.auth.algorithm)
        print(f"wrote {config.auth.keyring} (mode 0600)")
    config.auth.token_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ok = asyncio.run(_init_tokens(config, env))
    print(next_steps(target, config))
    return 0 if ok else 1


def _program() -> str:
    """How to call fleetbot again from this shell: `fleetbot` when that is on PATH and is this
    program, else the path it was started by (`.venv/bin/fleetbot` before activating)."""
    started = Path(sys.argv[0])
    if started.name != "fleetbot":
        return "fleetbot"
    on_path = shutil.which("fleetbot")
    if on_path is not None and Path(on_path).resolve() == started.resolve():
        return "fleetbot"
    return shlex.quote(str(started))


def next_steps(target: Path, config: Config) -> str:
    """What to type after `fleetbot init`, each line working as copied into this shell."""
    prog, cfg = _program(), shlex.quote(str(target))
    tg = config.telegram
    if tg.token_file is not None:
        token = [f"  put the token from @BotFather in {tg.token_file}"]
    else:
        var = tg.token_env
        # `read` keeps the token off the screen and out of the shell's history.
        token = [
            f"  read -rs {var} && export {var}",
            "(the first line waits for the bot token from @BotFather: paste it, press Enter)",
        ]
    return "\n".join(
        [
            "",
            "Next, in this shell:",
            token[0],
            f"  {prog} check -c {cfg}",
            f"  {prog} run -c {cfg}",
            *token[1:],
            f"Then send /whoami to your bot, put the id it answers under telegram.owners in "
            f"{target} and start `{prog} run -c {cfg}` again. No token yet? Try `{prog} demo`.",
        ]
    )


@asynccontextmanager
async def _auth_desk(
    config: Config, env: Mapping[str, str]
) -> AsyncIterator[tuple[FleetService, AgentAuth]]:
    """What init, check and tokens need: the store, the key ring and the service. No
    scheduler and no API, so running them next to `fleetbot run` never touches its runs."""
    check_single_source(config.auth.keyring, env, token_dir=config.auth.token_dir)
    clock = SystemClock()
    auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
    async with database_for(config.storage, env) as db:
        service = FleetService(db, config, clock, EventBus(), token_check=auth.check_file)
        await service.sync_config()
        yield service, auth


async def _init_tokens(config: Config, env: Mapping[str, str]) -> bool:
    from core import issue_missing, self_test_async

    async with _auth_desk(config, env) as (service, auth):
        agents = await service.agents()
        written = await issue_missing(auth, agents)
        report = await self_test_async(auth, agents)
    print(
        f"tokens: wrote {len(written)}, kept {len(agents) - len(written)}, "
        f"in {config.auth.token_dir}"
    )
    print("\n".join(report.lines()))
    return report.ok


async def cmd_check(
    config: Config, env: Mapping[str, str], *, verbose: bool = False, runtimes: bool = True
) -> int:
    """Config, key ring, every agent's token file and (unless `runtimes` is off, as for
    `tokens verify`) every agent's runtime; exit 0 only if every agent passes."""
    from core import self_test_async, self_test_runtimes

    count = sum(len(c.agents) for c in config.companies)
    print(f"config ok: {len(config.companies)} companies, {count} agents")
    async with _auth_desk(config, env) as (service, auth):
        ring = auth.keyring.ring
        now = service.clock.now()
        grace = [k for k in ring.verifying(now) if k is not ring.active]
        extra = "".join(
            f"; {k.kid} verifies until {_when(k.verify_until)}"
            for k in grace
            if k.verify_until is not None
        )
        active = ring.active
        print(f"key ring ok: {config.auth.keyring} (active key {active.kid}, {active.alg}{extra})")
        if ring.active.alg != config.auth.algorithm:
            print(
                f"note: auth.algorithm is {config.auth.algorithm} but the active key is "
                f"{ring.active.alg}; `fleetbot tokens rotate` switches to {config.auth.algorithm}"
            )
        agents = await service.agents()
        report = await self_test_async(auth, agents)
        print("\n".join(report.lines(verbose=verbose)))
        reached = await self_test_runtimes(service, env, agents) if runtimes else RuntimeReport()
    if runtimes:
        print("\n".join(reached.lines(verbose=verbose)))
        for warning in check_warnings(config, env):
            print(f"warning: {warning}")
    return 0 if report.ok and reached.ok else 1


def check_warnings(config: Config, env: Mapping[str, str]) -> list[str]:
    """What `fleetbot check` passes but `fleetbot run` would trip over: a bot nobody may use,
    a missing bot token, agents whose runtime lacks its secret. Warnings, not failures: the
    exit status stays the checks' own."""
    tg = config.telegram
    out = []
    if not tg.owners and not tg.operators:
        who = "only viewers can read" if tg.viewers else "nobody can use it"
        out.append(
            f"telegram.owners and telegram.operators are empty, so the bot answers but "
            f"{who}; run it, send it /whoami and put the id it answers under telegram.owners"
        )
    if tg.token_ref().resolve(env) is None:
        where = tg.token_ref().describe()
        out.append(
            f"no Telegram bot token in {where}; `fleetbot run` needs it (get one from "
            "@BotFather), `fleetbot run --no-bot` does not"
        )
    missing: dict[str, list[str]] = {}
    for company in config.companies:
        for agent in company.agents:
            for ref in agent.runtime.secret_refs():
                if ref.resolve(env) is None:
                    missing.setdefault(ref.describe(), []).append(agent.id)
    for where, agents in missing.items():
        noun = "agent" if len(agents) == 1 else "agents"
        out.append(
            f"{where} is not set, and the runtime of {noun} {', '.join(agents)} needs it "
            "(runtime_secret_missing): no run can reach them until it is set where "
            "`fleetbot run` runs"
        )
    return out


def _when(ts: float) -> str:
    from core import utc

    return utc(ts).strftime("%Y-%m-%d %H:%M UTC")


async def cmd_rotate(
    config: Config, env: Mapping[str, str], agent_id: str | None, *, verbose: bool = False
) -> int:
    from core import rotate_agent, rotate_all

    async with _auth_desk(config, env) as (service, auth):
        if agent_id:
            check = await rotate_agent(auth, service, agent_id, "cli")
            if check.ok:
                path = auth.token_file(check.agent_id)
                print(f"{check.agent_id}: new token written to {path}; the old one is revoked")
                return 0
            print(check.line().strip())
            return 1
        report = await rotate_all(auth, service, "cli")
    grace = config.auth.rotation_grace
    print(f"new active key {report.kid}; the previous key verifies for {grace:.0f}s more")
    print("\n".join(report.lines(verbose=verbose)))
    return 0 if report.ok else 1


async def cmd_jwks(config: Config, env: Mapping[str, str]) -> int:
    """The public keys of the verifying EdDSA keys, for services that check agent tokens."""
    check_single_source(config.auth.keyring, env, token_dir=config.auth.token_dir)
    ring = KeyRingFile(config.auth.keyring).ring
    jwks = ring.public_jwks(SystemClock().now())
    if not jwks["keys"]:
        print(
            "fleetbot: the key ring holds no EdDSA key; HS256 keys are shared secrets with no "
            "public half. Set auth.algorithm: EdDSA and run `fleetbot tokens rotate` first.",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(jwks, indent=2))
    return 0


async def cmd_run(config: Config, env: Mapping[str, str], *, with_bot: bool) -> int:
    import logging

    from core import Fleet

    log = logging.getLogger("fleetbot")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Fleet(config, env) as fleet:
        if with_bot:
            from bot.runner import BotRunner

            async with BotRunner(fleet, env):
                log.info(
                    "fleetbot running: API at %s, bot (%s)", fleet.api_url, config.telegram.mode
                )
                await stop.wait()
        else:
            log.info("fleetbot running without the bot: API at %s", fleet.api_url)
            await stop.wait()
    log.info("fleetbot stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
