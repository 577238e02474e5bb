"""`fleetbot migrate --to postgresql://…`: the SQLite store copied into PostgreSQL (core's
migrate_store), the rows per table, and what to change in the config to run on the copy."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from core import Config

SCHEMES = ("postgresql://", "postgres://")


def postgres_url(text: str) -> str:
    """`--to`: a PostgreSQL URL without a password (storage.url's rule; on a command line it
    would also show in `ps` and in the shell's history). Not echoed: it may hold one."""
    if not text.startswith(SCHEMES):
        raise argparse.ArgumentTypeError("write postgresql://user@host:5432/database")
    if urlsplit(text).password is not None:
        raise argparse.ArgumentTypeError(
            "keep the password out of the URL (it would show in ps, the shell's history and "
            "logs): put it in an env var or a file and pass --password-env VAR or "
            "--password-file PATH"
        )
    return text


def cmd_migrate(
    config: Config,
    env: Mapping[str, str],
    config_path: Path,
    *,
    to: str,
    password_env: str | None = None,
    password_file: str | None = None,
    replace: bool = False,
    program: str = "fleetbot",
) -> int:
    from core import migrate_store

    secret = Path(password_file).resolve() if password_file else None
    started = time.monotonic()
    copied = asyncio.run(
        migrate_store(
            config.storage,
            to,
            password_env=password_env,
            password_file=secret,
            env=env,
            replace=replace,
        )
    )
    seconds = time.monotonic() - started
    width = max(len("total"), *map(len, copied.rows))
    print(
        f"copied {copied.source} into {copied.target} (schema version {copied.version}), "
        "in one transaction:"
    )
    for table, count in sorted(copied.rows.items()):
        print(f"  {table:<{width}}  {count:>8}")
    print(f"  {'total':<{width}}  {sum(copied.rows.values()):>8} rows in {seconds:.1f}s")
    auth = config.auth
    print(
        f"not copied: the key ring ({auth.keyring}) and the agents' tokens ({auth.token_dir}) "
        "are files, not rows; they stay as they are and keep working with the copy. "
        f"{copied.source} stays too: keep it as a backup."
    )
    if password_env:
        password = f" and storage.password: {{env: {password_env}}}"
    elif secret:
        password = f" and storage.password: {{file: {secret}}}"
    else:
        password = " (the password from PGPASSWORD or ~/.pgpass, as for this copy)"
    cfg = shlex.quote(str(config_path))
    print(f"next: set storage.url: {to}{password} in {cfg}, then `{program} run -c {cfg}`")
    return 0
