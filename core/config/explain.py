"""Pydantic's validation errors as the message a user reads: the file, the key path, the fix."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from core.config.schema import (
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
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


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
