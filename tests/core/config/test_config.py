"""Config loading: every mistake is a ConfigError naming the file, the key path and the fix;
secrets are refused; env overrides apply; the shipped example loads and documents every key."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import BaseModel

from core.config import (
    Config,
    HttpRuntime,
    OpenClawRuntime,
    ProcessRuntime,
    load_config,
    parse_config,
)
from core.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
JWT = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJyaXBsZXkifQ.c2lnbmF0dXJlLXZhbHVl"


def company(**extra: Any) -> dict[str, Any]:
    return {"id": "aliens", "name": "Alex Kerber AB", "prefix": "ALI", **extra}


def agent(**extra: Any) -> dict[str, Any]:
    return {"id": "ripley", "role": "ceo", **extra}


def with_agent(**extra: Any) -> dict[str, Any]:
    return {"companies": [company(agents=[agent(**extra)])]}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "fleet.yaml", env)
    message = str(info.value)
    assert message.startswith("fleet.yaml"), message  # always names the file
    return message


# -- unknown keys, types, required keys --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "where", "suggestion"),
    [
        ({"companys": []}, "companys", "companies"),
        ({"telegram": {"ownerz": [1]}}, "telegram.ownerz", "owners"),
        ({"defaults": {"hearbeat": "4h"}}, "defaults.hearbeat", "heartbeat"),
        (with_agent(rol="cto"), "companies[0] (id: aliens).agents[0] (id: ripley).rol", "role"),
        (
            with_agent(runtime={"kind": "http", "url": "http://x", "timout": "3s"}),
            "agents[0] (id: ripley).runtime.timout",
            "timeout",
        ),
    ],
)
def test_unknown_key_suggests_the_right_one(data: Any, where: str, suggestion: str) -> None:
    message = error_of(data)
    assert f"{where}: unknown key; did you mean {suggestion!r}?" in message
    assert "Allowed here:" in message


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        ({"telegram": {"owners": "me"}}, "telegram.owners", "valid list"),
        ({"telegram": {"owners": ["me"]}}, "telegram.owners[0]", "valid integer"),
        ({"defaults": {"max_turns_per_run": "many"}}, "defaults.max_turns_per_run", "integer"),
        ({"defaults": {"max_turns_per_run": 0}}, "defaults.max_turns_per_run", "greater than"),
        ({"defaults": {"skills": ["a"]}}, "defaults.skills", "dictionary"),
        ({"companies": {"aliens": {}}}, "companies", "valid list"),
        ({"api": {"listen": "8080"}}, "api.listen", "host:port"),
        ({"telegram": {"digest_at": "9am"}}, "telegram.digest_at", "HH:MM"),
        ({"telegram": {"mode": "push"}}, "telegram.mode", "'polling' or 'webhook'"),
        (with_agent(id="Ripley!"), "agents[0] (id: Ripley!).id", "agent ids are"),
    ],
)
def test_wrong_types_name_the_key(data: Any, where: str, problem: str) -> None:
    message = error_of(data)
    line = next(line for line in message.splitlines() if where in line)
    assert problem in line, message


def test_missing_required_keys() -> None:
    message = error_of({"companies": [{"id": "aliens", "agents": [{"id": "ripley"}]}]})
    assert "companies[0] (id: aliens).name: this key is required" in message
    assert "companies[0] (id: aliens).prefix: this key is required" in message
    assert "companies[0] (id: aliens).agents[0] (id: ripley).role: this key is required" in message
    message = error_of(with_agent(runtime={"kind": "http"}))
    assert "runtime.url: this key is required" in message


@pytest.mark.parametrize("runtime", [{"kind": "docker"}, {"url": "http://x"}, {"kind": None}])
def test_bad_runtime_kind_lists_the_kinds(runtime: dict[str, Any]) -> None:
    message = error_of(with_agent(runtime=runtime))
    assert "agents[0] (id: ripley).runtime: set runtime.kind to one of: http, openclaw, " in message


def test_openclaw_needs_exactly_one_token_source() -> None:
    message = error_of(with_agent(runtime={"kind": "openclaw", "url": "http://gw"}))
    assert "runtime: give exactly one of token_env" in message


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("4h", 14_400), ("30d", 2_592_000), ("1h30m", 5_400), ("90s", 90), ("2.5m", 150)],
)
def test_durations_are_human(text: Any, seconds: float) -> None:
    config = parse_config(
        {"defaults": {"heartbeat": text}, "auth": {"token_ttl": text}}, "fleet.yaml"
    )
    assert config.defaults.heartbeat == seconds
    assert config.auth.token_ttl == seconds


@pytest.mark.parametrize("value", ["4 hours", "soon", "-1s", "1y", True, [4], 10**400, "0s"])
def test_bad_durations_say_what_to_write(value: Any) -> None:
    message = error_of({"defaults": {"heartbeat": value}})
    assert "defaults.heartbeat: " in message
    assert "a duration like 30s, 15m, 4h, 1h30m or 30d" in message


@pytest.mark.parametrize(
    ("key", "value", "written"),
    [
        ("run_timeout", 30, "30"),
        ("run_timeout", "30", "30"),
        ("heartbeat", 3600, "3600"),
        ("heartbeat", 1.5, "1.5"),
        ("retry_backoff", " 60 ", "60"),
    ],
)
def test_a_duration_without_a_unit_is_refused_with_the_fix(
    key: str, value: Any, written: str
) -> None:
    message = error_of({"defaults": {key: value}})
    assert f"defaults.{key}: {written} has no unit: write {written}s, {written}m or {written}h" in (
        message
    )


def test_a_bare_zero_is_still_zero() -> None:
    config = parse_config(
        {
            "auth": {"run_token_ttl": 0},
            "companies": [company(agents=[agent(runtime={"kind": "simulated", "latency": 0})])],
        },
        "fleet.yaml",
    )
    assert config.auth.run_token_ttl == 0
    assert config.companies[0].agents[0].runtime.latency == 0  # type: ignore[union-attr]


def test_a_unitless_env_override_is_refused_too() -> None:
    message = error_of({}, {"FLEETBOT_DEFAULTS__HEARTBEAT": "3600"})
    assert "defaults.heartbeat: 3600 has no unit: write 3600s, 3600m or 3600h" in message


def test_every_default_validates_as_it_is_written_out() -> None:
    """Defaults are numbers in the schema; written out as JSON (as a runtime is stored, see
    core.store.sync) they carry units and read back to the same config."""
    runtimes = [
        {"kind": "http", "url": "http://x"},
        {"kind": "openclaw", "url": "ws://x", "token_env": "T"},
        {"kind": "process", "command": ["true"]},
        {"kind": "simulated"},
    ]
    data = {
        "companies": [
            company(agents=[agent(id=f"a{i}", runtime=r) for i, r in enumerate(runtimes)])
        ]
    }
    config = parse_config(data, "fleet.yaml")
    again = Config.model_validate_json(config.model_dump_json())
    assert again == config


def test_ids_and_prefixes_are_explained_in_words() -> None:
    message = error_of(
        {"companies": [company(id="Aliens", prefix="al-1", agents=[agent(id="Ripley!")])]}
    )
    assert "String should match pattern" not in message and "^[" not in message
    assert (
        "companies[0] (id: Aliens).id: company ids are 1–64 lowercase letters, digits, dots, "
        "underscores and dashes, starting with a letter or a digit; got 'Aliens', e.g. 'aliens'"
    ) in message
    assert "prefix: a prefix is 1–8 capital letters and digits, starting with a letter" in message
    assert "e.g. 'AL1'" in message
    assert "(id: Ripley!).id: agent ids are 1–64 lowercase letters" in message
    assert "e.g. 'ripley'" in message


# -- whole-config checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("companies", "expected"),
    [
        (
            [company(), company(prefix="ALX")],
            "companies[1] (id: aliens).id: company id 'aliens' is used twice",
        ),
        (
            [company(), company(id="matrix")],
            "companies[1] (id: matrix).prefix: 'ALI' is another company's prefix",
        ),
        (
            [company(agents=[agent()]), company(id="matrix", prefix="MAT", agents=[agent()])],
            "companies[1] (id: matrix).agents[0].id: agent id 'ripley' is used twice",
        ),
        (
            [company(agents=[agent(), agent(id="bishop", reports_to="henry")])],
            "companies[0] (id: aliens).agents[1] (id: bishop).reports_to: 'henry' is not an "
            "agent of company 'aliens'; use one of: bishop, ripley",
        ),
    ],
)
def test_duplicates_and_dangling_references(companies: list[dict[str, Any]], expected: str) -> None:
    message = error_of({"companies": companies})
    assert f"\n  {expected}" in message
    assert "(top level)" not in message


def test_reports_to_in_another_company_is_refused() -> None:
    data = {
        "companies": [
            company(agents=[agent()]),
            company(id="matrix", prefix="MAT", agents=[agent(id="neo", reports_to="ripley")]),
        ]
    }
    assert "reports_to: 'ripley' is not an agent of company 'matrix'" in error_of(data)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just words\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert f"must be a mapping of sections (telegram:, storage:, companies: …), not {kind}" in str(
        info.value
    )


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "telegram:\n  owners: [1, 2\nstorage:\n  path: x.db\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 3, column 8: not valid YAML")
    assert "indentation and quoting" in message
    path = write(tmp_path, "storage:\n\tpath: x.db\n", "tabs.yaml")
    with pytest.raises(ConfigError, match=r"tabs\.yaml: line 2, column 1: not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "---\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    config = load_config(write(tmp_path, text))
    assert config.companies == []
    assert config.defaults.heartbeat == 4 * 3600
    assert config.defaults.max_turns_per_run == 50
    assert config.storage.path == tmp_path / "fleetbot.db"


def test_missing_file_says_fleetbot_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)
    assert "`fleetbot init`" in str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path)  # a folder


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "where", "instead", "secret"),
    [
        ({"telegram": {"token": BOT_TOKEN}}, "telegram.token", "token_env", BOT_TOKEN),
        ({"telegram": {"token_env": BOT_TOKEN}}, "telegram.token_env", "env var", BOT_TOKEN),
        (with_agent(model=JWT), "companies[0].agents[0].model", "env var", JWT),
        ({"defaults": {"skills": {"*": [JWT]}}}, "defaults.skills.*[0]", "env var", JWT),
        (
            with_agent(
                runtime={
                    "kind": "http",
                    "url": "http://x",
                    "headers": {"Authorization": "Bearer sk-live-0123456789abcdef"},
                }
            ),
            "companies[0].agents[0].runtime.headers.Authorization",
            "env var",
            "sk-live-0123456789abcdef",
        ),
        (
            with_agent(runtime={"kind": "openclaw", "url": "http://gw", "token": "hooks-s3cret"}),
            "companies[0].agents[0].runtime.token",
            "token_env (the name of an env var) or token_file",
            "hooks-s3cret",
        ),
        ({"auth": {"jwt_secret": "hunter2hunter2"}}, "auth.jwt_secret", "key ring", "hunter2"),
    ],
)
def test_inline_secrets_are_refused_without_echoing_them(
    data: Any, where: str, instead: str, secret: str
) -> None:
    message = error_of(data)
    assert "inline secret refused" in message
    line = next(line for line in message.splitlines() if line.strip().startswith(where + ":"))
    assert instead in line
    assert secret not in message


def test_secret_references_are_fine() -> None:
    config = parse_config(
        with_agent(
            runtime={
                "kind": "http",
                "url": "http://x",
                "secret_headers": {"Authorization": {"env": "AGENT_AUTH"}},
            }
        ),
        "fleet.yaml",
    )
    runtime = config.companies[0].agents[0].runtime
    assert isinstance(runtime, HttpRuntime)
    assert runtime.secret_headers["Authorization"].resolve({"AGENT_AUTH": "Bearer x"}) == "Bearer x"


# -- env overrides -----------------------------------------------------------------------------


def test_env_overrides_apply(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  heartbeat: 4h\nstorage:\n  path: here.db\n")
    env = {
        "FLEETBOT_STORAGE__PATH": "/data/fleetbot.db",
        "FLEETBOT_DEFAULTS__HEARTBEAT": "2h",
        "FLEETBOT_TELEGRAM__OWNERS": "[1, 2]",
        "FLEETBOT_DEFAULTS__MODEL": "@cf/meta/llama-3",  # not YAML: kept as text
        "FLEETBOT_TELEGRAM_TOKEN": BOT_TOKEN,  # no "__": a secret for the bot, not an override
        "HOME": "/root",
    }
    config = load_config(path, env)
    assert config.storage.path == Path("/data/fleetbot.db")
    assert config.defaults.heartbeat == 7200
    assert config.telegram.owners == [1, 2]
    assert config.defaults.model == "@cf/meta/llama-3"


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"FLEETBOT_DEFAULTS__HEARTBEAT": "soon"}, "defaults.heartbeat: expected a duration"),
        ({"FLEETBOT_TELEGRAM__OWNERS": "[1, 2"}, "telegram.owners: Input should be a valid list"),
        ({"FLEETBOT_API__LISTEN": "nowhere"}, "api.listen: write host:port"),
        ({"FLEETBOT_STORAGE__PAHT": "x.db"}, "storage.paht: unknown key; did you mean 'path'?"),
        ({"FLEETBOT_DEFAULTS__HEARTBEAT": "\x1f"}, "defaults.heartbeat"),
    ],
)
def test_invalid_env_overrides_are_named(env: dict[str, str], where: str) -> None:
    message = error_of({}, env)
    assert f"(env overrides applied: {next(iter(env))})" in message
    assert where in message


def test_parse_config_leaves_its_input_alone() -> None:
    data = {"defaults": {"heartbeat": "4h"}}
    parse_config(data, "fleet.yaml", {"FLEETBOT_DEFAULTS__HEARTBEAT": "2h"})
    assert data == {"defaults": {"heartbeat": "4h"}}


# -- paths -------------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    text = """
telegram: {token_file: secrets/telegram.token}
storage: {path: data/fleet.db}
auth: {keyring: secrets/keyring.json, token_dir: /abs/tokens}
companies:
  - id: aliens
    name: Aliens
    prefix: ALI
    agents:
      - {id: newt, role: coo, runtime: {kind: process, command: [python3, newt.py], cwd: agents}}
      - {id: vasquez, role: qa, runtime: {kind: openclaw, url: "http://gw", token_file: oc.token}}
      - id: hicks
        role: cmo
        runtime:
          kind: http
          url: http://x
          secret_headers: {Authorization: {file: secrets/hicks}, X-Key: {env: HICKS_KEY}}
"""
    conf_dir = tmp_path / "etc" / "fleet"
    config = load_config(write(conf_dir, text))
    assert config.storage.path == conf_dir / "data" / "fleet.db"
    assert config.auth.keyring == conf_dir / "secrets" / "keyring.json"
    assert config.auth.token_dir == Path("/abs/tokens")
    assert config.telegram.token_file == conf_dir / "secrets" / "telegram.token"
    newt, vasquez, hicks = config.companies[0].agents
    assert isinstance(newt.runtime, ProcessRuntime) and newt.runtime.cwd == conf_dir / "agents"
    assert isinstance(vasquez.runtime, OpenClawRuntime)
    assert vasquez.runtime.token_file == conf_dir / "oc.token"
    assert isinstance(hicks.runtime, HttpRuntime)
    assert hicks.runtime.secret_headers["Authorization"].file == conf_dir / "secrets" / "hicks"
    assert hicks.runtime.secret_headers["X-Key"].env == "HICKS_KEY"


# -- the shipped example -----------------------------------------------------------------------


def test_example_config_loads() -> None:
    example = REPO / "config.example.yaml"
    assert example.resolve() == (REPO / "fleetbot" / "config.example.yaml").resolve()
    config = load_config(example, {})
    assert [c.id for c in config.companies] == ["aliens"]
    assert config.defaults.heartbeat == 4 * 3600
    assert config.defaults.max_turns_per_run == 50
    assert config.storage.path == example.absolute().parent / "fleetbot.db"


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _keys(model: type[BaseModel], path: str, seen: set[type[BaseModel]]) -> list[str]:
    if model in seen:
        return []
    seen.add(model)
    keys = []
    for name, field in model.model_fields.items():
        keys.append(f"{path}{name}")
        for sub in _models(field.annotation):
            keys.extend(_keys(sub, f"{path}{name}.", seen))
    return keys


def test_example_config_documents_every_key() -> None:
    text = (REPO / "config.example.yaml").read_text()
    keys = _keys(Config, "", set())
    assert len(keys) > 80  # the walk reached the nested models
    missing = [
        key
        for key in keys
        if not re.search(rf"(?<![\w-]){re.escape(key.rsplit('.', 1)[-1])}\s*:", text)
    ]
    assert missing == [], f"config.example.yaml does not mention: {missing}"


# -- fuzzing -----------------------------------------------------------------------------------

_KEYS = [
    *("telegram", "storage", "api", "auth", "defaults", "monitors", "alerts", "companies"),
    *("agents", "runtime", "kind", "id", "name", "prefix", "role", "reports_to", "heartbeat"),
    *("listen", "path", "owners", "skills", "token", "token_env", "url", "headers", "command"),
    *("secret_headers", "env", "file", "quiet_hours", "start", "budget", "topics", "webhook"),
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.dates(),
    st.sampled_from(["http", "openclaw", "process", "simulated", "4h", "-1s", "ALI", JWT]),
)
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(_KEYS), st.text(max_size=6), st.integers()),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)
_ENVS = st.dictionaries(
    st.sampled_from(
        ["FLEETBOT_DEFAULTS__HEARTBEAT", "FLEETBOT_STORAGE__PATH", "FLEETBOT_COMPANIES__0"]
    ),
    st.text(max_size=8),
    max_size=2,
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=st.one_of(_TREES, st.dictionaries(st.sampled_from(_KEYS[:8]), _TREES, max_size=4)),
    env=_ENVS,
)
def test_arbitrary_yaml_gives_a_config_or_a_config_error(data: Any, env: dict[str, str]) -> None:
    try:
        config = parse_config(data, "fuzz.yaml", env)
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")
    else:
        assert isinstance(config, Config)


@pytest.mark.parametrize("key", ["owners", "operators", "viewers"])
def test_the_anonymous_admin_id_is_nobody(key: str) -> None:
    """Regression (issue 11): /whoami from an anonymous group admin showed 1087968824, which
    is Telegram's GroupAnonymousBot for every anonymous admin; the config took it as a person."""
    message = error_of({"telegram": {key: [1001, 1087968824]}})
    assert f"telegram.{key}: 1087968824 is not a person but Telegram's GroupAnonymousBot" in message
    assert "send /whoami to the bot in private" in message
