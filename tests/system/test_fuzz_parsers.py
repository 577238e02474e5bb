"""hypothesis over what people and files hand fleetbot as text: durations, callback data,
command arguments that name alerts, and whole config files.

The rule under test everywhere: bad input gets the parser's own error with a sentence, never a
traceback. test_bot_args.py covers the command parsers on arbitrary text and test_config.py
the config schema on arbitrary parsed YAML; this file adds what those do not reach: the duration
grammar as a property, hostile callback data, and config files as raw text and bytes, deeply
nested, and with anchors and aliases (alias bombs, an alias inside its own anchor).
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bot.confirmations import Confirmations
from bot.roles import Role, button_need
from bot.views import keyboards
from core.alerting.book import _alert_id as alert_id
from core.config import MAX_YAML_DEPTH, MAX_YAML_VALUES, Config, load_config
from core.durations import USAGE, parse_duration
from core.errors import AlertNotFound, ConfigError

FAST = settings(max_examples=200, deadline=None, database=None)

# -- durations ---------------------------------------------------------------------------------

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
ANYTHING = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.smhdw -+eE²٣\u3000", max_size=12),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@FAST
@given(ANYTHING)
def test_a_duration_is_finite_seconds_or_says_what_to_write(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        assert USAGE in str(exc) or re.search(r"(\S+) has no unit: write \1s, \1m or \1h", str(exc))
    else:
        assert isinstance(seconds, float) and 0 <= seconds < math.inf
        assert seconds == 0 or not re.fullmatch(r"\s*[\d.]+\s*", str(value)), "a unit is needed"


@FAST
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS))),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
    st.booleans(),
)
def test_units_add_up_in_any_case_and_spacing(
    parts: list[tuple[int, str]], upper: bool, spaced: bool
) -> None:
    text = (" " if spaced else "").join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * UNITS[unit] for n, unit in parts)
    assert parse_duration(f" {text.upper() if upper else text} ") == pytest.approx(expected)


# -- callback data -----------------------------------------------------------------------------

# Telegram relays whatever a (modified) client puts in callback_data, so a press can carry
# anything; it must be read as one of ours or answered as stale, never crash the handler.
PIECE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters=":"), max_size=10
) | st.sampled_from(["", "0", "12", "²", "٣", "-1", " 7", "1e3", "9" * 20, "reset_all", "ack"])
CALLBACK_DATA = st.one_of(
    st.text(max_size=64),
    st.lists(PIECE, max_size=6).map(":".join),
    st.tuples(
        st.sampled_from([k.value for k in keyboards.Kind] + ["z", ""]), PIECE, PIECE, PIECE
    ).map(lambda p: f"v1:{p[0]}:{p[1]}:{p[2]}" + (f":{p[3]}" if p[3] else "")),
)


@FAST
@given(CALLBACK_DATA)
def test_any_callback_data_is_a_press_or_stale(data: str) -> None:
    try:
        press = keyboards.decode(data)
    except keyboards.StaleButton as exc:
        assert exc.reason.endswith(".")
        return
    assert isinstance(button_need(press.kind.value, press.verb, press.arg, press.ref), Role)
    if press.kind is keyboards.Kind.ALERT:
        try:
            assert alert_id(press.ref) >= 0
        except AlertNotFound as exc:
            assert "alert" in exc.message
    if press.kind is keyboards.Kind.CONFIRM:  # an id to look up, never parsed
        assert Confirmations().find(press.ref, 0, time.time()) is None


@pytest.mark.parametrize("text", ["²", "¹²", "v1", "#٣", "alert:⁵", "1" * 13, "", "-3", "0x1"])
def test_alert_ids_are_ascii_numbers(text: str) -> None:
    """Regression: "²" passed str.isdigit() and then crashed int() (a ValueError, not
    AlertNotFound) for a /mute or /unmute argument or an alert button's data."""
    with pytest.raises(AlertNotFound, match="alert ids are numbers"):
        alert_id(text)
    assert alert_id(" #12 ") == 12 and alert_id("alert:7") == 7


def test_a_confirmation_id_that_is_not_one_asked_is_nothing() -> None:
    """Regression: `v1:c:reset_all:yes:²` crashed the confirm handler in int(). A confirmation
    button now carries only the id of one the bot keeps; nothing in it is parsed."""
    pending = Confirmations()
    asked = pending.ask("reset_all", 1001, 1001, 0.0)
    for made_up in ("²", "", "-5", "1767225600", "reset_all", asked.id + "x"):
        assert pending.find(made_up, 1001, 1.0) is None
    assert pending.find(asked.id, 1001, 1.0) == asked


# -- config files ------------------------------------------------------------------------------

SAFE_KEYS = ["storage", "api", "auth", "defaults", "companies", "telegram", "monitors", "x"]
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "!!python/object/apply:os.system ['true']",
            "!!binary AAAA",
            "*undefined",
            "&a",
            "{",
            "[",
            "? ",
            "%YAML 9.9",
            "--- !<tag:x>",
            "1e999",
            "-1e999",
            ".nan",
            "9" * 400,
            "0x" + "f" * 64,
            "'\\x00'",
            '"\\ud800"',
            "\t",
            "\x00\x01",
            "\ufeff",
        ]
    ),
)


def _document(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in pairs)


CONFIG_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.tuples(st.sampled_from(SAFE_KEYS), HOSTILE), max_size=5).map(_document),
    HOSTILE.map(lambda v: f"companies:\n  - id: {v}\n    name: {v}\n    agents: [{{id: {v}}}]\n"),
    HOSTILE.map(lambda v: f"defaults:\n  heartbeat: {v}\n  max_turns_per_run: {v}\n"),
    st.integers(min_value=1, max_value=300).map(lambda n: "a: " + "[" * n + "]" * n),
    st.integers(min_value=1, max_value=300).map(lambda n: "a: " + "{b: " * n + "1" + "}" * n),
)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config") / "config.yaml"


def _load(path: Path) -> Config | ConfigError:
    try:
        return load_config(path, {})
    except ConfigError as exc:
        assert str(exc).startswith(str(path)), str(exc)[:200]
        assert "Traceback" not in str(exc)
        return exc


@settings(max_examples=300, deadline=None, database=None)
@given(CONFIG_TEXT)
def test_any_config_text_loads_or_says_what_is_wrong(config_file: Path, text: str) -> None:
    config_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load(config_file)


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_any_config_bytes_load_or_say_what_is_wrong(config_file: Path, data: bytes) -> None:
    config_file.write_bytes(data)
    _load(config_file)


def _bomb(levels: int, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("alias bomb", _bomb(9), f"more than {MAX_YAML_VALUES:,} values"),
        ("wide alias bomb", _bomb(4, width=200), f"more than {MAX_YAML_VALUES:,} values"),
        ("alias bomb in companies", "companies: " + _bomb(9).replace("\n", "\n  "), "values"),
        ("alias inside its own anchor", "a: &a [*a]\n", "refers to itself"),
        ("alias inside its own mapping", "a: &a {b: *a}\n", "refers to itself"),
        ("deep lists", "a: " + "[" * 5000 + "]" * 5000, f"deeper than {MAX_YAML_DEPTH}"),
        (
            "deep mappings",
            "a: " + "{b: " * 3000 + "1" + "}" * 3000,
            f"deeper than {MAX_YAML_DEPTH}",
        ),
        ("deep block", "".join(" " * i + f"k{i}:\n" for i in range(200)), "deeper than"),
    ],
)
def test_hostile_yaml_shapes_are_refused_quickly(
    config_file: Path, name: str, text: str, problem: str
) -> None:
    """Regression: a 9-level alias bomb (a 300-byte file) took minutes in the config checks,
    an alias inside its own anchor and 5,000 nested brackets raised RecursionError."""
    config_file.write_text(text)
    start = time.perf_counter()
    got = _load(config_file)
    assert isinstance(got, ConfigError), name
    assert problem in got.message, got.message
    assert time.perf_counter() - start < 2.0, name


def test_anchors_and_aliases_still_work_for_real_configs(config_file: Path) -> None:
    config_file.write_text(
        "defaults: &d\n  heartbeat: 2h\n"
        "companies:\n"
        "  - id: aliens\n    name: Aliens\n    prefix: ALI\n"
        "    agents:\n"
        "      - &agent {id: ripley, role: ceo, runtime: {kind: simulated, latency: 0}}\n"
        "      - {<<: *agent, id: bishop, role: cto}\n"
    )
    config = load_config(config_file, {})
    assert [a.id for a in config.companies[0].agents] == ["ripley", "bishop"]
    assert config.defaults.heartbeat == 7200


@settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=30))
def test_alias_graphs_are_sized_without_expanding_them(
    config_file: Path, levels: int, width: int
) -> None:
    config_file.write_text(_bomb(levels, width))
    start = time.perf_counter()
    got = _load(config_file)
    expanded = sum(width**i for i in range(1, levels + 1))
    if expanded > MAX_YAML_VALUES:
        assert isinstance(got, ConfigError) and "values" in got.message
    else:
        assert isinstance(got, ConfigError) and "unknown key" in got.message
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("port", ["²", "٨٠", "65536", "", "8o"])
@pytest.mark.parametrize("section", ["api", "webhook"])
def test_listen_ports_are_ascii_numbers(config_file: Path, section: str, port: str) -> None:
    """Regression: "host:²" passed str.isdigit(); the webhook's listen was not checked at all
    and crashed int() when the bot started."""
    key = (
        "api:\n  listen"
        if section == "api"
        else "telegram:\n  mode: webhook\n  webhook:\n    url: https://x.example\n    listen"
    )
    config_file.write_text(f"{key}: '127.0.0.1:{port}'\n")
    got = _load(config_file)
    assert isinstance(got, ConfigError) and "write host:port" in got.message, got
