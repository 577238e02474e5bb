"""Telegram HTML: escaping what came from outside, clipping it, and splitting long answers.

`split_html` cuts an answer into messages under Telegram's limit without breaking a tag or an
entity, so each part is valid on its own.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

MAX_TEXT = 4096


def esc(text: object) -> str:
    return html.escape(str(text), quote=False)


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, on one line, with an ellipsis if cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def clip_block(text: str, limit: int) -> str:
    """Like `clip`, but keeps line breaks (for bodies shown as a quote)."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_ATOM = re.compile(r"<[^>]*>|&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z]+);|[\s\S]")
_TAG_NAME = re.compile(r"</?\s*([A-Za-z][A-Za-z0-9-]*)")


@dataclass(frozen=True, slots=True)
class _Atom:
    raw: str
    size: int  # UTF-16 code units of visible text (0 for a tag)
    tag: str = ""  # tag name, for tags
    closing: bool = False


def _atoms(text: str) -> list[_Atom]:
    out = []
    for m in _ATOM.finditer(text):
        raw = m.group()
        if raw.startswith("<") and len(raw) > 1:
            name = _TAG_NAME.match(raw)
            out.append(_Atom(raw, 0, name.group(1).lower() if name else "", raw[1:2] == "/"))
        elif raw.startswith("&") and len(raw) > 1:
            out.append(_Atom(raw, 1))
        else:
            out.append(_Atom(raw, 2 if ord(raw) > 0xFFFF else 1))
    return out


def split_html(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut Telegram HTML into messages of at most `limit` visible UTF-16 units each.

    Cuts at a line break if there is one in the chunk, else at a space, else anywhere between
    two characters; never inside a tag or an entity. Tags open at a cut are closed at the end
    of the chunk and reopened at the start of the next, so each part is valid on its own.
    Chunks with nothing visible are dropped.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    atoms = _atoms(text)
    chunks: list[str] = []
    stack: list[_Atom] = []  # open tags at the start of the current chunk
    start = 0
    while start < len(atoms):
        cut, end_stack = _next_cut(atoms, start, stack, limit)
        body = "".join(a.raw for a in stack) + "".join(a.raw for a in atoms[start:cut])
        body += "".join(f"</{a.tag}>" for a in reversed(end_stack))
        if any(a.size and not a.raw.isspace() for a in atoms[start:cut]):
            chunks.append(body)
        stack = end_stack
        start = cut
        # The line break we cut at would only be trimmed away by Telegram.
        while start < len(atoms) and atoms[start].raw == "\n":
            start += 1
    return chunks


def _next_cut(
    atoms: list[_Atom], start: int, stack: list[_Atom], limit: int
) -> tuple[int, list[_Atom]]:
    """Where the chunk starting at `start` ends, and the tags open there."""
    open_tags = list(stack)
    size = 0
    # (index, open tags) of the last places to cut: after a line, after a space.
    best_line: tuple[int, list[_Atom]] | None = None
    best_space: tuple[int, list[_Atom]] | None = None
    i = start
    while i < len(atoms):
        atom = atoms[i]
        if atom.size:
            if size + atom.size > limit:
                chosen = best_line or best_space
                if chosen is not None and chosen[0] > start:
                    return chosen
                return i if i > start else i + 1, open_tags
            size += atom.size
            if atom.raw == "\n":
                best_line = (i, list(open_tags))
            elif atom.raw.isspace():
                best_space = (i + 1, list(open_tags))
        elif atom.tag:
            if atom.closing:
                for j in range(len(open_tags) - 1, -1, -1):
                    if open_tags[j].tag == atom.tag:
                        del open_tags[j:]
                        break
            elif not atom.raw.endswith("/>"):
                open_tags.append(atom)
        i += 1
    return len(atoms), open_tags
