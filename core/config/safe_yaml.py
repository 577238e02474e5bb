"""yaml.safe_load with bounds: alias bombs, self-referring aliases and deep nesting are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError

# A config is a few hundred values a few levels deep. These bounds refuse what only an attack or
# a generator gone wrong writes: an alias bomb (nine lines of `&a`/`*a` expanding to 9^9 values,
# which the checks after parsing would walk for minutes) and nesting deep enough to exhaust
# Python's recursion limit. Both are judged on the composed node graph, before anything expands.
MAX_YAML_VALUES = 200_000
MAX_YAML_DEPTH = 64


def read_yaml(text: str, path: Path) -> Any:
    """yaml.safe_load, refusing documents too deep or too big once aliases are expanded."""
    # Depth first, from the parser's events (a loop, where composing the nodes is a recursion
    # that takes a second to hit Python's limit on 5,000 nested brackets).
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _too_deep(path)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise _too_deep(path) from None
        if node is None:
            return None
        _measure(node, 0, {}, set(), path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _too_deep(path: Path) -> ConfigError:
    return ConfigError(
        f"{path}: the YAML is nested deeper than {MAX_YAML_DEPTH} levels; a fleetbot config "
        "needs a handful."
    )


def _measure(
    node: yaml.Node, depth: int, sizes: dict[int, tuple[int, int]], open_: set[int], path: Path
) -> tuple[int, int]:
    """(values, height) of `node` with every alias expanded, each shared node measured once."""
    if depth > MAX_YAML_DEPTH:
        raise _too_deep(path)
    known = sizes.get(id(node))
    if known is not None:
        if depth + known[1] > MAX_YAML_DEPTH:
            return _measure(node, MAX_YAML_DEPTH + 1, sizes, open_, path)  # raises
        return known
    if id(node) in open_:
        raise ConfigError(
            f"{path}: an alias (*name) refers to itself: it sits inside the value its anchor "
            "(&name) marks. Write the value out instead."
        )
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    open_.add(id(node))
    values, height = 1, 0
    for child in children:
        size, below = _measure(child, depth + 1, sizes, open_, path)
        values, height = values + size, max(height, below + 1)
        if values > MAX_YAML_VALUES:
            raise ConfigError(
                f"{path}: the YAML holds more than {MAX_YAML_VALUES:,} values once its aliases "
                "(*name) are expanded: an alias bomb, not a config. Write the values out, or "
                "alias fewer times."
            )
    open_.discard(id(node))
    sizes[id(node)] = (values, height)
    return values, height
