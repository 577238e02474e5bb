"""The key ring: one file, one source, exact states, safe rotation across processes."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from core.auth.agent_auth import KeyRingFile
from core.auth.keyring import KeyRing, KeyState, check_single_source, second_sources
from core.auth.secretfile import write_secret
from core.config import parse_config
from core.errors import ConfigError, KeyRingError

NOW = 1_767_225_600.0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _key(kid: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "kid": kid,
        "secret": base64.urlsafe_b64encode(b"s" * 32).decode(),
        "alg": "HS256",
        "created_at": NOW,
        "state": state,
        **extra,
    }


def _write(path: Path, keys: list[dict[str, Any]]) -> None:
    write_secret(path, json.dumps({"version": 1, "keys": keys}))


@pytest.fixture
def ring_path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "keyring.json"


def test_create_writes_one_active_key_owner_only(ring_path: Path) -> None:
    ring = KeyRing.create(ring_path, NOW)
    assert _mode(ring_path) == 0o600
    assert _mode(ring_path.parent) == 0o700
    doc = _doc(ring_path)
    assert doc["version"] == 1
    [key] = doc["keys"]
    assert key["state"] == "active" and key["kid"] == ring.active.kid
    assert key["created_at"] == NOW and len(base64.urlsafe_b64decode(key["secret"])) == 32
    assert [p.name for p in ring_path.parent.iterdir()] == ["keyring.json"]  # no temp left
    with pytest.raises(KeyRingError, match="already exists"):
        KeyRing.create(ring_path, NOW)


def test_secret_never_printed(ring_path: Path) -> None:
    ring = KeyRing.create(ring_path, NOW)
    secret_b64 = base64.urlsafe_b64encode(ring.active.secret).decode()
    assert secret_b64 not in repr(ring.active) and secret_b64 not in repr(ring.keys)


def test_loose_permissions_refused_with_the_fix(ring_path: Path) -> None:
    KeyRing.create(ring_path, NOW)
    os.chmod(ring_path, 0o644)
    with pytest.raises(KeyRingError) as err:
        KeyRing.load(ring_path)
    assert f"chmod 600 {ring_path}" in err.value.message
    os.chmod(ring_path, 0o600)
    KeyRing.load(ring_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "fleetbot init"),
        ("{not json", "cannot read the key ring"),
        ('{"version": 9, "keys": []}', "not in fleetbot's format"),
        ('{"version": 1, "keys": [{"kid": "a"}]}', "not in fleetbot's format"),
    ],
)
def test_unreadable_key_rings_say_what_to_do(
    ring_path: Path, content: str | None, expected: str
) -> None:
    if content is not None:
        write_secret(ring_path, content)
    with pytest.raises(KeyRingError, match=expected):
        KeyRing.load(ring_path)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], "exactly one active key, found 0"),
        ([_key("a", "active"), _key("b", "active")], "exactly one active key, found 2"),
        ([_key("a", "active"), _key("b", "verify_only")], "verify-only key b has no verify_until"),
        ([_key("a", "active"), _key("a", "retired")], "appears twice"),
        ([_key("a", "active", secret="c2hvcnQ=")], "HS256 keys need at least 32"),
        ([_key("../x", "active")], "not a plain id"),
        ([_key("a", "active", alg="HS512")], "unknown algorithm"),
    ],
)
def test_states_are_exact(ring_path: Path, keys: list[dict[str, Any]], expected: str) -> None:
    _write(ring_path, keys)
    with pytest.raises(KeyRingError, match=expected):
        KeyRing.load(ring_path)


def test_rotate_keeps_the_previous_key_verify_only_for_the_grace(ring_path: Path) -> None:
    ring = KeyRing.create(ring_path, NOW)
    old = ring.active
    new = ring.rotate(NOW + 10, grace=3600)
    assert ring.active is new and new.kid != old.kid
    again = KeyRing.load(ring_path)  # saved before rotate returned
    prev = again.get(old.kid)
    assert prev is not None and prev.state is KeyState.VERIFY_ONLY
    assert prev.verify_until == NOW + 10 + 3600
    assert prev.verifies_at(NOW + 3609) and not prev.verifies_at(NOW + 3610)
    assert [k.kid for k in again.verifying(NOW + 20)] == [old.kid, new.kid]
    assert again.retire_expired(NOW + 100) == []
    assert again.retire_expired(NOW + 3610) == [old.kid]
    reloaded = KeyRing.load(ring_path).get(old.kid)
    assert reloaded is not None and reloaded.state is KeyState.RETIRED
    assert not reloaded.verifies_at(NOW)


def test_second_keyring_file_sees_a_rotation_by_another_process(ring_path: Path) -> None:
    KeyRing.create(ring_path, NOW)
    running = KeyRingFile(ring_path)  # `fleetbot run`
    shell = KeyRingFile(ring_path)  # `fleetbot tokens rotate` in a shell
    old = running.ring.active.kid
    new = shell.update(lambda ring: ring.rotate(NOW, 3600))
    assert running.ring.active.kid == new.kid
    prev = running.ring.get(old)
    assert prev is not None and prev.state is KeyState.VERIFY_ONLY


def test_updates_from_two_processes_are_never_lost(ring_path: Path) -> None:
    KeyRing.create(ring_path, NOW)
    a, b = KeyRingFile(ring_path), KeyRingFile(ring_path)
    first = a.update(lambda ring: ring.rotate(NOW, 3600))
    # b has not looked at the file since a rotated; its update still starts from a's result.
    second = b.update(lambda ring: ring.rotate(NOW + 1, 3600))
    kids = {k.kid: k.state for k in KeyRing.load(ring_path).keys}
    assert len(kids) == 3
    assert kids[first.kid] is KeyState.VERIFY_ONLY and kids[second.kid] is KeyState.ACTIVE


def test_a_broken_file_on_disk_keeps_the_loaded_keys(ring_path: Path) -> None:
    KeyRing.create(ring_path, NOW)
    watcher = KeyRingFile(ring_path)
    kid = watcher.ring.active.kid
    write_secret(ring_path, "{broken")
    assert watcher.ring.active.kid == kid
    assert watcher.reload_error is not None and "cannot read" in watcher.reload_error
    with pytest.raises(KeyRingError):
        watcher.update(lambda ring: ring.rotate(NOW, 60))  # never builds on a broken file


# -- one source ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["JWT_SECRET", "FLEETBOT_JWT_SECRET", "PAPERCLIP_AGENT_JWT_SECRET"]
)
def test_a_secret_in_an_env_var_is_a_second_source(ring_path: Path, name: str) -> None:
    KeyRing.create(ring_path, NOW)
    with pytest.raises(KeyRingError) as err:
        check_single_source(ring_path, {name: "hunter2-hunter2"})
    assert str(ring_path) in err.value.message and name in err.value.message
    assert "hunter2" not in err.value.message


def test_a_keyring_path_env_var_elsewhere_is_a_second_source(
    ring_path: Path, tmp_path: Path
) -> None:
    KeyRing.create(ring_path, NOW)
    check_single_source(ring_path, {"FLEETBOT_KEYRING": str(ring_path)})  # the same file: fine
    other = tmp_path / "other.json"
    with pytest.raises(KeyRingError, match="FLEETBOT_KEYRING") as err:
        check_single_source(ring_path, {"FLEETBOT_KEYRING": str(other)})
    assert str(ring_path) in err.value.message and str(other) in err.value.message


def test_a_stray_keyring_in_a_known_place_is_a_second_source(tmp_path: Path) -> None:
    ring_path = tmp_path / "vault" / "fleet-keys.json"
    tokens = tmp_path / "secrets" / "tokens"
    KeyRing.create(ring_path, NOW)
    assert second_sources(ring_path, {}, token_dir=tokens) == []
    stray = tmp_path / "secrets" / "keyring.json"  # the default layout, left behind
    KeyRing.create(stray, NOW)
    with pytest.raises(KeyRingError) as err:
        check_single_source(ring_path, {}, token_dir=tokens)
    assert str(ring_path) in err.value.message and str(stray) in err.value.message
    stray.unlink()
    home = tmp_path / "home"
    KeyRing.create(home / ".config" / "fleetbot" / "keyring.json", NOW)
    found = second_sources(ring_path, {"HOME": str(home)}, token_dir=tokens)
    assert found == [f"a second key ring at {home / '.config' / 'fleetbot' / 'keyring.json'}"]


def test_the_configured_keyring_itself_is_not_a_second_source(tmp_path: Path) -> None:
    ring_path = tmp_path / "secrets" / "keyring.json"
    KeyRing.create(ring_path, NOW)
    link = tmp_path / "home" / ".config" / "fleetbot" / "keyring.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(ring_path)
    env = {"HOME": str(tmp_path / "home"), "FLEETBOT_AUTH__KEYRING": str(ring_path)}
    check_single_source(ring_path, env, token_dir=tmp_path / "secrets" / "tokens")


@pytest.mark.parametrize("key", ["keys", "signing_key", "secrets"])
def test_keys_in_the_config_are_a_second_source(key: str) -> None:
    data = {"auth": {"keyring": "/srv/keyring.json", key: [{"kid": "a", "k": "c2VjcmV0"}]}}
    with pytest.raises(ConfigError) as err:
        parse_config(data, "fleet.yaml")
    assert "two sources of signing keys" in err.value.message
    assert "/srv/keyring.json" in err.value.message and f"auth.{key}" in err.value.message


def test_an_inline_secret_in_the_config_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"auth": {"secret": "s3cr3t-value"}}, "fleet.yaml")
    assert "auth.secret" in err.value.message and "auth.keyring" in err.value.message
    assert "s3cr3t-value" not in err.value.message


def test_a_secret_from_an_env_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="two sources of signing keys"):
        parse_config({}, "fleet.yaml", {"FLEETBOT_AUTH__KEYS": "[abc]"})


def test_two_keyring_paths_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a list"):
        parse_config({"auth": {"keyring": ["a.json", "b.json"]}}, "fleet.yaml")


# -- EdDSA --------------------------------------------------------------------------------


def test_eddsa_key_ring_publishes_its_public_keys(ring_path: Path) -> None:
    pytest.importorskip("cryptography")
    ring = KeyRing.create(ring_path, NOW, alg="EdDSA")
    [jwk] = ring.public_jwks(NOW)["keys"]
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["kid"] == ring.active.kid
    secret_b64 = base64.urlsafe_b64encode(ring.active.secret).decode().rstrip("=")
    assert secret_b64 not in json.dumps(jwk)
    hs = KeyRing.create(ring_path.with_name("hs.json"), NOW)
    assert hs.public_jwks(NOW) == {"keys": []}


def test_eddsa_without_cryptography_says_how_to_get_it(
    ring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "cryptography"] + ["cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    with pytest.raises(KeyRingError, match=r"fleetbot\[eddsa\]"):
        KeyRing.create(ring_path, NOW, alg="EdDSA")
    with pytest.raises(ConfigError, match=r"fleetbot\[eddsa\]"):
        parse_config({"auth": {"algorithm": "EdDSA"}}, "fleet.yaml")
