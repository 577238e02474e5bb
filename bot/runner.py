"""Runs the bot inside `fleetbot run`: same event loop as the core and the agent API.

`async with BotRunner(fleet, env):` reads the bot token, builds the Application, publishes the
command menu, starts long polling (or the webhook), starts the alert notifier and the owners'
pinned "waiting on you" cards, and on the way
out stops all of it in reverse order, also when starting failed half-way or the body raised:
each step it starts pushes its stop onto one AsyncExitStack.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.request import BaseRequest

from bot.app import App, build_application, register_commands
from bot.notifier import start_notifier
from bot.redaction import scrub
from bot.waiting import start_pinned_cards
from core import ConfigError, Fleet

log = logging.getLogger(__name__)
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts


def _polling_failed(exc: TelegramError) -> None:
    """getUpdates failed (Telegram unreachable, 5xx, 429): python-telegram-bot retries with a
    growing pause (up to 30 s). One line each, not the traceback it logs by default at ERROR:
    an outage is expected weather, and a log full of tracebacks hides real errors."""
    log.warning("polling Telegram for updates failed (%s); retrying", scrub(str(exc)))


def _logged(stop: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """`stop`, but one that fails is logged and does not keep the ones started before it from
    running, nor does it fail the shutdown."""

    async def undo() -> None:
        try:
            await stop()
        except Exception:
            log.exception("stopping the bot: %s failed", getattr(stop, "__name__", stop))

    return undo


class BotRunner:
    """The Telegram side of the process, as an async context manager."""

    def __init__(
        self,
        fleet: Fleet,
        env: Mapping[str, str],
        *,
        request: BaseRequest | None = None,
        get_updates_request: BaseRequest | None = None,
        **app_options: Any,
    ) -> None:
        self.fleet = fleet
        self.env = env
        self._request = request
        self._get_updates_request = get_updates_request
        self._app_options = app_options
        self.application: App | None = None
        self._stack = AsyncExitStack()
        self._leading: AsyncExitStack | None = None  # the leader's part, while it leads
        self._switch = asyncio.Lock()

    def _token(self) -> str:
        tg = self.fleet.config.telegram
        ref = tg.token_ref()
        token = ref.resolve(self.env)
        if not token:
            raise ConfigError(
                f"no Telegram bot token: set {ref.describe()} to the token @BotFather gave you "
                "(telegram.token_env or telegram.token_file in the config), or start with "
                "--no-bot. No bot yet? `fleetbot demo` runs everything offline."
            )
        return token

    async def __aenter__(self) -> BotRunner:
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _start(self) -> None:
        tg = self.fleet.config.telegram
        app = build_application(
            self.fleet,
            self._token(),
            tg.base_url,
            request=self._request,
            get_updates_request=self._get_updates_request,
            **self._app_options,
        )
        self.application = app
        try:
            await app.initialize()
        except InvalidToken:
            raise ConfigError(
                f"Telegram refused the bot token in {tg.token_ref().describe()}; copy it again "
                "from @BotFather (/token)."
            ) from None
        except NetworkError as exc:
            raise ConfigError(
                f"cannot reach the Bot API at {tg.base_url} ({exc.message}); check "
                "telegram.base_url and the network."
            ) from None
        self._on_exit(app.shutdown)
        await register_commands(app)
        # Among replicas the leader alone takes updates (one poller per bot token: Telegram
        # answers a second with 409), sends, pins and digests; a standby starts all of it
        # when it gains the lease and stops it the moment it loses it.
        self._on_exit(self._stop_leading)
        leadership = self.fleet.leadership
        leadership.on_change(self._on_lease)
        if leadership.leading:
            await self._start_leading()
        else:
            log.info("bot @%s standing by: another replica leads", app.bot.username)

    async def _on_lease(self, leading: bool) -> None:
        async with self._switch:
            if leading and not self._leading:
                await self._start_leading()
            elif not leading:
                await self._stop_leading()

    async def _start_leading(self) -> None:
        app = self.application
        assert app is not None and app.updater is not None
        tg = self.fleet.config.telegram
        stack = self._leading = AsyncExitStack()
        try:
            if tg.mode == "webhook":
                await self._start_webhook(app)
            else:
                await app.updater.start_polling(
                    drop_pending_updates=False, error_callback=_polling_failed
                )
            stack.push_async_callback(_logged(app.updater.stop))
            await app.start()
            stack.push_async_callback(_logged(app.stop))
            stack.push_async_callback(_logged(await start_notifier(app, self.fleet)))
            stack.push_async_callback(_logged(await start_pinned_cards(app, self.fleet)))
        except BaseException:
            await self._stop_leading()
            raise
        log.info("bot @%s running (%s)", app.bot.username, tg.mode)

    async def _stop_leading(self) -> None:
        stack, self._leading = self._leading, None
        if stack is not None:
            await stack.aclose()

    async def _start_webhook(self, app: App) -> None:
        tg = self.fleet.config.telegram
        hook = tg.webhook
        if hook is None:
            raise ConfigError(
                "telegram.mode is webhook but there is no telegram.webhook section; add url: "
                "(the public HTTPS URL) and listen: (host:port)"
            )
        secret = self.env.get(hook.secret_token_env, "")
        if not _SECRET_TOKEN.match(secret):
            raise ConfigError(
                f"webhook mode needs a secret token in env var {hook.secret_token_env}: 1-256 "
                "characters of A-Z, a-z, 0-9, _ and - (e.g. `openssl rand -hex 32`)"
            )
        host, _, port = hook.listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"telegram.webhook.listen: write host:port, not {hook.listen!r}")
        assert app.updater is not None
        await app.updater.start_webhook(
            listen=host.strip("[]"),
            port=int(port),
            url_path=urlsplit(hook.url).path.lstrip("/"),
            webhook_url=hook.url,
            secret_token=secret,
            drop_pending_updates=False,
        )

    def _on_exit(self, stop: Callable[[], Awaitable[object]]) -> None:
        """Push `stop` onto the exit stack (see `_logged`)."""
        self._stack.push_async_callback(_logged(stop))

    async def aclose(self) -> None:
        """Stop in reverse order of starting; every step runs even if one before it failed.
        Idempotent: the stack is empty after the first call."""
        await self._stack.aclose()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
