"""Pydantic's validation errors as the message a user reads: the file, the key path, the fix."""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from core.config.schema import (
    PATTERN_WORDS,
    Config,
    HttpRuntime,
    OpenClawRuntime,
    ProcessRuntime,
    SimulatedRuntime,
)
from core.errors import ConfigError


def explain(exc: ValidationError, data: Any, source: str, applied: list[str]) -> ConfigError:
    """One line per error in `exc`, each naming the key path in `data` and what to write."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        hint = _fix_hint(err, _allowed_keys(loc))
        if not loc and hint.startswith("companies["):
            lines.append(f"  {hint}")  # a cross-check that names its own key path
        else:
            lines.append(f"  {_key_path(loc, data)}: {hint}")
    origin = f" (env overrides applied: {', '.join(applied)})" if applied else ""
    return ConfigError(f"{source}{origin}: invalid config\n" + "\n".join(lines))


def _key_path(loc: tuple[int | str, ...], data: Any) -> str:
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            label = ""
            if isinstance(node, list) and 0 <= part < len(node) and isinstance(node[part], dict):
                ident = node[part].get("id")
                label = f" (id: {ident})" if ident else ""
            out += f"[{part}]{label}"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif part in {"http", "openclaw", "process", "simulated"} and isinstance(node, dict):
            continue  # pydantic's discriminator tag, not a key the user wrote
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _fix_hint(err: Any, allowed: list[str]) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        tip = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{tip} Allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return "this key is required"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return "set runtime.kind to one of: http, openclaw, process, simulated"
    if kind == "string_pattern_mismatch":
        return _pattern_hint(err)
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _pattern_hint(err: Any) -> str:
    """The pattern in words, what was written, and (for an id) a value that would do."""
    pattern = str(err.get("ctx", {}).get("pattern", ""))
    words = PATTERN_WORDS.get(pattern)
    if words is None:
        return str(err["msg"])
    loc, got = err["loc"], err.get("input")
    if words.startswith("ids "):
        words = ("agent " if "agents" in loc else "company ") + words
    hint = f"{words}; got {got!r}"
    if isinstance(got, str):
        # A near miss ("Ripley", "ops team") usually has one obvious spelling that works.
        fixed = re.sub(r"[^a-z0-9_.-]+", "-", got.strip().lower()).strip("-_.")[:64]
        if loc and loc[-1] == "prefix":
            fixed = re.sub(r"[^A-Z0-9]", "", got.upper()).lstrip("0123456789")[:8]
        if fixed and fixed != got and re.fullmatch(pattern, fixed):
            hint += f", e.g. {fixed!r}"
    return hint


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if part in {"http", "openclaw", "process", "simulated"}:
            model = {
                "http": HttpRuntime,
                "openclaw": OpenClawRuntime,
                "process": ProcessRuntime,
                "simulated": SimulatedRuntime,
            }[str(part)]
            continue
        fields = getattr(model, "model_fields", {})
        field = fields.get(part)
        if field is None:
            return []
        model = _inner_model(field.annotation)
    return sorted(getattr(model, "model_fields", {}))


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
