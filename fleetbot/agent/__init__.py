"""`fleetbot agent …`: the agent's side of fleetbot's HTTP API as one-step shell commands.

An LLM agent calls one command per step (`show`, `comment`, `ask`, `usage`, `finish`, …) instead of
hand-building curl calls. It reads what the runtimes set (FLEETBOT_API_URL, FLEETBOT_TOKEN,
FLEETBOT_RUN_ID, FLEETBOT_ISSUE_ID), needs no config file and no Telegram token, and imports
nothing of core, FastAPI or aiosqlite, so every call starts in a fraction of a second.

    cli.py     the arguments and the commands
    errors.py  AgentError: the exit codes, and every API refusal turned into what to do next
    client.py  the HTTP calls (httpx, loaded only by commands that call the API), the retries
    render.py  short human text for each answer (`--json` prints the API's own JSON)
    skill.py   SKILL.md: print it, install it for Claude Code, Codex or OpenClaw
    launch.py  the `fleetbot` console script: `agent` goes here before anything heavy loads
"""
