"""The first ten minutes of a new user: what the README and `fleetbot init` tell them to type
works as typed, `fleetbot check` says what would keep the bot from being usable, and the CLI
talks about CLI commands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fleetbot import cli

REPO = Path(__file__).resolve().parents[2]
ACTIVATE = ". .venv/bin/activate"


def test_the_readme_activates_the_virtualenv_before_any_bare_fleetbot() -> None:
    readme = (REPO / "README.md").read_text()
    two = readme.index("## Two commands")
    after_blocks = readme.index("```", readme.index("bash scripts/test.sh")) + 3
    activated = readme.find(ACTIVATE, after_blocks)
    assert activated != -1, "activate the virtualenv right after the two commands"
    first_bare = re.search(r"(?<![/\w.-])fleetbot (demo|run|init|check|tokens)", readme[two:])
    assert first_bare is not None
    bare_at = two + first_bare.start()
    # The one-liner of the two commands uses .venv/bin/fleetbot; everything else comes later.
    assert bare_at > activated or readme[bare_at - len(".venv/bin/") : bare_at] == ".venv/bin/"
    later = re.search(r"(?<![/\w.-])fleetbot (demo|run|init|check|tokens)", readme[after_blocks:])
    assert later is not None and after_blocks + later.start() > activated


def test_init_prints_next_steps_that_work_as_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "my bot"]) == 0
    text = capsys.readouterr().out
    steps = text.split("Next, in this shell:\n", 1)[1].splitlines()
    assert steps[0] == "  read -rs FLEETBOT_TELEGRAM_TOKEN && export FLEETBOT_TELEGRAM_TOKEN"
    check = steps[1].strip()
    assert check.endswith("check -c 'my bot/config.yaml'"), check
    assert steps[2].strip().endswith("run -c 'my bot/config.yaml'")
    # The check line's arguments, as the shell splits them, pass.
    assert cli.main(shlex.split(check)[1:]) == 0
    assert "<" not in "\n".join(steps[:3]), "a <placeholder> is a shell redirect when pasted"


def test_check_warns_when_nobody_could_use_the_bot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    (tmp_path / "config.yaml").write_text(
        "companies:\n"
        "  - id: aliens\n    name: Aliens\n    prefix: ALI\n    agents:\n"
        "      - {id: ripley, role: ceo}\n"
        "      - id: hicks\n        role: cmo\n        runtime:\n"
        "          kind: http\n          url: http://127.0.0.1:9/run\n"
        "          secret_headers: {Authorization: {env: HICKS_AUTH}}\n"
    )
    monkeypatch.delenv("FLEETBOT_TELEGRAM_TOKEN", raising=False)
    monkeypatch.delenv("HICKS_AUTH", raising=False)
    assert cli.main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    status = cli.main(["check", "-c", str(config)])
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert any("telegram.owners and telegram.operators are empty" in w for w in warnings), out
    assert any("no Telegram bot token in env var FLEETBOT_TELEGRAM_TOKEN" in w for w in warnings)
    assert any(
        w.startswith("warning: env var HICKS_AUTH is not set") and "agent hicks" in w
        for w in warnings
    ), out
    assert status == 1  # hicks's runtime fails its probe; the warnings add no failure


def test_warnings_do_not_change_the_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLEETBOT_TELEGRAM_TOKEN", raising=False)
    assert cli.main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    assert cli.main(["check", "-c", str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: ") == 2, out
    config = tmp_path / "config.yaml"
    config.write_text(config.read_text().replace("owners: []", "owners: [42]"))
    monkeypatch.setenv("FLEETBOT_TELEGRAM_TOKEN", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ")
    assert cli.main(["check", "-c", str(config)]) == 0
    assert "warning: " not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("core", "cli_text"),
    [
        ("no agent 'x'; /agents lists them", "no agent 'x'; `fleetbot check -v` lists them"),
        ("no alert #4; /alerts lists the open ones", "no alert #4"),
        ("no agent or role 'cfo' in aliens; /agents lists them", None),
        ("a plain sentence, with a/b in it", "a plain sentence, with a/b in it"),
    ],
)
def test_cli_errors_name_cli_commands(core: str, cli_text: str | None) -> None:
    said = cli.cli_message(core)
    assert not re.search(r"(^|\s)/[a-z]+", said), said
    if cli_text is not None:
        assert said == cli_text


def test_an_unknown_agent_at_the_cli_points_at_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    config = str(tmp_path / "config.yaml")
    assert cli.main(["tokens", "rotate", "-c", config, "--agent", "nobody"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "fleetbot: no agent 'nobody'; `fleetbot check -v` lists them"


def test_version_and_every_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert re.match(r"fleetbot \S+", capsys.readouterr().out)
    commands = [["init"], ["run"], ["check"], ["demo"], ["tokens"]]
    commands += [["tokens", t] for t in ("rotate", "verify", "jwks")]
    for command in commands:
        with pytest.raises(SystemExit):
            cli.main([*command, "--help"])
        text = capsys.readouterr().out
        description = text.split("\n\n")[1]
        assert not description.startswith(("positional", "options")), (command, text)
        assert description.endswith("."), (command, description)


def test_a_reader_that_goes_away_ends_init_quietly(tmp_path: Path) -> None:
    # Unbuffered, so the child writes each line as it goes and meets the closed pipe early.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "fleetbot.cli", "init", str(tmp_path / "bot")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline().startswith(b"wrote ")
        child.stdout.close()  # `| head -1`
        err = child.stderr.read().decode()
        assert child.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    # init did all its work, not just the part before the reader left
    assert sorted(p.name for p in (tmp_path / "bot" / "secrets" / "tokens").iterdir())
