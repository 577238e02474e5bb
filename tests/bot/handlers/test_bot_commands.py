"""Every command through the real Application and the offline Bot API, with good and bad
arguments, in private and in the team group chats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from bot_helpers import (
    ALIENS_CHAT,
    MATRIX_CHAT,
    OPERATOR,
    OWNER,
    SIMULATED,
    Desk,
    bot_config,
    buttons,
    running_desk,
)
from stack_helpers import force_status
from telegram.ext import AIORateLimiter

from bot.roles import COMMANDS
from bot.runner import BotRunner
from core.alerting.book import AlertKind, Finding
from core.auth.keyring import KeyRing
from core.clock import ManualClock
from core.errors import ConfigError
from core.fleet import Fleet
from core.models import AgentStatus
from offline_botapi.server import OfflineBotAPI


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    async with running_desk(tmp_path) as d:
        yield d
        assert not d.errors.records, [r.getMessage() for r in d.errors.records]


def usage_of(message: dict[str, Any]) -> str:
    assert "Usage:" in message["text"], message["text"]
    return str(message["text"])


async def test_menu_is_registered(desk: Desk) -> None:
    app = desk.runner.application
    assert app is not None and isinstance(app.bot.rate_limiter, AIORateLimiter)
    menu = desk.api.commands()
    assert [c["command"] for c in menu] == [c.name for c in COMMANDS]
    assert {"issue", "reset", "rotate", "authcheck", "digest"} <= {c["command"] for c in menu}


async def test_start_help_whoami(desk: Desk) -> None:
    start = await desk.ask(OWNER, "/start")
    assert "You are owner here. 2 companies, 6 agents, 0 open issues." in start["text"]
    helped = await desk.ask(OWNER, "/help")
    assert (
        "/rotate AGENT|all" in helped["text"]
        and "/issue ASSIGNEE [!high|!low|…] [!backlog] TITLE [| body]" in helped["text"]
    )
    who = await desk.ask(OWNER, "/whoami")
    assert "Telegram user id 1001" in who["text"] and "Role here: owner" in who["text"]
    in_group = await desk.ask(OWNER, "/whoami@fleetbot_test_bot", ALIENS_CHAT)
    assert f"This chat's id: {ALIENS_CHAT}" in in_group["text"]


async def test_status_fits_a_phone_screen(desk: Desk) -> None:
    await force_status(desk.fleet.service, "bishop", AgentStatus.ERROR)
    await desk.fleet.service.file_issue(title="Ship", assignee="ripley", actor="test")
    await desk.settle()
    status = await desk.ask(OWNER, "/status")
    text = status["text"]
    assert "Alex Kerber AB · ALI" in text and "StarDust Meet · MAT" in text
    assert "🔴 1 error" in text and "🟢 3 idle" in text
    assert "LLM this month: 1 call" in text and "saved by skipped heartbeats" in text
    assert len(text.splitlines()) <= 16 and len(text) < 800
    assert "takes no arguments" in usage_of(await desk.ask(OWNER, "/status now"))


async def test_agents_and_agent_card(desk: Desk) -> None:
    everyone = await desk.ask(OWNER, "/agents")
    assert "Alex Kerber AB (aliens)" in everyone["text"] and "trinity" in everyone["text"]
    matrix = await desk.ask(OWNER, "/agents MAT")
    assert "trinity" in matrix["text"] and "ripley" not in matrix["text"]
    # In a team chat the team's own agents come first, by default only them.
    team = await desk.ask(OPERATOR, "/agents@fleetbot_test_bot", MATRIX_CHAT)
    assert "morpheus" in team["text"] and "bishop" not in team["text"]
    assert "no company 'nope'" in (await desk.ask(OWNER, "/agents nope"))["text"]
    usage_of(await desk.ask(OWNER, "/agents a b"))

    card = await desk.ask(OWNER, "/agent Ripley")
    assert card["text"].startswith("🟢 Ripley ripley")
    assert {"♻️ Reset", "⏸ Pause", "⏰ Wake", "🔑 Rotate token", "📜 Recent runs"} <= set(
        buttons(card)
    )
    assert "name the agent" in usage_of(await desk.ask(OWNER, "/agent"))
    assert "no agent 'ghost'" in (await desk.ask(OWNER, "/agent ghost"))["text"]


async def test_issue_with_arguments_files_and_the_agent_works_it(desk: Desk) -> None:
    filed = await desk.ask(OWNER, "/issue cto@aliens Fix the <login> | Steps: 1 & 2")
    assert filed["text"].startswith("📝 Filed ALI-1 for bishop.")
    assert "Fix the <login>" in filed["text"] and "Steps: 1 & 2" in filed["text"]
    assert {"👤 Assign", "✖️ Cancel"} <= set(buttons(filed))
    await desk.settle()
    issue = await desk.fleet.service.issue("ALI-1")
    assert (issue.assignee_id, issue.created_by, issue.status) == ("bishop", "tg:1001", "done")

    ambiguous = await desk.ask(OWNER, "/issue cto Another")
    assert "matches 2 agents" in ambiguous["text"] and "cto@COMPANY" in ambiguous["text"]
    # In a team chat a role means that team's role.
    here = await desk.ask(OPERATOR, "/issue@fleetbot_test_bot cto Another", MATRIX_CHAT)
    assert "Filed MAT-1 for trinity" in here["text"]
    assert "needs a title" in usage_of(await desk.ask(OWNER, "/issue bishop"))
    assert "no agent or role 'cfo'" in (await desk.ask(OWNER, "/issue cfo Money"))["text"]


async def test_issues_filters_and_card(desk: Desk) -> None:
    svc = desk.fleet.service
    await svc.pause("hicks", "test")
    await svc.file_issue(title="One", assignee="hicks", actor="test")
    await svc.file_issue(title="Two", assignee="trinity", actor="test")
    await desk.settle()
    listed = await desk.ask(OWNER, "/issues")
    assert "ALI-1 todo → hicks · One" in listed["text"]
    assert "Issues: open" in listed["text"]
    done = await desk.ask(OWNER, "/issues done matrix")
    assert "MAT-1" in done["text"] and "ALI-1" not in done["text"]
    mine = await desk.ask(OWNER, "/issues @hicks all")
    assert "ALI-1" in mine["text"] and "MAT-1" not in mine["text"]
    by_agent = await desk.ask(OWNER, "/issues hicks")
    assert "for hicks" in by_agent["text"]
    blocked = await desk.ask(OWNER, "/issues blocked")
    assert "None. File one with /issue." in blocked["text"]
    card = await desk.ask(OWNER, "/issues ali-1")
    assert card["text"].startswith("📝 ALI-1 · One") and "Assignee: hicks" in card["text"]
    assert "unknown status" in usage_of(await desk.ask(OWNER, "/issues status:bogus"))
    assert "not an issue id, a company or an agent" in usage_of(
        await desk.ask(OWNER, "/issues zzz")
    )


async def test_assign_and_role(desk: Desk) -> None:
    svc = desk.fleet.service
    await svc.pause("hicks", "test")
    await svc.pause("hudson", "test")
    await svc.file_issue(title="Check", assignee="hicks", actor="test")
    moved = await desk.ask(OPERATOR, "/assign ALI-1 hudson")
    assert "ALI-1 now goes to hudson" in moved["text"]
    assert (await svc.issue("ALI-1")).assignee_id == "hudson"
    assert "give the issue and the assignee" in usage_of(await desk.ask(OWNER, "/assign ALI-1"))
    assert "no issue 'ALI-99'" in (await desk.ask(OWNER, "/assign ALI-99 hicks"))["text"]
    assert "works for matrix" in (await desk.ask(OWNER, "/assign ALI-1 trinity"))["text"]

    renamed = await desk.ask(OWNER, "/role hicks lead")
    assert "hicks is now lead (was qa)" in renamed["text"]
    assert (await svc.agent("hicks")).role == "lead"
    usage_of(await desk.ask(OWNER, "/role hicks"))
    assert "one word" in (await desk.ask(OWNER, "/role hicks le@d"))["text"]


async def test_reset_pause_resume_wake(desk: Desk) -> None:
    svc = desk.fleet.service
    await force_status(svc, "ripley", AgentStatus.ERROR)
    reset = await desk.ask(OPERATOR, "/reset ripley")
    assert "ripley is idle again and woken" in reset["text"]
    assert (await svc.agent("ripley")).status is AgentStatus.IDLE
    usage_of(await desk.ask(OPERATOR, "/reset"))
    nothing = await desk.ask(OPERATOR, "/reset all")
    assert "Nothing to reset" in nothing["text"]

    paused = await desk.ask(OPERATOR, "/pause bishop on leave until Monday")
    assert "bishop is paused" in paused["text"] and "on leave until Monday" in paused["text"]
    assert "▶️ Resume" in buttons(paused)
    resumed = await desk.ask(OPERATOR, "/resume bishop")
    assert "back on its heartbeat" in resumed["text"]
    again = await desk.ask(OPERATOR, "/resume bishop")
    assert "bishop is idle, not paused; nothing to resume" in again["text"]
    woke = await desk.ask(OPERATOR, "/wake ripley")
    assert woke["text"] == "⏰ Woke ripley (an empty inbox)."
    usage_of(await desk.ask(OPERATOR, "/wake"))
    usage_of(await desk.ask(OPERATOR, "/pause"))


async def test_rotate_one_and_authcheck(desk: Desk) -> None:
    svc, auth = desk.fleet.service, desk.fleet.auth
    before = (await svc.agent("ripley")).token_version
    rotated = await desk.ask(OWNER, "/rotate ripley")
    assert "New token for ripley written to its token file and verified" in rotated["text"]
    assert (await svc.agent("ripley")).token_version == before + 1
    usage_of(await desk.ask(OWNER, "/rotate"))
    confirm = await desk.ask(OWNER, "/rotate all")
    assert "Rotate every key and token?" in confirm["text"]
    assert "🔑 Rotate all tokens" in buttons(confirm)

    ok = await desk.ask(OPERATOR, "/authcheck")
    assert "6/6 agents authenticated" in ok["text"]
    auth.token_file("morpheus").write_text("not-a-token")
    bad = await desk.ask(OWNER, "/authcheck")
    assert "5/6 agents authenticated" in bad["text"] and "morpheus: malformed" in bad["text"]
    assert "🔑 Rotate all tokens" in buttons(bad)  # owners get the fix one tap away
    assert (await svc.agent("morpheus")).status is AgentStatus.UNAUTHENTICATED
    usage_of(await desk.ask(OWNER, "/authcheck now"))


async def test_alerts_mute_unmute(desk: Desk) -> None:
    book = desk.fleet.alerts
    quiet = await desk.ask(OWNER, "/alerts")
    assert "0 open alerts" in quiet["text"] and "Nothing is firing" in quiet["text"]
    await book.raise_(
        Finding(AlertKind.AGENT_ERROR, "agent:ripley", "aliens", "Ripley (ceo)", "run failed")
    )
    [alert] = await book.firing()
    listed = await desk.ask(OWNER, "/alerts")
    assert (
        f"#{alert.id} Agents in error · firing" in listed["text"]
        and "Ripley (ceo)" in listed["text"]
    )
    assert {f"👍 Ack #{alert.id}", f"🔕 #{alert.id} 4h"} <= set(buttons(listed))
    status = await desk.ask(OWNER, "/status")
    assert "🚨 1 alert firing" in status["text"]

    muted = await desk.ask(OPERATOR, f"/mute {alert.id} 4h deploying a fix")
    assert f"Muted alert:{alert.id} for 4h" in muted["text"] and "/unmute m1" in muted["text"]
    listed = await desk.ask(OWNER, "/alerts")
    assert "muted until" in listed["text"] and "deploying a fix" in listed["text"]
    assert "not a duration" in usage_of(await desk.ask(OWNER, f"/mute {alert.id} soon"))
    assert "how long" in usage_of(await desk.ask(OWNER, "/mute"))
    assert "no alert #99" in (await desk.ask(OWNER, "/mute 99 1h"))["text"]
    lifted = await desk.ask(OPERATOR, "/unmute m1")
    assert f"Lifted 1 mute: m1 (alert:{alert.id})" in lifted["text"]
    assert "nothing muted matches" in (await desk.ask(OPERATOR, "/unmute m1"))["text"]
    usage_of(await desk.ask(OPERATOR, "/unmute"))
    usage_of(await desk.ask(OPERATOR, "/alerts all"))


async def test_costs_and_digest(desk: Desk) -> None:
    await desk.fleet.service.file_issue(title="Work", assignee="ripley", actor="test")
    await desk.settle()
    costs = await desk.ask(OWNER, "/costs")
    assert "LLM spend · 2026-01" in costs["text"]
    assert "Alex Kerber AB: $0.0060" in costs["text"] and "1 LLM call" in costs["text"]
    assert "ripley $0.0060 · 1 run" in costs["text"]
    team = await desk.ask(OWNER, "/costs matrix")
    assert "StarDust Meet" in team["text"] and "Alex Kerber" not in team["text"]
    assert "'x' is neither a company nor an agent" in (await desk.ask(OWNER, "/costs x"))["text"]

    digest = await desk.ask(OWNER, "/digest")
    assert digest["text"].startswith("Daily digest")
    assert "Issues: 1 filed · 1 done · 0 blocked" in digest["text"]
    assert "Empty queue" in digest["text"]  # matrix got no work at all
    usage_of(await desk.ask(OWNER, "/digest please"))


async def test_daily_digest_goes_to_owners_and_team_chats(tmp_path: Path) -> None:
    from bot.handlers.overview import JOB_NAME, deliver_digest

    async with running_desk(tmp_path, daily_digest=True) as desk:
        app = desk.runner.application
        assert app is not None and app.job_queue is not None
        [job] = app.job_queue.get_jobs_by_name(JOB_NAME)
        assert job.next_t is not None and (job.next_t.hour, job.next_t.minute) == (9, 0)
        sent = await deliver_digest(app.bot, app.bot_data["fleetbot.desk"], desk.clock.now())
        assert sent == 3
        owner = await desk.reply(OWNER)
        assert "Alex Kerber AB" in owner["text"] and "StarDust Meet" in owner["text"]
        team = await desk.reply(MATRIX_CHAT)
        assert "StarDust Meet" in team["text"] and "Alex Kerber AB" not in team["text"]


async def test_unknown_commands_and_other_bots(desk: Desk) -> None:
    unknown = await desk.ask(OWNER, "/frobnicate")
    assert unknown["text"] == "I don't know /frobnicate. /help lists the commands."
    assert (await desk.ask(OWNER, "/cancel"))["text"] == "Nothing to cancel."
    await desk.api.send_text(OWNER, "/status@some_other_bot", chat_id=ALIENS_CHAT)
    await desk.api.send_text(OWNER, "/agents@other_bot", chat_id=ALIENS_CHAT)
    mine = await desk.ask(OWNER, "/whoami@fleetbot_test_bot", ALIENS_CHAT)
    assert "1001" in mine["text"]
    assert len(desk.api.messages(ALIENS_CHAT)) == 1  # only our bot's command got an answer
    assert mine["reply_to_message"]["text"] == "/whoami@fleetbot_test_bot"


async def test_an_edited_command_is_not_run_again(desk: Desk) -> None:
    """Regression (issue 11, item 4): editing `/issue …` filed a second issue, because
    python-telegram-bot hands edited messages to command handlers too."""
    sent, filed = await desk.say(OPERATOR, "/issue hicks Check the logs")
    assert "Filed ALI-1 for hicks" in filed["text"]
    await desk.api.edit_text(OPERATOR, OPERATOR, sent["message_id"], "/issue hicks Check the disk")
    typo, unknown = await desk.say(OPERATOR, "/frobnicate")
    assert unknown["text"].startswith("I don't know /frobnicate")
    await desk.api.edit_text(OPERATOR, OPERATOR, typo["message_id"], "/frobnicate now")
    in_group, _ = await desk.say(OPERATOR, "/issue bishop Rotate staging keys", ALIENS_CHAT)
    await desk.api.edit_text(OPERATOR, ALIENS_CHAT, in_group["message_id"], "/issue bishop Hm")
    # Updates are handled in order: once this is answered, the edits were seen and ignored.
    after = await desk.ask(OPERATOR, "/whoami")
    assert after["text"].startswith("You are Omar")
    assert sorted(i.id for i in await desk.fleet.service.issues()) == ["ALI-1", "ALI-2"]
    assert (await desk.fleet.service.issue("ALI-1")).title == "Check the logs"
    assert len(desk.api.messages(OPERATOR)) == 3  # the card, the "I don't know", /whoami
    filed_in_group = [m for m in desk.api.messages(ALIENS_CHAT) if "Filed" in m["text"]]
    assert len(filed_in_group) == 1
    assert await desk.command_rows(OPERATOR) == 4  # /issue twice, /frobnicate, /whoami


async def test_secrets_agents_wrote_are_masked_on_cards(desk: Desk) -> None:
    """Regression (issue 11, item 7): an issue card showed the body and comments as agents
    wrote them, run tokens and bearer headers included, to everyone in the team chat."""
    svc = desk.fleet.service
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJiaXNob3AiLCJydW4iOiJyMSJ9.c2lnbmF0dXJlLXZhbHVl"
    await svc.pause("bishop", "test")
    issue = await svc.file_issue(
        title="Fix the hook", assignee="bishop", actor="agent:ripley", body=f"It sends {jwt}."
    )
    await svc.comment(issue.id, "Tried curl -H 'Authorization: Bearer s3cr3t-v4lue-xyz'", "bishop")
    card = await desk.ask(OWNER, f"/issues@fleetbot_test_bot {issue.id}", ALIENS_CHAT)
    assert "It sends [redacted]." in card["text"]
    assert "bishop, just now: Tried curl -H 'Authorization: [redacted]'" in card["text"]
    assert jwt not in card["text"] and "s3cr3t" not in card["text"]


async def test_long_answers_are_split(tmp_path: Path) -> None:
    many = [
        {
            "id": f"agent-{i:03d}",
            "name": f"Agent <{i}> & co",
            "role": "worker",
            "runtime": SIMULATED,
        }
        for i in range(150)
    ]
    company = {"id": "big", "name": "Big Co", "prefix": "BIG", "agents": many}
    async with running_desk(tmp_path, config=bot_config(tmp_path, companies=[company])) as desk:
        await desk.api.send_text(OWNER, "/agents")
        first = await desk.reply(OWNER)
        second = await desk.reply(OWNER)
        assert first["text"].startswith("Big Co (big)")
        assert len(first["text"]) <= 4096 and len(second["text"]) <= 4096
        assert "agent-149" in second["text"] and "Agent <0> & co" in first["text"]
        assert not desk.errors.records


async def test_429_is_waited_out_and_retried(desk: Desk) -> None:
    desk.api.inject_429(1, retry_after=1, methods=["sendMessage"])
    started = time.monotonic()
    reply = await desk.ask(OWNER, "/whoami")
    assert "1001" in reply["text"]
    assert time.monotonic() - started >= 1.0
    assert desk.api.faults_served["429"] == 1
    assert len(desk.api.calls("sendMessage")) == 1  # sent once, after the wait


async def test_a_crash_is_logged_and_explained(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(desk.fleet.service, "agents", broken)
    reply = await desk.ask(OWNER, "/agents")
    assert "Something went wrong on fleetbot's side (RuntimeError)" in reply["text"]
    [record] = desk.errors.records
    assert record.exc_info is not None and "disk on fire" in str(record.exc_info[1])
    desk.errors.records.clear()
    [row] = [r for r in await desk.audit() if r["action"] == "/agents"]
    assert row["result"] == "crashed" and row["actor"] == "tg:1001"


async def test_missing_token_says_what_to_set(tmp_path: Path) -> None:
    config = bot_config(tmp_path)
    KeyRing.create(config.auth.keyring, ManualClock().now())
    async with Fleet(config, {}, ManualClock(), serve_api=False, periodic=False) as fleet:
        with pytest.raises(ConfigError) as caught:
            async with BotRunner(fleet, {}):
                pass
    assert "env var FLEETBOT_TELEGRAM_TOKEN" in caught.value.message
    assert "fleetbot demo" in caught.value.message


async def test_a_refused_token_says_so_without_showing_it(tmp_path: Path) -> None:
    config = bot_config(tmp_path)
    KeyRing.create(config.auth.keyring, ManualClock().now())
    api = OfflineBotAPI()
    env = {"FLEETBOT_TELEGRAM_TOKEN": "42:wrong-token-from-botfather"}
    async with Fleet(config, env, ManualClock(), serve_api=False, periodic=False) as fleet:
        with pytest.raises(ConfigError) as caught:
            async with BotRunner(
                fleet, env, request=api.make_request(), get_updates_request=api.make_request()
            ):
                pass
    assert "Telegram refused the bot token in env var FLEETBOT_TELEGRAM_TOKEN" in str(caught.value)
    assert "wrong-token" not in str(caught.value)


async def test_webhook_mode_checks_the_secret_token(tmp_path: Path) -> None:
    import httpx

    port = _free_port()
    config = bot_config(
        tmp_path,
        telegram={
            "mode": "webhook",
            "webhook": {"url": "https://bot.example.com/tg/hook", "listen": f"127.0.0.1:{port}"},
        },
    )
    KeyRing.create(config.auth.keyring, ManualClock().now())
    api = OfflineBotAPI()
    api.add_user(OWNER, "Olga")
    env = {"FLEETBOT_TELEGRAM_TOKEN": api.token, "FLEETBOT_WEBHOOK_SECRET": "s3cret-token"}
    async with Fleet(config, env, ManualClock(), serve_api=False, periodic=False) as fleet:
        with pytest.raises(ConfigError, match="FLEETBOT_WEBHOOK_SECRET"):
            async with BotRunner(
                fleet, {"FLEETBOT_TELEGRAM_TOKEN": api.token}, request=api.make_request()
            ):
                pass
        async with BotRunner(fleet, env, request=api.make_request(), daily_digest=False):
            assert (
                api.webhook is not None and api.webhook["url"] == "https://bot.example.com/tg/hook"
            )
            update = {
                "update_id": 1,
                "message": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "chat": {"id": OWNER, "type": "private", "first_name": "Olga"},
                    "from": {"id": OWNER, "is_bot": False, "first_name": "Olga"},
                    "text": "/whoami",
                    "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
                },
            }
            url = f"http://127.0.0.1:{port}/tg/hook"
            async with httpx.AsyncClient(trust_env=False) as client:
                wrong = await client.post(
                    url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}
                )
                assert wrong.status_code == 403
                right = await client.post(
                    url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
                )
                assert right.status_code == 200
            reply = await api.wait_for_message(OWNER)
            assert "1001" in reply["text"]


async def test_base_url_is_configurable(tmp_path: Path) -> None:
    """No injected requests: the bot reaches the Bot API at telegram.base_url (over loopback)."""
    api = OfflineBotAPI()
    api.add_user(OWNER, "Olga")
    async with api.serve() as base_url:
        config = bot_config(tmp_path, telegram={"base_url": base_url})
        KeyRing.create(config.auth.keyring, ManualClock().now())
        env = {"FLEETBOT_TELEGRAM_TOKEN": api.token}
        async with (
            Fleet(config, env, ManualClock(), serve_api=False, periodic=False) as fleet,
            BotRunner(fleet, env, daily_digest=False),
        ):
            await api.send_text(OWNER, "/whoami")
            reply = await api.wait_for_message(OWNER)
            assert "1001" in reply["text"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("/status now", "/status"),
        ("/agents a b", "/agents [company]"),
        ("/agent", "/agent ID"),
        ("/issues a b c", "/issues [ISSUE-ID"),
        ("/issue bishop", "/issue ASSIGNEE [!high|!low|…] [!backlog] TITLE [| body]"),
        ("/assign ALI-1", "/assign ISSUE ASSIGNEE"),
        ("/role hicks", "/role AGENT ROLE"),
        ("/reset", "/reset AGENT|all"),
        ("/reset a b", "/reset AGENT|all"),
        ("/pause", "/pause AGENT [reason]"),
        ("/resume", "/resume AGENT"),
        ("/wake a b", "/wake AGENT"),
        ("/rotate", "/rotate AGENT|all"),
        ("/authcheck all", "/authcheck"),
        ("/mute 1", "/mute TARGET DURATION [reason]"),
        ("/unmute", "/unmute ID"),
        ("/alerts x", "/alerts"),
        ("/costs a b", "/costs [company|AGENT]"),
        ("/digest x", "/digest"),
    ],
)
async def test_wrong_arguments_get_the_usage(desk: Desk, line: str, usage: str) -> None:
    reply = await desk.ask(OWNER, line)
    assert f"Usage: {usage}" in reply["text"]
    [row] = [r for r in await desk.audit(5) if r["action"] == line.split()[0]]
    assert row["result"] == "usage"
