"""The `fleetbot` command: init, run, check, tokens, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path

from core import (
    AgentAuth,
    Config,
    Database,
    EventBus,
    FleetbotError,
    FleetService,
    KeyRing,
    KeyRingFile,
    SystemClock,
    check_single_source,
    load_config,
)


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    tsub = p.add_subparsers(dest="tokens_command", metavar="ACTION")
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

    p = sub.add_parser("demo", help="offline: a simulated fleet and a chat you can type into")
    p.add_argument("--db", metavar="FILE", help="keep the demo database here (default: temp)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from bot import logs

    args = build_parser().parse_args(argv)
    env = dict(os.environ)
    # One-shot commands print their own report; the log only adds warnings to it.
    quiet = args.command in ("demo", "init", "check", "tokens")
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
        if args.command == "demo":
            from fleetbot.demo import run_demo

            db = Path(args.db).resolve() if args.db else None
            return asyncio.run(run_demo(db_path=db))
    except FleetbotError as exc:
        print(f"fleetbot: {exc.message}", file=sys.stderr)
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
    print(
        "\nNext: put your Telegram user id in telegram.owners, export "
        f"{config.telegram.token_env}=<token from @BotFather>, then `fleetbot check` and "
        "`fleetbot run`. No token yet? Try `fleetbot demo`."
    )
    return 0 if ok else 1


@asynccontextmanager
async def _auth_desk(
    config: Config, env: Mapping[str, str]
) -> AsyncIterator[tuple[FleetService, AgentAuth]]:
    """What init, check and tokens need: the store, the key ring and the service. No
    scheduler and no API, so running them next to `fleetbot run` never touches its runs."""
    check_single_source(config.auth.keyring, env, token_dir=config.auth.token_dir)
    clock = SystemClock()
    auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
    async with Database(config.storage.path) as db:
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
    from core import RuntimeReport, self_test_async, self_test_runtimes

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
    return 0 if report.ok and reached.ok else 1


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
