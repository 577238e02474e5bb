"""What the fake models do with a fleetbot wake: a good agent's moves, read off what it was sent.

Nothing here knows the issue in advance. The issue id comes from the prompt the CLI sent (no id
in the prompt: the model says so and stops, and the run never reaches `done`), and the comment
quotes what `fleetbot agent show` printed (so it only matches the issue when the tool's output
really came back to the model). The moves, one per model call:

  0. run `fleetbot agent show ISSUE`
  1. run `fleetbot agent comment --issue ISSUE '<who> read it: <first line of show's output>'`
  2. run `fleetbot agent finish --outcome done --summary '<who> closed ISSUE …'`
  3. say that it is done (the final text: the CLI ends its turn)

A step is the number of tool results in the conversation so far, so a CLI that resends the whole
history on every call (both do) gets the next move each time, and a repeated call the same one.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

ISSUE_ID = re.compile(r"\b[A-Z][A-Z0-9]{0,7}-\d+\b")


@dataclass(frozen=True, slots=True)
class Shell:
    """Call the CLI's shell tool with `command`."""

    command: str


@dataclass(frozen=True, slots=True)
class Say:
    """Answer with text and end the turn."""

    text: str


Move = Shell | Say


@dataclass(slots=True)
class Call:
    """One model request a CLI sent, as the fake model read it, and what it answered."""

    path: str
    body: dict[str, Any] = field(repr=False)
    prompt: str  # the user's text (the wake message, when the CLI passed it in)
    system: str  # system and developer text
    tool_results: list[str]  # the outputs of the shell commands run so far, in order
    tools: list[str]  # the tool names the CLI offered
    move: Move | None = None


def summary_for(who: str, issue_id: str) -> str:
    """The summary the fake agent finishes with: the test expects exactly this on the run."""
    return f"{who} closed {issue_id}: read it, commented, done."


def comment_for(who: str, show_output: str) -> str:
    # Codex wraps a command's output in a header (Chunk ID, Wall time, exit code) ending in
    # an `Output:` line; what the command printed follows it.
    _, marker, printed = show_output.partition("\nOutput:\n")
    text = printed if marker else show_output
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{who} read it: {first[:200]}"


def next_move(call: Call, who: str) -> Move:
    """The good agent's next move for this call."""
    found = ISSUE_ID.search(call.prompt)
    if found is None:
        return Say(f"{who}: no issue id in my prompt, so there is nothing I can work on.")
    issue = found.group(0)
    results = call.tool_results
    if not results:
        return Shell(f"fleetbot agent show {issue}")
    if len(results) == 1:
        if issue not in results[0]:
            return Say(f"{who}: `fleetbot agent show {issue}` did not show it: {results[0]!r}")
        comment = comment_for(who, results[0])
        return Shell(f"fleetbot agent comment --issue {issue} {shlex.quote(comment)}")
    if len(results) == 2:
        summary = shlex.quote(summary_for(who, issue))
        return Shell(f"fleetbot agent finish --outcome done --summary {summary}")
    return Say(f"{who}: {issue} is done and reported to fleetbot.")
