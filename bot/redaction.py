"""Secrets masked out of text before it leaves the process: log records and chat messages.

One rule for both. No code path logs a token on purpose, but libraries log URLs (the Bot API
puts the bot token in the URL); and agents write summaries and comments, in which a model may
paste whatever it saw (an Authorization header, its run token). Anything shaped like a
Telegram bot token, a JWT or a bearer value becomes `[redacted]`.
"""

from __future__ import annotations

import re

MASK = "[redacted]"
_SECRET = re.compile(
    r"(\d{6,12}:[A-Za-z0-9_-]{30,})"  # Telegram bot token
    r"|(eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]+)"  # JWT
    r"|((?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,})"  # Authorization header value
)


def scrub(text: str) -> str:
    """`text` with every secret-shaped part replaced by the mask."""
    return _SECRET.sub(MASK, text)
