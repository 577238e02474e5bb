"""`fleetbot agent <command>`: parse the arguments, call the API once, print the answer.

Settings come from the environment the runtimes set (FLEETBOT_API_URL, FLEETBOT_TOKEN,
FLEETBOT_RUN_ID, FLEETBOT_ISSUE_ID); `--api-url`, `--token-file`, `--run` and `--issue` override
them. There is deliberately no `--token VALUE`: argv is readable by every user through `ps`.
Exit codes are fleetbot.agent.errors' (0 ok … 7 still no answer).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from fleetbot.agent import render, skill
from fleetbot.agent.errors import AUTH, CONFLICT, ERROR, NO_ANSWER, USAGE, AgentError

if TYPE_CHECKING:  # httpx is imported only by commands that call the API
    from fleetbot.agent.client import Client

OUTCOMES = ("done", "failed", "blocked", "waiting")
MAX_POLL = 60  # seconds: the API's longest single wait on a question
WAIT_ANSWER = 120.0  # default --timeout of wait-answer


def build_parser() -> argparse.ArgumentParser:
    # Every option is accepted before and after the command (`--json inbox`, `inbox --json`);
    # SUPPRESS keeps a later, absent copy from overwriting an earlier one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON out")
    common.add_argument("--api-url", default=argparse.SUPPRESS, help="default $FLEETBOT_API_URL")
    common.add_argument(
        "--token-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="read the token from FILE (default $FLEETBOT_TOKEN)",
    )
    common.add_argument("--run", default=argparse.SUPPRESS, help="default $FLEETBOT_RUN_ID")
    common.add_argument("--issue", default=argparse.SUPPRESS, help="default $FLEETBOT_ISSUE_ID")
    parser = argparse.ArgumentParser(
        prog="fleetbot agent",
        parents=[common],
        description="The agent's side of fleetbot's API, one command per step. "
        "`fleetbot agent skill` prints the whole protocol.",
        epilog="Exit codes: 0 ok, 1 other error, 2 usage, 3 token refused (401/403), "
        "4 not found, 5 conflict (409), 6 API unreachable or 503, 7 no answer yet.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, about: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=about, description=about + ".")

    add("me", "who your token belongs to")
    add("inbox", "your open issues, oldest first")
    add("show", "an issue with its comments and questions").add_argument(
        "target", nargs="?", metavar="ISSUE", help="default: --issue / $FLEETBOT_ISSUE_ID"
    )
    add("claim", "take the issue for this run").add_argument(
        "target", nargs="?", metavar="ISSUE", help="default: --issue / $FLEETBOT_ISSUE_ID"
    )
    _text(add("comment", "comment on the issue"))
    p = add("usage", "report this run's usage so far (totals, not increments)")
    p.add_argument("--turns", type=_count, metavar="N", help="model calls so far")
    p.add_argument("--input-tokens", type=_count, metavar="N")
    p.add_argument("--output-tokens", type=_count, metavar="N")
    p.add_argument("--cost", type=float, metavar="USD")
    p.add_argument("--model", metavar="M", help="the model you really used")
    p = add("finish", "end this run")
    p.add_argument("--outcome", required=True, choices=OUTCOMES)
    p.add_argument("--summary", required=True, metavar="TEXT", help="what you did; - reads stdin")
    p = add("file", "file an issue for an agent or role of your company")
    p.add_argument("--to", required=True, metavar="ASSIGNEE", help="an agent id or a role")
    p.add_argument("--title", required=True, metavar="T")
    p.add_argument("--body", default="", metavar="B", help="details; - reads stdin")
    p.add_argument("--model", metavar="M", help="a model for this issue's runs")
    p.add_argument(
        "--priority",
        choices=("critical", "high", "medium", "low"),
        help="worked before lower ones (default medium)",
    )
    p.add_argument("--backlog", action="store_true", help="park it until it is promoted")
    _text(add("summary", "post a summary to your team chat"))
    p = _text(add("ask", "ask the owner about the issue"))
    p.add_argument("--choice", action="append", default=[], metavar="A", help="repeat for each")
    p.add_argument("--approval", action="store_true", help="an Approve/Reject question")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for it")
    p = add("wait-answer", "wait for the answer to a question")
    p.add_argument("question", metavar="QID", help="Q7 or 7")
    p.add_argument("--timeout", type=float, default=WAIT_ANSWER, metavar="SECONDS")
    p = add("skill", "print SKILL.md, the protocol for agents")
    p.add_argument("--install", type=Path, metavar="DIR", help="write DIR/fleetbot/SKILL.md")
    return parser


def _text(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # Several words are one text: an agent that forgot the quotes still says what it meant.
    p.add_argument("text", nargs="+", metavar="TEXT", help="the text; - reads stdin")
    return p


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give 0 or more")
    return number


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`fleetbot agent …`: its exit status."""
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    as_json = getattr(args, "json", False)
    try:
        out = COMMANDS[args.command](args, env)
    except KeyboardInterrupt:
        return 130
    except AgentError as exc:
        if as_json:
            _print(json.dumps(exc.json()), sys.stdout)
        else:
            _print(f"fleetbot agent: {exc.message}", sys.stderr)
        return exc.exit
    code, data, text = out
    _print(json.dumps(data) if as_json else text, sys.stdout)
    return code


def _print(text: str, stream: TextIO) -> None:
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        # The reader left (`fleetbot agent inbox | head -1`): the command still did its work
        # and keeps its exit code; send the rest, and Python's flush at exit, to /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


Out = tuple[int, Any, str]  # exit code, JSON, text


def _client(args: argparse.Namespace, env: Mapping[str, str]) -> Client:
    from fleetbot.agent.client import Client

    url = getattr(args, "api_url", None) or env.get("FLEETBOT_API_URL", "")
    if not url.strip():
        raise AgentError(
            USAGE,
            "no API address: set FLEETBOT_API_URL or pass --api-url URL (fleetbot's API, "
            "e.g. http://127.0.0.1:8080)",
            "no_api_url",
        )
    token_file = getattr(args, "token_file", None)
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AgentError(
                USAGE,
                f"cannot read the token file {token_file}: {exc.strerror or exc}",
                "no_token_file",
            ) from exc
    else:
        token = env.get("FLEETBOT_TOKEN", "").strip()
    if not token:
        where = f"the token file {token_file} is empty" if token_file else "FLEETBOT_TOKEN is unset"
        raise AgentError(
            AUTH, f"no token: {where}; set FLEETBOT_TOKEN or pass --token-file FILE", "no_token"
        )
    return Client(url, token)


def _issue(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """The issue id: the command's, --issue, or $FLEETBOT_ISSUE_ID."""
    found = getattr(args, "target", None) or getattr(args, "issue", None)
    found = found or env.get("FLEETBOT_ISSUE_ID", "")
    if not found.strip():
        raise AgentError(
            USAGE, "no issue: name one, or set FLEETBOT_ISSUE_ID (--issue ID)", "no_issue"
        )
    return found.strip()


def _run(args: argparse.Namespace, env: Mapping[str, str], *, required: bool = True) -> str:
    """The run id (--run or $FLEETBOT_RUN_ID); "" when not `required` and there is none."""
    found = (getattr(args, "run", None) or env.get("FLEETBOT_RUN_ID", "")).strip()
    if not found and required:
        raise AgentError(USAGE, "no run: set FLEETBOT_RUN_ID or pass --run RUN", "no_run")
    return found


def _seg(value: str) -> str:
    """`value` as one URL path segment: an id with a `/` or `?` must not reach another route."""
    return quote(value, safe="")


def _words(value: str | list[str]) -> str:
    text = " ".join(value) if isinstance(value, list) else value
    if text == "-":
        text = sys.stdin.read()
    text = text.strip()
    if not text:
        raise AgentError(USAGE, "the text is empty; say something", "empty_text")
    return text


def cmd_me(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    with _client(args, env) as api:
        d = api.call("GET", "/me")
    return 0, d, render.me(d)


def cmd_inbox(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    with _client(args, env) as api:
        items = api.call("GET", "/inbox")
    return 0, items, render.inbox(items)


def cmd_show(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    issue = _issue(args, env)
    with _client(args, env) as api:
        d = api.call("GET", f"/issues/{_seg(issue)}")
    return 0, d, render.issue(d)


def cmd_claim(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    issue, run = _issue(args, env), _run(args, env)
    with _client(args, env) as api:
        d = api.call("POST", f"/issues/{_seg(issue)}/claim", {"run_id": run})
    return 0, d, render.claimed(d, run)


def cmd_comment(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    issue, text = _issue(args, env), _words(args.text)
    with _client(args, env) as api:
        d = api.call("POST", f"/issues/{_seg(issue)}/comments", {"body": text})
    return 0, d, render.commented(d)


def cmd_usage(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    fields = {
        "turns": args.turns,
        "input_tokens": args.input_tokens,
        "output_tokens": args.output_tokens,
        "cost": args.cost,
        "model": args.model,
    }
    if all(v is None for v in fields.values()):
        raise AgentError(
            USAGE,
            "nothing to report: give --turns, --input-tokens, --output-tokens, --cost or --model",
            "empty_usage",
        )
    run = _run(args, env)
    # Totals only ever grow on the server, so an omitted count (sent as 0) changes nothing.
    body = {k: v for k, v in fields.items() if v is not None}
    body.setdefault("turns", 0)
    with _client(args, env) as api:
        d = api.call("POST", f"/runs/{_seg(run)}/usage", body)
    return 0, d, render.usage(d)


def cmd_finish(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    run, summary = _run(args, env), _words(args.summary)
    with _client(args, env) as api:
        d = api.call(
            "POST", f"/runs/{_seg(run)}/finish", {"outcome": args.outcome, "summary": summary}
        )
    return 0, d, render.finished(d, args.outcome)


def cmd_file(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    body: dict[str, Any] = {"title": args.title, "assignee": args.to}
    if args.body:
        body["body"] = sys.stdin.read().strip() if args.body == "-" else args.body
    if args.model:
        body["model"] = args.model
    if args.priority:
        body["priority"] = args.priority
    if args.backlog:
        body["backlog"] = True
    with _client(args, env) as api:
        d = api.call("POST", "/issues", body)
    return 0, d, render.filed(d)


def cmd_summary(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    text = _words(args.text)
    body: dict[str, Any] = {"body": text}
    issue = getattr(args, "issue", None) or env.get("FLEETBOT_ISSUE_ID", "")
    run = _run(args, env, required=False)
    # The summary points at this run's issue, so a reply to it in Telegram reaches the issue.
    if issue.strip():
        body["issue_id"] = issue.strip()
    if run:
        body["run_id"] = run
    with _client(args, env) as api:
        d = api.call("POST", "/summaries", body)
    return 0, d, render.posted(d)


def cmd_ask(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    issue, text = _issue(args, env), _words(args.text)
    if args.approval and args.choice:
        raise AgentError(
            USAGE, "an approval's choices are Approve/Reject: drop --choice", "bad_choices"
        )
    body: dict[str, Any] = {"text": text, "choices": args.choice, "approval": args.approval}
    body["run_id"] = _run(args, env, required=False) or None
    with _client(args, env) as api:
        q = api.call("POST", f"/issues/{_seg(issue)}/questions", body)
        if args.wait <= 0 or q.get("status") != "open":
            return 0, q, render.asked(q) if q.get("status") == "open" else render.question(q)
        return _wait(api, q, args.wait)


def cmd_wait_answer(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    qid = _question_id(args.question)
    with _client(args, env) as api:
        q = api.call("GET", f"/questions/{qid}")
        return _wait(api, q, args.timeout)


def _wait(
    api: Client, q: dict[str, Any], timeout: float, clock: Callable[[], float] = time.monotonic
) -> Out:
    """Long-poll question `q` until it is not open or `timeout` seconds have passed."""
    started = clock()
    while q.get("status") == "open":
        left = timeout - (clock() - started)
        if left <= 0:
            return NO_ANSWER, q, render.no_answer(q, timeout)
        wait = max(1, min(MAX_POLL, int(left)))
        q = api.call("GET", f"/questions/{q['id']}", params={"wait": wait}, wait=wait)
    # A cancelled question is no answer: the issue moved on (finished, cancelled).
    return (0 if q.get("status") == "answered" else CONFLICT), q, render.question(q)


def _question_id(value: str) -> int:
    found = re.fullmatch(r"[Qq]?(\d{1,18})", value.strip())
    if found is None:
        raise AgentError(USAGE, f"{value!r} is not a question id; write Q7 or 7", "bad_qid")
    return int(found[1])


def cmd_skill(args: argparse.Namespace, env: Mapping[str, str]) -> Out:
    content = skill.text()
    if args.install is None:
        return 0, {"skill": content}, content.rstrip("\n")
    target = args.install / skill.NAME / "SKILL.md"
    try:
        path = skill.install(args.install)
    except OSError as exc:
        raise AgentError(
            ERROR, f"cannot write {target}: {exc.strerror or exc}", "install_failed"
        ) from exc
    return 0, {"installed": str(path)}, f"Wrote {path}."


COMMANDS: dict[str, Callable[[argparse.Namespace, Mapping[str, str]], Out]] = {
    "me": cmd_me,
    "inbox": cmd_inbox,
    "show": cmd_show,
    "claim": cmd_claim,
    "comment": cmd_comment,
    "usage": cmd_usage,
    "finish": cmd_finish,
    "file": cmd_file,
    "summary": cmd_summary,
    "ask": cmd_ask,
    "wait-answer": cmd_wait_answer,
    "skill": cmd_skill,
}
