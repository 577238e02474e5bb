"""The wire side of the offline Bot API: decoding requests, checking params, front ends.

Everything here is independent of the server's state: it turns HTTP requests into params
(and Telegram error answers back into JSON), validates the values PTB sends, and carries
requests in from an ``httpx`` transport or an ASGI/uvicorn server on a loopback port.
The state and the Bot API methods live in :mod:`offline_botapi.state` and
:mod:`offline_botapi.methods`; :mod:`offline_botapi.server` puts them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx

from offline_botapi.parse_mode import HTMLParseError, ParsedText, parse_html, strip_text, utf16_len

JSON = dict[str, Any]
Params = dict[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Telegram's limits (https://core.telegram.org/bots/api), counted in UTF-16 code units.
MAX_TEXT = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER = 200
MAX_BUTTONS = 100
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
BAD_MARKUP = "Bad Request: can't parse reply keyboard markup JSON object"


class OutageError(Exception):
    """Raised inside the API during :meth:`OfflineBotAPI.outage`; front ends map it."""


class ApiError(Exception):
    """A Telegram error answer: HTTP status, description and optional parameters."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def bad_request(description: str) -> ApiError:
    """A 400 answer with Telegram's ``Bad Request:`` prefix."""
    return ApiError(400, f"Bad Request: {description}")


def error_answer(code: int, description: str, parameters: JSON | None = None) -> JSON:
    """The JSON body of a Telegram error answer."""
    answer: JSON = {"ok": False, "error_code": code, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return answer


class HttpHandler(Protocol):
    """What the front ends need from the API: one HTTP request in, ``(status, body)`` out."""

    async def handle_http(
        self, http_method: str, path: str, content_type: str, body: bytes, query: str = ""
    ) -> tuple[int, bytes]: ...


def decode_params(content_type: str, body: bytes, query: str) -> Params:
    """Decode a request like the Bot API: query string, then JSON/form/multipart body.

    PTB sends form fields whose non-string values are JSON-encoded; the ``as_*``
    helpers accept both those strings and real JSON types.
    """
    params: Params = dict(parse_qsl(query, keep_blank_values=True))
    mime = content_type.split(";")[0].strip().lower()
    if not body:
        return params
    if mime == "application/json":
        try:
            data = json.loads(body)
        except ValueError as err:
            raise bad_request("can't parse JSON object") from err
        if not isinstance(data, dict):
            raise bad_request("can't parse JSON object")
        params.update(data)
    elif mime == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                is_file = part.get_filename() is not None
                params[name] = payload if is_file else payload.decode("utf-8", "replace")
    else:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def as_int(value: Any, error: str) -> int:
    """An integer param (or its string form); anything else is a 400 with ``error``."""
    if isinstance(value, bool):
        raise bad_request(error)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise bad_request(error)


def as_float(value: Any, error: str) -> float:
    """A number param (or its string form); anything else is a 400 with ``error``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value))
    except ValueError as err:
        raise bad_request(error) from err


def as_bool(value: Any) -> bool:
    """A boolean param: JSON ``true`` or the form strings ``"true"``/``"1"``."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def as_json(value: Any, error: str) -> Any:
    """Decode a JSON-encoded form field; pass through values that came as JSON already."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as err:
        raise bad_request(error.removeprefix("Bad Request: ")) from err


def check_inline_keyboard(rows: Any) -> list[list[JSON]]:
    """Validate an inline keyboard the way Telegram does; return it unchanged."""
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad_request(BAD_MARKUP.removeprefix("Bad Request: "))
    if sum(len(r) for r in rows) > MAX_BUTTONS:
        raise bad_request("reply markup is too long")
    prefix = "can't parse inline keyboard button: "
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request(prefix + 'Field "text" must be of type String')
            if not button["text"].strip():
                raise bad_request("BUTTON_TEXT_INVALID")
            actions = [a for a in _BUTTON_ACTIONS if button.get(a) is not None]
            if not actions:
                raise bad_request(prefix + "Text buttons are unallowed in the inline keyboard")
            if len(actions) > 1:
                raise bad_request(prefix + f"only one of {', '.join(actions)} may be used")
            data = button.get("callback_data")
            if data is not None and (
                not isinstance(data, str)
                or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
            ):
                raise bad_request("BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and (
                not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https", "tg")
            ):
                raise bad_request("BUTTON_URL_INVALID")
    return rows


def message_text(params: Params, *, strict_ampersand: bool) -> tuple[ParsedText, str]:
    """Parse ``text`` with ``parse_mode``/``entities``; enforce emptiness and length."""
    source = params.get("text")
    if not isinstance(source, str) or not source:
        raise bad_request("message text is empty")
    mode = str(params.get("parse_mode") or "")
    if mode.lower() == "html":
        try:
            parsed = parse_html(source, strict_ampersand=strict_ampersand)
        except HTMLParseError as err:
            raise bad_request(f"can't parse entities: {err}") from err
    elif mode.lower() in ("", "markdown", "markdownv2"):
        # Markdown is not validated offline; fleetbot sends HTML.
        entities = as_json(params.get("entities"), "can't parse entities JSON object")
        parsed = ParsedText(source, list(entities or []) if not mode else [])
    else:
        raise bad_request("unsupported parse_mode")
    parsed = strip_text(parsed)
    if not parsed.text:
        raise bad_request("message text is empty")
    if utf16_len(parsed.text) > MAX_TEXT:
        raise bad_request("message is too long")
    return parsed, source


def reply_markup(params: Params, *, inline_only: bool) -> JSON | None:
    """The ``reply_markup`` param, checked; inline keyboards only for edits."""
    raw = params.get("reply_markup")
    if raw is None:
        return None
    markup = as_json(raw, BAD_MARKUP)
    if not isinstance(markup, dict):
        raise bad_request(BAD_MARKUP.removeprefix("Bad Request: "))
    if "inline_keyboard" in markup:
        return {"inline_keyboard": check_inline_keyboard(markup["inline_keyboard"])}
    if inline_only:
        raise bad_request("inline keyboard expected")
    if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
        raise bad_request(BAD_MARKUP.removeprefix("Bad Request: "))
    return markup


class OfflineTransport(httpx.AsyncBaseTransport):
    """``httpx`` transport that answers every request from an :class:`OfflineBotAPI`.

    Honours the request's read timeout (``httpx.ReadTimeout``, i.e. PTB's ``TimedOut``) so a
    long poll longer than the client's read timeout fails here as it would on the network.
    """

    def __init__(self, api: HttpHandler) -> None:
        self.api = api

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Route one request into the API and wrap its answer as an ``httpx.Response``."""
        body = await request.aread()
        read_timeout = request.extensions.get("timeout", {}).get("read")
        try:
            async with asyncio.timeout(read_timeout):
                status, payload = await self.api.handle_http(
                    request.method,
                    request.url.path,
                    request.headers.get("content-type", ""),
                    body,
                    request.url.query.decode("ascii", "replace"),
                )
        except OutageError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("offline Bot API: read timed out", request=request) from exc
        return httpx.Response(
            status,
            headers={"content-type": "application/json"},
            content=payload,
            request=request,
        )


async def answer_asgi(api: HttpHandler, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ASGI HTTP request from ``api``; other scope types are ignored."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    try:
        status, payload = await api.handle_http(
            scope["method"],
            scope["path"],
            headers.get("content-type", ""),
            body,
            scope.get("query_string", b"").decode("latin-1"),
        )
        content_type = b"application/json"
    except OutageError:
        # A socket server cannot refuse connections per request; a proxy-style 502
        # with a non-JSON body is the closest thing (PTB: NetworkError).
        status, payload, content_type = 502, b"<html>502 Bad Gateway</html>", b"text/html"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@contextlib.asynccontextmanager
async def serve_asgi(
    app: AsgiApp, host: str, port: int, before_shutdown: Callable[[], None]
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in the running loop; yields the Bot API ``base_url``.

    ``before_shutdown`` runs first on exit, so the app can end requests that would
    otherwise hold the server open (long polls).
    """
    import uvicorn

    class _Server(uvicorn.Server):
        # Leave SIGINT/SIGTERM to the host program instead of uvicorn.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        interface="asgi3",
        lifespan="off",
        ws="none",
        http="h11",
        log_config=None,  # don't let uvicorn reconfigure the process's logging
        log_level="warning",
        access_log=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # re-raise the startup failure
                raise RuntimeError("offline Bot API server stopped during startup")
            await asyncio.sleep(0.005)
        yield f"http://{host}:{bound_port}/bot"
    finally:
        before_shutdown()
        server.should_exit = True
        await task
        sock.close()
