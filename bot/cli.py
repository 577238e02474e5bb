"""The `fleetbot` command: init, run, check, tokens, demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.clock import SystemClock
from core.config import Config, load_config
from core.errors import FleetbotError
from core.keyring import KeyRing, check_single_source

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetbot",
        description="The operations desk for a team of AI agents, run from a phone.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("init", help="write config.yaml, the key ring and a token per agent")
    p.add_argument("dir", nargs="?", default=".", help="folder to set up (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config.yaml")

    p = sub.add_parser("run", help="run the bot, the core and the agent API until SIGINT/SIGTERM")
    _add_config(p)
    p.add_argument("--no-bot", action="store_true", help="run the core and the API only")

    p = sub.add_parser("check", help="validate the config and self-test every agent's token")
    _add_config(p)

    p = sub.add_parser("tokens", help="rotate or verify agent tokens")
    tsub = p.add_subparsers(dest="tokens_command", metavar="ACTION")
    tsub.required = True
    r = tsub.add_parser("rotate", help="new signing key and tokens for all (or one) agent")
    _add_config(r)
    r.add_argument("--agent", metavar="ID", help="rotate only this agent's token (revokes it)")
    v = tsub.add_parser("verify", help="self-test every agent's token file")
    _add_config(v)

    p = sub.add_parser("demo", help="offline: a simulated fleet and a chat you can type into")
    p.add_argument("--db", metavar="FILE", help="keep the demo database here (default: temp)")
    p.add_argument("--speed", type=float, default=1.0, help="run the fleet's time this much faster")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from bot import logs

    args = build_parser().parse_args(argv)
    env = dict(os.environ)
    logs.setup(env.get("FLEETBOT_LOG_LEVEL", "WARNING" if args.command == "demo" else "INFO"))
    try:
        if args.command == "init":
            return cmd_init(Path(args.dir), force=args.force, env=env)
        if args.command == "check":
            return asyncio.run(cmd_check(_load(args.config, env), env))
        if args.command == "tokens":
            config = _load(args.config, env)
            if args.tokens_command == "verify":
                return asyncio.run(cmd_check(config, env))
            return asyncio.run(cmd_rotate(config, env, args.agent))
        if args.command == "run":
            return asyncio.run(cmd_run(_load(args.config, env), env, with_bot=not args.no_bot))
        if args.command == "demo":
            from bot.demo import run_demo

            return asyncio.run(run_demo(db_path=args.db, speed=args.speed))
    except FleetbotError as exc:
        print(f"fleetbot: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


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
    check_single_source(config.auth.keyring, env)
    if config.auth.keyring.exists():
        KeyRing.load(config.auth.keyring)
        print(f"kept {config.auth.keyring} (exists)")
    else:
        KeyRing.create(config.auth.keyring, SystemClock().now(), config.auth.algorithm)
        print(f"wrote {config.auth.keyring} (mode 0600)")
    config.auth.token_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    report = asyncio.run(_issue_missing_tokens(config, env))
    print(report)
    print(
        "\nNext: put your Telegram user id in telegram.owners, export "
        f"{config.telegram.token_env}=<token from @BotFather>, then `fleetbot check` and "
        "`fleetbot run`. No token yet? Try `fleetbot demo`."
    )
    return 0


async def _issue_missing_tokens(config: Config, env: Mapping[str, str]) -> str:
    from core.fleet import Fleet

    async with Fleet(config, env, serve_api=False, periodic=False) as fleet:
        written = 0
        for agent in await fleet.service.agents():
            if not fleet.auth.token_file(agent.id).exists():
                fleet.auth.issue(agent)
                written += 1
        total = len(await fleet.service.agents())
    return f"tokens: wrote {written}, kept {total - written}, in {config.auth.token_dir}"


async def cmd_check(config: Config, env: Mapping[str, str]) -> int:
    from core.fleet import Fleet
    from core.rotation import self_test

    agents = sum(len(c.agents) for c in config.companies)
    print(f"config ok: {len(config.companies)} companies, {agents} agents")
    async with Fleet(config, env, serve_api=False, periodic=False) as fleet:
        report = self_test(fleet.auth, await fleet.service.agents())
    print(f"key ring ok: {config.auth.keyring} (active key {report.kid})")
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


async def cmd_rotate(config: Config, env: Mapping[str, str], agent_id: str | None) -> int:
    from core.fleet import Fleet
    from core.rotation import rotate_agent, rotate_all

    async with Fleet(config, env, serve_api=False, periodic=False) as fleet:
        if agent_id:
            check = await rotate_agent(fleet.auth, fleet.service, agent_id, "cli")
            if check.ok:
                print(f"{check.agent_id}: new token written; the old one is revoked")
                return 0
            print(f"{check.agent_id}: {check.code} — {check.message}")
            return 1
        report = await rotate_all(fleet.auth, fleet.service, "cli")
    grace = config.auth.rotation_grace
    print(f"new active key {report.kid}; the previous key verifies for {grace:.0f}s more")
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


async def cmd_run(config: Config, env: Mapping[str, str], *, with_bot: bool) -> int:
    import logging

    from core.fleet import Fleet

    log = logging.getLogger("fleetbot")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Fleet(config, env) as fleet:
        if with_bot:
            from bot.runner import BotRunner

            async with BotRunner(fleet, env):
                log.info("fleetbot running: API at %s, bot polling", fleet.api_url)
                await stop.wait()
        else:
            log.info("fleetbot running without the bot: API at %s", fleet.api_url)
            await stop.wait()
    log.info("fleetbot stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
