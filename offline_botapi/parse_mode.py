"""Telegram's HTML ``parse_mode``, re-implemented for the offline Bot API.

This mirrors tdlib's ``parse_html`` (the parser behind the real Bot API), including its
error texts, so output the real Telegram would reject is rejected here as well.  The one
deliberate difference: tdlib keeps a bare ``&`` that starts no known entity as a literal
character, while :func:`parse_html` rejects it by default (``strict_ampersand``).  A bare
``&`` in bot output almost always means that user text was not run through
``html.escape``, and the same text will sooner or later contain a ``<`` that Telegram
rejects, so failing early is more useful in tests.

Offsets in returned entities and all lengths are in UTF-16 code units, like Telegram's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["HTMLParseError", "ParsedText", "parse_html", "strip_text", "utf16_len"]

# Tag name -> entity type.  "span" and "a" are special-cased below.
_SIMPLE_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_SUPPORTED_TAGS = frozenset(_SIMPLE_TAGS) | {"a", "span", "tg-emoji", "blockquote"}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
# tdlib's is_space(): the ASCII whitespace characters.
_SPACES = frozenset(" \t\r\n\f\v")


class HTMLParseError(ValueError):
    """The text is not valid Telegram HTML; ``str(err)`` is tdlib's reason text."""


@dataclass
class ParsedText:
    """Plain text plus Telegram ``MessageEntity`` dicts (UTF-16 offsets)."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _OpenTag:
    name: str
    argument: str
    utf16_start: int


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (astral characters count twice)."""
    return len(text.encode("utf-16-le")) // 2


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode the HTML entity starting at ``text[pos] == '&'`` like tdlib does.

    Returns ``(character, position after the entity)`` or ``None`` when it is not one.
    As in tdlib the trailing ``;`` is optional.
    """
    end = pos + 1
    if end < len(text) and text[end] == "#":
        end += 1
        value = 0
        if end < len(text) and text[end] == "x":
            end += 1
            start = end
            while end < len(text) and text[end] in "0123456789abcdefABCDEF":
                end += 1
            digits, base = text[start:end], 16
        else:
            start = end
            while end < len(text) and text[end].isascii() and text[end].isdigit():
                end += 1
            digits, base = text[start:end], 10
        if not digits:
            return None
        value = int(digits, base)
        if value == 0 or value >= 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            return None
        char = chr(value)
    else:
        while end < len(text) and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if end < len(text) and text[end] == ";":
        end += 1
    return char, end


def _byte_offset(text: str, pos: int) -> int:
    # tdlib reports positions as byte offsets into the UTF-8 source.
    return len(text[:pos].encode("utf-8"))


def parse_html(source: str, *, strict_ampersand: bool = True) -> ParsedText:
    """Parse Telegram HTML into plain text and entities, or raise :class:`HTMLParseError`.

    The result is not yet whitespace-trimmed; see :func:`strip_text`.
    """
    out: list[str] = []
    utf16_pos = 0
    entities: list[dict[str, Any]] = []
    stack: list[_OpenTag] = []
    i = 0
    n = len(source)

    def emit(chunk: str) -> None:
        nonlocal utf16_pos
        out.append(chunk)
        utf16_pos += utf16_len(chunk)

    while i < n:
        c = source[i]
        if c == "&":
            decoded = _decode_entity(source, i)
            if decoded is not None:
                emit(decoded[0])
                i = decoded[1]
                continue
            if strict_ampersand:
                raise HTMLParseError(
                    f'Unescaped "&" at byte offset {_byte_offset(source, i)}; '
                    "use &amp; (offline API strictness, see offline_botapi/parse_mode.py)"
                )
        if c != "<":
            emit(c)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and source[i] == "/":
            i = _close_tag(source, begin, i, stack, entities, utf16_pos)
        else:
            i = _open_tag(source, begin, i, stack, utf16_pos)

    if stack:
        raise HTMLParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText("".join(out), entities)


def _open_tag(source: str, begin: int, i: int, stack: list[_OpenTag], utf16_pos: int) -> int:
    """Parse a start tag whose ``<`` is at ``begin``; return the index after its ``>``."""
    n = len(source)
    offset = _byte_offset(source, begin)
    while i < n and source[i] not in _SPACES and source[i] != ">":
        i += 1
    if i >= n:
        raise HTMLParseError(f"Unclosed start tag at byte offset {offset}")
    tag = source[begin + 1 : i].lower()
    if tag not in _SUPPORTED_TAGS:
        raise HTMLParseError(f'Unsupported start tag "{tag}" at byte offset {offset}')

    argument = ""
    while True:
        while i < n and source[i] in _SPACES:
            i += 1
        if i >= n:
            raise HTMLParseError(f'Unclosed start tag "{tag}" at byte offset {offset}')
        if source[i] == ">":
            i += 1
            break
        name_start = i
        while i < n and source[i] not in _SPACES and source[i] not in "=>":
            i += 1
        attr = source[name_start:i].lower()
        if not attr:
            raise HTMLParseError(f'Empty attribute name in the tag "{tag}" at byte offset {offset}')
        while i < n and source[i] in _SPACES:
            i += 1
        if i >= n or source[i] != "=":
            # Valueless attributes are only meaningful as <blockquote expandable>.
            if i < n and tag == "blockquote" and attr == "expandable":
                argument = "expandable"
            continue
        i += 1
        while i < n and source[i] in _SPACES:
            i += 1
        if i >= n:
            raise HTMLParseError(f'Unclosed start tag "{tag}" at byte offset {offset}')
        value, i = _attribute_value(source, i, offset)
        if tag == "a" and attr == "href":
            argument = value
        elif tag == "code" and attr == "class" and value.startswith("language-"):
            argument = value[len("language-") :]
        elif tag == "span" and attr == "class" and value.startswith("tg-"):
            argument = value[len("tg-") :]
        elif tag == "tg-emoji" and attr == "emoji-id":
            argument = value

    if tag == "span" and argument != "spoiler":
        raise HTMLParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
    if tag == "tg-emoji" and not (argument.isascii() and argument.isdigit() and int(argument)):
        raise HTMLParseError("Invalid custom emoji identifier specified")
    stack.append(_OpenTag(tag, argument, utf16_pos))
    return i


def _attribute_value(source: str, i: int, tag_offset: int) -> tuple[str, int]:
    """Read a quoted string or bare name token starting at ``i``."""
    n = len(source)
    if source[i] not in "'\"":
        start = i
        while i < n and ((source[i].isascii() and source[i].isalnum()) or source[i] in ".-"):
            i += 1
        if i >= n or (source[i] not in _SPACES and source[i] != ">"):
            raise HTMLParseError(
                f"Unexpected end of name token at byte offset {_byte_offset(source, start)}"
            )
        return source[start:i].lower(), i
    quote = source[i]
    i += 1
    chars: list[str] = []
    while i < n and source[i] != quote:
        if source[i] == "&":
            decoded = _decode_entity(source, i)
            if decoded is not None:
                chars.append(decoded[0])
                i = decoded[1]
                continue
        chars.append(source[i])
        i += 1
    if i >= n:
        raise HTMLParseError(f"Unclosed start tag at byte offset {tag_offset}")
    return "".join(chars), i + 1


def _close_tag(
    source: str,
    begin: int,
    i: int,
    stack: list[_OpenTag],
    entities: list[dict[str, Any]],
    utf16_pos: int,
) -> int:
    """Parse an end tag whose ``<`` is at ``begin``; emit its entity; return the next index."""
    n = len(source)
    offset = _byte_offset(source, begin)
    if not stack:
        raise HTMLParseError(f"Unexpected end tag at byte offset {offset}")
    i += 1
    name_start = i
    while i < n and source[i] not in _SPACES and source[i] != ">":
        i += 1
    end_name = source[name_start:i].lower()
    while i < n and source[i] in _SPACES:
        i += 1
    if i >= n or source[i] != ">":
        raise HTMLParseError(f"Unclosed end tag at byte offset {offset}")
    opened = stack.pop()
    if end_name and end_name != opened.name:
        raise HTMLParseError(
            f'Unmatched end tag at byte offset {offset}, expected "</{opened.name}>", '
            f'found "</{end_name}>"'
        )
    length = utf16_pos - opened.utf16_start
    if length > 0:
        entity = _make_entity(opened, length, entities)
        if entity is not None:
            entities.append(entity)
    return i + 1


def _make_entity(
    opened: _OpenTag, length: int, entities: list[dict[str, Any]]
) -> dict[str, Any] | None:
    base: dict[str, Any] = {"offset": opened.utf16_start, "length": length}
    tag, arg = opened.name, opened.argument
    if tag in ("span", "tg-spoiler"):
        return {"type": "spoiler", **base}
    if tag == "a":
        # tdlib silently drops links it cannot use instead of failing the message.
        if not arg.startswith(("http://", "https://", "tg://")):
            return None
        return {"type": "text_link", **base, "url": arg}
    if tag == "tg-emoji":
        return {"type": "custom_emoji", **base, "custom_emoji_id": arg}
    if tag == "blockquote":
        kind = "expandable_blockquote" if arg == "expandable" else "blockquote"
        return {"type": kind, **base}
    if tag == "pre":
        # <pre><code class="language-x">...</code></pre> becomes one pre entity with a
        # language; code entities nested in a pre are absorbed, as tdlib does.
        end = opened.utf16_start + length
        language = ""
        for inner in [e for e in entities if e["type"] == "code"]:
            if opened.utf16_start <= inner["offset"] and inner["offset"] + inner["length"] <= end:
                entities.remove(inner)
                if inner["length"] == length and inner.get("language"):
                    language = inner["language"]
        pre: dict[str, Any] = {"type": "pre", **base}
        if language:
            pre["language"] = language
        return pre
    entity = {"type": _SIMPLE_TAGS[tag], **base}
    if tag == "code" and arg:
        entity["language"] = arg  # only kept if an enclosing <pre> claims it
    return entity


def strip_text(parsed: ParsedText) -> ParsedText:
    """Trim surrounding whitespace like Telegram and shift/clip the entities to match."""
    text = parsed.text
    stripped = text.strip()
    if stripped == text:
        return ParsedText(text, [_clean(e) for e in parsed.entities])
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    entities: list[dict[str, Any]] = []
    for entity in parsed.entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            entities.append(_clean({**entity, "offset": start, "length": end - start}))
    return ParsedText(stripped, entities)


def _clean(entity: dict[str, Any]) -> dict[str, Any]:
    # A language on a bare <code> (not inside <pre>) is dropped by Telegram.
    if entity["type"] == "code" and "language" in entity:
        entity = {k: v for k, v in entity.items() if k != "language"}
    return entity
