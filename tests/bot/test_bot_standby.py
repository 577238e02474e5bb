"""Among replicas only the leader talks to Telegram: a replica that loses the lease stops
polling (and sending) at once, and one that gains it picks up the updates left waiting."""

from __future__ import annotations

from pathlib import Path

import pytest
from bot_helpers import OWNER, running_desk


async def test_losing_the_lease_stops_polling_and_gaining_it_resumes(tmp_path: Path) -> None:
    async with running_desk(tmp_path) as desk:
        assert "Fleet status" in (await desk.ask(OWNER, "/status"))["text"]
        leadership = desk.fleet.leadership
        await leadership._lose("a test took it away")
        assert desk.runner._leading is None
        await desk.api.send_text(OWNER, "/status")
        with pytest.raises(TimeoutError):  # nobody polls: the update waits at Telegram
            await desk.reply(OWNER, timeout=0.8)
        await leadership._try()  # the lease is free again (this replica still holds it)
        assert leadership.leading and desk.runner._leading is not None
        assert "Fleet status" in (await desk.reply(OWNER))["text"]
