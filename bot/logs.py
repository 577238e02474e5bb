"""Logging for the fleetbot process, with secrets scrubbed from every record.

Defence in depth: no code path logs a token on purpose, but libraries do log URLs (the Bot API
puts the bot token in the URL), so every record passes through a filter that masks anything
shaped like a bot token, a JWT or a bearer header (bot.redaction, the same masking as chat
messages get).
"""

from __future__ import annotations

import logging
import sys

from bot.redaction import scrub


class ScrubSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = str(exc)
            if scrub(text) != text:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


def setup(level: str = "INFO", stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(ScrubSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; Bot API URLs contain the bot token.
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
