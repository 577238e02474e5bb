"""What a `process` runtime's config must satisfy beyond its field types, as one sentence each.

Apart from schema.py so that module stays small; pure, so it is tested with plain values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Env names that hold secrets (OPENAI_API_KEY, GITHUB_TOKEN, DB_PASSWORD…): never inline.
SECRET_ENV_NAME = re.compile(r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)


def process_problem(
    preset: str | None,
    command: Sequence[str] | None,
    args: Sequence[str],
    env: Mapping[str, str],
    secret_env: Mapping[str, object],
) -> str | None:
    """What is wrong with this process runtime, and the fix; None if nothing is."""
    if preset is None and not command:
        return (
            "give `command` (the argv to run, e.g. [python3, agent.py]) or a preset "
            "(`preset: claude-code` or `preset: codex`)"
        )
    if preset is None and args:
        return "`args` adds flags to a preset's command; without a preset, put them in `command`"
    for name in [*env, *secret_env]:
        if name.upper().startswith("FLEETBOT_"):
            return (
                f"env {name}: fleetbot sets the FLEETBOT_* variables itself for each run; "
                "use another name"
            )
    for name in env:
        if SECRET_ENV_NAME.search(name):
            return (
                f"env {name} looks like a secret, and secrets are not read from the config: move "
                f"it to `secret_env: {{{name}: {{env: {name}}}}}` (read from fleetbot's own "
                f"environment) or `secret_env: {{{name}: {{file: /path/to/it}}}}`"
            )
        if name in secret_env:
            return f"{name} is in both env and secret_env; keep one"
    return None
