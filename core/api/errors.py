"""How the agent API answers a refusal: one JSON shape, `{"error": code, "detail": sentence}`.

Status codes come from the error tree: NotFound 404, InvalidInput 422, Conflict 409, Forbidden
403, TokenInvalid 401 (with the reason code in the body and in `WWW-Authenticate`), StoreError
503 `store_unavailable` with `Retry-After` (the database locked by another process, a full or
failing disk, a read-only file: one warning line per cause a minute, not a traceback per
request). Bad bodies and bad path ids are 422 naming each field; FastAPI's own 404 and 405 get
the same shape, and so do the server's refusals before the app (413, 431, 408: core.api.app,
core.api.server).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.api.schemas import ErrorOut
from core.errors import (
    AmbiguousAssignee,
    Conflict,
    FleetbotError,
    Forbidden,
    InvalidInput,
    NotFound,
    StoreError,
    StoreUnavailable,
    TokenInvalid,
)

log = logging.getLogger(__name__)

STATUS: list[tuple[type[FleetbotError], int]] = [
    (TokenInvalid, 401),
    (NotFound, 404),
    (InvalidInput, 422),
    (Conflict, 409),
    (Forbidden, 403),
]
# The error answers every operation may give, as the OpenAPI document lists them.
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "The token was refused; `error` says why."},
    403: {"model": ErrorOut, "description": "`skill_denied` or `not_your_run`."},
    404: {"model": ErrorOut, "description": "No such issue, run, agent or route."},
    409: {
        "model": ErrorOut,
        "description": "Refused by the current state, e.g. "
        "`invalid_transition`, `lease_conflict`, `run_not_active`, `max_turns_exceeded`, "
        "`issue_closed`, `no_open_question`.",
    },
    413: {"model": ErrorOut, "description": "`body_too_large`: the body is over `api.max_body`."},
    422: {
        "model": ErrorOut,
        "description": "The body (`invalid_body`) or a path id (`invalid_request`) is invalid; "
        "`detail` names the field.",
    },
    503: {
        "model": ErrorOut,
        "description": "`store_unavailable`: the store cannot serve the request now (locked by "
        "another process, disk full, read-only); nothing was changed, retry after "
        "`Retry-After` seconds.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    },
}
RETRY_AFTER = 5  # seconds, on every 503
STORE_WARNING_EVERY = 60.0  # seconds between two warnings of the same store trouble
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}


def error_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": f'Bearer error="{code}"'} if status == 401 else None
    return JSONResponse({"error": code, "detail": detail, **extra}, status, headers=headers)


async def domain_error(_: Request, exc: FleetbotError) -> JSONResponse:
    """A FleetbotError as the status its branch of the tree maps to."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            extra = {"choices": exc.choices} if isinstance(exc, AmbiguousAssignee) else {}
            return error_response(status, exc.code, exc.message, **extra)
    log.error("unmapped error %s: %s", type(exc).__name__, exc.message)
    return error_response(400, exc.code, exc.message)


class Throttle:
    """Lets a key through once per `every` seconds and counts what it held back in between:
    one log line per cause, not one per request."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: dict[str, tuple[float, int]] = {}  # key: (when let through, held since)

    def allow(self, key: str) -> int | None:
        """None to stay quiet; else how many were held back since the last one let through."""
        now = time.monotonic()
        when, held = self._last.get(key, (-self.every, 0))
        if now - when < self.every:
            self._last[key] = (when, held + 1)
            return None
        self._last[key] = (now, 0)
        return held


async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
    """Store trouble as 503 with Retry-After: the agent retries, the owner reads one warning."""
    if isinstance(exc, StoreUnavailable):
        cause, code, fix = exc.cause, exc.code, exc.fix
        why = str(exc.__cause__ or exc.message)
    else:  # a StoreError no request should meet: the same answer, and the log says so
        cause, code, fix, why = exc.message, StoreUnavailable.code, "report this as a bug", ""
    throttle: Throttle | None = getattr(request.app.state, "store_warnings", None)
    held = throttle.allow(cause) if throttle is not None else 0
    if held is not None:
        log.warning(
            "store trouble: %s%s; %s. The API answers 503 meanwhile (this time to %s %s%s)",
            cause,
            f" ({why})" if why else "",
            fix,
            request.method,
            request.url.path,
            f"; {held} more 503s for this since the last warning" if held else "",
        )
    response = error_response(503, code, exc.message)
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A body or path id FastAPI refused, as a 422 naming each field and its problem."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        field = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        kind = err.get("type")
        if kind == "json_invalid":
            # FastAPI puts the character offset where the field name would go.
            why = (err.get("ctx") or {}).get("error", "JSON decode error")
            at = f" at character {loc[0]}" if loc else ""
            field, msg = "body", f"not valid JSON{at}: {why}"
        elif field == "body" and (kind in _NOT_AN_OBJECT or kind == "missing"):
            msg = "send a JSON object ({...}) with Content-Type: application/json"
        problems.append({"field": field, "problem": msg})
    detail = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    in_body = all(err.get("loc", ("body",))[:1] == ("body",) for err in exc.errors())
    code = "invalid_body" if in_body else "invalid_request"
    return error_response(422, code, detail or "the request is invalid", errors=problems)


async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's and Starlette's own refusals (unknown route, wrong method) in our shape."""
    if exc.status_code == 400:
        # FastAPI's only 400: a body it could not decode at all (bad charset, nesting
        # too deep). That is a bad body like any other.
        problem = "the body could not be read; send UTF-8 JSON (a JSON object)"
        errors = [{"field": "body", "problem": problem}]
        return error_response(422, "invalid_body", f"body: {problem}", errors=errors)
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
        exc.status_code, "http_error"
    )
    return error_response(exc.status_code, code, str(exc.detail))


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
# For FastAPI(exception_handlers=...); a handler is found by the exception's class and its bases.
HANDLERS: dict[int | type[Exception], Handler] = {
    FleetbotError: domain_error,
    StoreError: store_unavailable,
    RequestValidationError: bad_request,
    StarletteHTTPException: http_error,
}
