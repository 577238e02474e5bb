"""One `fleetbot run` per database: the second process is refused with the holder's name."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from store_helpers import storage

from core.auth.keyring import KeyRing
from core.config import parse_config
from core.errors import InstanceLocked
from core.fleet import Fleet
from core.store.instance import InstanceLock, lock_path

HOLD = """
import sys, time
from pathlib import Path
from core.store.instance import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def _holder(db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    proc.stdout.close()
    return proc


def test_a_second_holder_is_refused_with_pid_host_and_how_to_stop(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    proc = _holder(db)
    try:
        with pytest.raises(InstanceLocked) as refused:
            InstanceLock(db).acquire()
        message = refused.value.message
        assert f"fleetbot process {proc.pid} on {socket.gethostname()}" in message
        assert f"kill {proc.pid}" in message
        assert "storage.path" in message
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    proc = _holder(db)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the dead holder's text is still in the file, but the kernel dropped its lock
    assert str(proc.pid) in lock_path(db).read_text()
    with InstanceLock(db) as lock:
        assert lock.held
        assert f'"pid": {os.getpid()}' in lock_path(db).read_text()
    assert lock_path(db).read_text() == ""  # released: nobody is named any more


def test_release_is_idempotent_and_lets_the_next_one_in(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    first = InstanceLock(db)
    first.acquire()
    first.release()
    first.release()
    with InstanceLock(db), pytest.raises(InstanceLocked):
        InstanceLock(db).acquire()


@pytest.mark.sqlite_only  # on PostgreSQL the second is a replica: tests/core/cluster
async def test_a_second_fleet_on_the_same_database_does_not_start(tmp_path: Path) -> None:
    config = parse_config(
        {
            "storage": storage(tmp_path),
            "auth": {
                "keyring": str(tmp_path / "keyring.json"),
                "token_dir": str(tmp_path / "tokens"),
            },
            "companies": [],
        },
        "test config",
    )
    KeyRing.create(config.auth.keyring, time.time())
    async with Fleet(config, {}, serve_api=False, periodic=False):
        with pytest.raises(InstanceLocked, match=str(os.getpid())):
            async with Fleet(config, {}, serve_api=False, periodic=False):
                pass
    # once the first has stopped, the next one starts
    async with Fleet(config, {}, serve_api=False, periodic=False):
        pass


def test_fleetbot_run_twice_exits_at_once_naming_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "fleet"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"path": "fleet.db"},
                "api": {"listen": "127.0.0.1:0"},
                "companies": [],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBOT_")}
    fleetbot = [sys.executable, "-m", "fleetbot.cli"]
    init = subprocess.run([*fleetbot, "init", str(folder)], env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    log = tmp_path / "first.log"
    with log.open("w") as sink:
        first = subprocess.Popen(
            [*fleetbot, "run", "--no-bot", "-c", str(config)], env=env, stderr=sink
        )
    try:
        deadline = time.monotonic() + 20
        lock = lock_path(folder / "fleet.db")
        while not (lock.exists() and '"pid"' in lock.read_text()):
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run(
            [*fleetbot, "run", "--no-bot", "-c", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert second.returncode != 0
        assert f"fleetbot process {first.pid}" in second.stderr
        assert time.monotonic() - started < 10
        assert first.poll() is None  # the first one goes on untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)
