"""A Telegram outage in real time: the bot, the core and the notifier against the offline Bot
API, which goes dark for `--outage` seconds (default 60; the figures in docs/reliability.md are
for a 10-minute one), then answers a storm of 429s.

While Telegram is unreachable (every call fails, the bot's polling included) an alert is raised
every `--every` seconds, alternating between two companies; at the start of the outage one of
the two owners blocks the bot (403) and the aliens' team group is upgraded to a supergroup
(a new chat id). When it ends, `--storm` 429s with retry_after `--retry-after` come first.

Targets: every alert reaches every recipient that can get it exactly once (owner 1001 and each
team chat, the aliens' at its new id; never the old id); the blocked owner is skipped, not
retried forever; all of it within 60 s (the notifier's longest backoff) + the storm's waits +
10 s of the outage's end. The bot polls Telegram again within 40 s of it
(python-telegram-bot's polling backoff tops out at 30 s) and, once it is all over, answers
/status within 5 s. Alerts raised after the outage go straight to the supergroup and
resolutions edit the messages there. Nothing fleetbot logs is an error.
Exit status 1 if a target is missed.

    python bench/telegram_outage.py [--outage 60] [--every 5] [--storm 20] [--retry-after 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bot.notifier import MAX_BACKOFF
from bot.runner import BotRunner
from bot.views.alerts import DIGEST_ICON
from core.alerting.book import AlertKind, Finding
from core.auth.keyring import KeyRing
from core.clock import SystemClock
from core.config import parse_config
from core.fleet import Fleet
from offline_botapi.server import OfflineBotAPI

OWNER, BLOCKER = 1001, 1002
ALIENS_CHAT, MATRIX_CHAT = -4001, -4002
_HEAD = re.compile(r"#(\d+) ")


class Tally(logging.Handler):
    """Counts log records at WARNING and above, by logger; keeps fleetbot's errors."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} {record.name}"] += 1
        if record.levelno >= logging.ERROR and record.name.split(".")[0] in ("bot", "core"):
            self.errors.append(f"{record.name}: {record.getMessage()}")


def config(root: Path) -> Any:
    sim = {"kind": "simulated", "latency": 0}
    return parse_config(
        {
            "telegram": {"owners": [OWNER, BLOCKER]},
            "storage": {"path": str(root / "fleet.db")},
            "auth": {
                "keyring": str(root / "secrets" / "keyring.json"),
                "token_dir": str(root / "secrets" / "tokens"),
            },
            "alerts": {"group_wait": "2s", "repeat_interval": "12h"},
            # The alerts here are raised by hand about agents that do not exist; the monitors,
            # which resolve findings that no longer hold, must not look during the run.
            "monitors": {"interval": "24h"},
            "companies": [
                {
                    "id": "aliens",
                    "name": "Aliens",
                    "prefix": "ALI",
                    "chat": ALIENS_CHAT,
                    "agents": [{"id": "ripley", "role": "ceo", "runtime": sim}],
                },
                {
                    "id": "matrix",
                    "name": "Matrix",
                    "prefix": "MAT",
                    "chat": MATRIX_CHAT,
                    "agents": [{"id": "neo", "role": "ceo", "runtime": sim}],
                },
            ],
        },
        "(bench telegram outage)",
    )


def delivered(api: OfflineBotAPI, chat: int) -> Counter[int]:
    """Alert id -> new messages that carried it to `chat`: its own, or a digest listing it."""
    return Counter(
        int(alert_id)
        for c in api.calls("sendMessage")
        if str(c.params["chat_id"]) == str(chat)
        for alert_id in _carried(str(c.params["text"]))
    )


def _carried(text: str) -> list[str]:
    if text.startswith(DIGEST_ICON):
        return _HEAD.findall(text)
    return [m.group(1) for m in [_HEAD.search(text)] if m]


def messages_to(api: OfflineBotAPI, chat: int) -> tuple[int, int, int]:
    """(messages carrying alerts, of which digests, edits) the bot sent to `chat`."""
    sent = [
        str(c.params["text"])
        for c in api.calls("sendMessage")
        if str(c.params["chat_id"]) == str(chat) and _carried(str(c.params["text"]))
    ]
    digests = sum(text.startswith(DIGEST_ICON) for text in sent)
    edits = [c for c in api.calls("editMessageText") if str(c.params["chat_id"]) == str(chat)]
    return len(sent), digests, len(edits)


async def raise_alert(fleet: Fleet, company: str, n: int) -> int:
    await fleet.alerts.raise_(
        Finding(
            AlertKind.AGENT_ERROR,
            f"agent:{company}-{n}",
            company,
            f"{company}-{n} (dev)",
            f"failure number {n}",
            f"code{n}",
        )
    )
    return max(a.id for a in await fleet.alerts.firing())


async def wait_until(check: Any, seconds: float) -> float | None:
    """Seconds until `check()` held, or None if it did not within `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return None


async def run(args: argparse.Namespace, root: Path) -> tuple[list[str], list[str]]:
    cfg = config(root)
    KeyRing.create(cfg.auth.keyring, time.time())
    api = OfflineBotAPI()
    api.add_user(OWNER, "Owner")
    api.add_user(BLOCKER, "Second owner")
    api.add_group(ALIENS_CHAT, "Aliens", members=[OWNER, BLOCKER])
    api.add_group(MATRIX_CHAT, "Matrix", members=[OWNER, BLOCKER])
    env = {"FLEETBOT_TELEGRAM_TOKEN": api.token}
    tally = Tally()
    logging.getLogger().addHandler(tally)
    lines: list[str] = []
    missed: list[str] = []
    try:
        async with (
            Fleet(cfg, env, SystemClock(), serve_api=False) as fleet,
            BotRunner(
                fleet,
                env,
                request=api.make_request(),
                get_updates_request=api.make_request(read_timeout=15.0),
                daily_digest=False,
            ),
        ):
            api.block_bot(BLOCKER)
            supergroup = api.migrate_group(ALIENS_CHAT)
            api.outage(True)
            started = time.monotonic()
            raised: dict[int, str] = {}
            number: dict[int, int] = {}  # alert id -> the n in its subject
            n = 0
            while time.monotonic() - started < args.outage:
                company = "aliens" if n % 2 == 0 else "matrix"
                alert_id = await raise_alert(fleet, company, n)
                raised[alert_id], number[alert_id] = company, n
                n += 1
                left = args.outage - (time.monotonic() - started)
                await asyncio.sleep(min(args.every, max(0.0, left)))
            outage_calls = api.faults_served["outage"]
            api.outage(False)
            # Telegram is back, under flood control: the backlog meets a storm of 429s.
            api.inject_429(
                args.storm, retry_after=args.retry_after, methods=["sendMessage", "editMessageText"]
            )
            ended, ended_at = time.monotonic(), time.time()

            async def polling() -> bool:
                return any(c.at > ended_at for c in api.calls("getUpdates"))

            polling_back = await wait_until(polling, 60)
            aliens = {a for a, c in raised.items() if c == "aliens"}
            want = {
                OWNER: Counter(dict.fromkeys(raised, 1)),
                supergroup: Counter(dict.fromkeys(aliens, 1)),
                MATRIX_CHAT: Counter(dict.fromkeys(set(raised) - aliens, 1)),
            }

            async def all_there() -> bool:
                return all(set(delivered(api, c)) >= set(w) for c, w in want.items())

            budget = MAX_BACKOFF + args.storm * args.retry_after + 10
            drained = await wait_until(all_there, budget + 30)
            drained = None if drained is None else time.monotonic() - ended
            # After it: a new alert goes straight to the supergroup, resolutions edit there.
            late = await raise_alert(fleet, "aliens", 999)
            first = min(aliens)
            await fleet.alerts.resolve(f"agent_error:agent:aliens-{number[first]}")

            async def late_there() -> bool:
                # Its message is the digest (struck through there) or its own (✅ Resolved).
                edited = any(
                    str(c.params.get("chat_id")) == str(supergroup)
                    and (
                        f"<s>#{first} " in str(c.params.get("text"))
                        or str(c.params.get("text")).startswith(f"✅ <b>#{first} ")
                    )
                    for c in api.calls("editMessageText")
                )
                return delivered(api, supergroup)[late] == 1 and edited

            after = await wait_until(late_there, 30 + args.storm * args.retry_after)
            # Last, the owner checks on things: the bot answers.
            sent = await api.send_text(OWNER, "/status")
            answer_after = await wait_until(lambda: _answered(api, sent["message_id"]), 30)
            await asyncio.sleep(2)  # anything doubled would show up now
            got = {c: delivered(api, c) - Counter({late: 1}) for c in want}
            counts = {c: messages_to(api, c) for c in want}
            states = await fleet.outbox.counts()
    finally:
        logging.getLogger().removeHandler(tally)

    lines += [
        f"outage: {args.outage:.0f} s, {len(raised)} alerts raised during it "
        f"({len(aliens)} aliens, {len(raised) - len(aliens)} matrix); "
        f"{outage_calls} calls refused by the outage; then {api.faults_served['429']} 429s "
        f"(retry_after {args.retry_after} s)",
        f"all delivered {_secs(drained)} after the outage ended (target ≤ {budget:.0f} s)",
        f"the bot polled Telegram again {_secs(polling_back)} after it (target ≤ 40 s); "
        f"answered /status in {_secs(answer_after)} afterwards (target ≤ 5 s)",
        f"after the outage: new alert in the supergroup and resolution edited there: "
        f"{'yes' if after is not None else 'NO'}",
        f"outbox rows: {dict(sorted(states.items()))}",
        "log records ≥ WARNING: " + ", ".join(f"{k} ×{v}" for k, v in sorted(tally.counts.items())),
    ]
    for chat, w in want.items():
        extra = got[chat] - w
        lost = w - got[chat]
        sent, digests, edits = counts[chat]
        lines.append(
            f"chat {chat}: {len(w)} alerts delivered {sum(got[chat].values())} times, "
            f"{sum(extra.values())} doubled or extra, {sum(lost.values())} lost; "
            f"{sent} alert messages ({digests} digests, {sent - digests} single), {edits} edits"
        )
        if extra or lost:
            missed.append(f"chat {chat}: doubled {dict(extra)}, lost {sorted(lost)}")
    if delivered(api, ALIENS_CHAT) or api.messages(BLOCKER):
        missed.append("messages went to the old group id or to the owner who blocked the bot")
    if drained is None or drained > budget:
        missed.append(f"delivery took {_secs(drained)} (target ≤ {budget:.0f} s)")
    if polling_back is None or polling_back > 40:
        missed.append(f"the bot polled again after {_secs(polling_back)} (target ≤ 40 s)")
    if answer_after is None or answer_after > 5:
        missed.append(f"the bot answered /status after {_secs(answer_after)} (target ≤ 5 s)")
    if after is None:
        missed.append("after the outage, the new alert or the resolution edit did not arrive")
    missed += [f"logged an error: {e}" for e in tally.errors]
    return lines, missed


async def _answered(api: OfflineBotAPI, message_id: int) -> bool:
    return any(
        m["message_id"] > message_id and m.get("text", "").startswith("Fleet status")
        for m in api.messages(OWNER)
    )


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--outage", type=float, default=60.0, help="seconds Telegram is down")
    p.add_argument("--every", type=float, default=5.0, help="seconds between alerts meanwhile")
    p.add_argument("--storm", type=int, default=20, help="429s after the outage")
    p.add_argument("--retry-after", type=int, default=5, help="the 429s' retry_after, seconds")
    args = p.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)  # counted by the tally, not printed
    with tempfile.TemporaryDirectory(prefix="fleetbot-outage-") as tmp:
        lines, missed = asyncio.run(run(args, Path(tmp)))
    print("\n".join(lines))
    print("targets: " + ("all met" if not missed else "MISSED"))
    for m in missed:
        print(f"  - {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
