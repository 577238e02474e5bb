"""`fleetbot migrate --to postgresql://…` as an operator runs it, in a process of its own: the
copy and what to do next, a second copy refused and `--replace`, the bot then checking out on
PostgreSQL; and every refusal before a byte is copied (wrong arguments, a password in the URL,
a config already on PostgreSQL, no SQLite file, a `fleetbot run` holding it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import store_helpers
import yaml

from core.store.instance import InstanceLock
from core.store.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[2]
CONFIG = {
    "telegram": {"owners": [1001]},
    "storage": {"path": "fleet.db"},
    "companies": [
        {
            "id": "aliens",
            "name": "Alex Kerber AB",
            "prefix": "ALI",
            "agents": [
                {"id": "ripley", "role": "ceo", "runtime": {"kind": "simulated", "latency": 0}},
                {"id": "bishop", "role": "cto", "runtime": {"kind": "simulated", "latency": 0}},
            ],
        }
    ],
}
NOWHERE = "postgresql://fleetbot@127.0.0.1:9/fleet"  # never reached: refused before it


def fleetbot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBOT_")}
    clean.update(HOME=str(tmp_path / "home"), FLEETBOT_TELEGRAM_TOKEN="1:x", **env)
    return subprocess.run(
        [sys.executable, "-m", "fleetbot.cli", *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=REPO,
        timeout=120,
    )


def write_config(folder: Path, **storage: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "storage": storage or CONFIG["storage"]}))
    return path


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    """A folder after `fleetbot init`: a SQLite store, a key ring and two agents' tokens."""
    config = write_config(tmp_path / "fleet")
    done = fleetbot(tmp_path, "init", str(config.parent))
    assert done.returncode == 0, done.stderr
    return config


def refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: --to"),
        (("--to",), "argument --to: expected one argument"),
        (("--to", "mysql://u@h/db"), "argument --to: write postgresql://user@host:5432/database"),
        (
            ("--to", NOWHERE, "--password-env", "A", "--password-file", "B"),
            "argument --password-file: not allowed with argument --password-env",
        ),
    ],
)
def test_wrong_arguments_print_the_usage(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = fleetbot(tmp_path, "migrate", *args)
    refused(done, message)
    assert done.stderr.startswith("usage: fleetbot migrate [-h] --to URL\n"), done.stderr


def test_an_unknown_option_prints_the_usage(tmp_path: Path) -> None:
    # argparse's own way for every subcommand: the top parser reports what is left over.
    done = fleetbot(tmp_path, "migrate", "--to", NOWHERE, "--force")
    refused(done, "fleetbot: error: unrecognized arguments: --force")
    assert done.stderr.startswith("usage: fleetbot ")


def test_a_password_in_the_url_is_refused_and_not_repeated(tmp_path: Path) -> None:
    done = fleetbot(tmp_path, "migrate", "--to", "postgresql://fleetbot:hunter2@db:5432/fleet")
    refused(done, "argument --to: keep the password out of the URL")
    assert "--password-env VAR or --password-file PATH" in done.stderr
    assert "hunter2" not in done.stderr
    assert done.stderr.startswith("usage: fleetbot migrate")


def test_a_config_already_on_postgresql_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "fleet", url="postgresql://fleetbot@db:5432/old")
    done = fleetbot(tmp_path, "migrate", "--to", NOWHERE, "-c", str(config))
    refused(done, "fleetbot: storage already names PostgreSQL (postgresql://fleetbot@db:5432/old)")


def test_no_sqlite_file_is_refused_and_none_is_made(tmp_path: Path) -> None:
    config = write_config(tmp_path / "fleet")
    done = fleetbot(tmp_path, "migrate", "--to", NOWHERE, "-c", str(config))
    refused(done, f"fleetbot: {config.parent / 'fleet.db'}: no such SQLite file")
    assert not (config.parent / "fleet.db").exists()


def test_a_running_bot_holds_the_source(tmp_path: Path, setup: Path) -> None:
    with InstanceLock(setup.parent / "fleet.db"):  # what `fleetbot run` holds
        done = fleetbot(tmp_path, "migrate", "--to", NOWHERE, "-c", str(setup))
    refused(done, f"is already in use by fleetbot process {os.getpid()} on ")
    assert "Only one `fleetbot run` may use a database at a time" in done.stderr


def test_an_unset_password_variable_is_refused(tmp_path: Path, setup: Path) -> None:
    done = fleetbot(
        tmp_path, "migrate", "--to", NOWHERE, "--password-env", "NOPE", "-c", str(setup)
    )
    refused(done, "is to come from env var NOPE, which is unset or empty")


def untimed(out: str) -> list[str]:
    return [line for line in out.splitlines() if " rows in " not in line]


def _password() -> str:
    """The test server's password, from the PGPASSFILE `scripts/pg.sh env` exports."""
    line = Path(os.environ["PGPASSFILE"]).read_text().splitlines()[0]
    return line.rsplit(":", 1)[1]


@pytest.mark.postgres_only
def test_migrate_then_run_on_postgresql(tmp_path: Path, setup: Path) -> None:
    url = store_helpers.storage(tmp_path, "target.db")["url"]
    secret = tmp_path / "pg-password"
    secret.write_text(_password() + "\n")
    migrate = ("migrate", "--to", url, "--password-file", str(secret), "-c", str(setup))

    done = fleetbot(tmp_path, *migrate)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    sqlite = setup.parent / "fleet.db"
    version = f"schema version {SCHEMA_VERSION}"
    assert lines[0] == f"copied {sqlite} into {url} ({version}), in one transaction:"
    counts = {t: int(n) for t, n in (line.split() for line in lines[1:-3])}
    assert (counts["companies"], counts["agents"], counts["issues"]) == (1, 2, 0)
    assert list(counts) == sorted(counts) and len(counts) == 24
    assert re.fullmatch(rf"  total +{sum(counts.values())} rows in \d+\.\ds", lines[-3])
    ring = setup.parent / "secrets" / "keyring.json"
    assert lines[-2].startswith(f"not copied: the key ring ({ring}) and the agents' tokens")
    assert lines[-1] == (
        f"next: set storage.url: {url} and storage.password: {{file: {secret}}} in {setup}, "
        f"then `fleetbot run -c {setup}`"
    )
    assert _password() not in done.stdout + done.stderr

    again = fleetbot(tmp_path, *migrate)
    refused(again, "already holds fleetbot data (rows in companies, agents)")
    assert "`fleetbot migrate --replace`" in again.stderr
    replaced = fleetbot(tmp_path, *migrate, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert untimed(replaced.stdout) == untimed(done.stdout)

    on_pg = write_config(setup.parent, url=url)
    data = yaml.safe_load(on_pg.read_text())
    data["storage"]["password"] = {"file": str(secret)}
    on_pg.write_text(yaml.safe_dump(data))
    check = fleetbot(tmp_path, "check", "-c", str(on_pg))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2/2 agents authenticated" in check.stdout  # tokens and key ring, untouched
