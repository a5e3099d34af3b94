"""Reading a dataset YAML safely: size-capped, expansion-bounded, one-line errors.

PyYAML's ``safe_load`` constructs no Python objects beyond plain types, but it still
resolves aliases by reference, so 400 bytes of nested anchors describe a value with
billions of elements. Nothing expands it until someone walks or prints it -- which an
error message then does (``repr`` of the value: 23 s, 1.3 GB). The loader here counts
every node the document *describes*, aliases expanded, while it composes the document,
and refuses a document above :data:`MAX_NODES` before any value is built. Files above
:data:`MAX_BYTES` are refused unread. Every error is one line: the problem, the line and
column, never the value.

PyYAML is kept (it is what Ultralytics reads ``data.yaml`` with); the bound is a small
subclass of its pure-Python ``SafeLoader`` rather than another YAML library, none of which
bounds alias expansion either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from detforge.core.errors import DatasetError
from detforge.data.formats._common import read_text

__all__ = ["MAX_BYTES", "MAX_NODES", "load_yaml"]

MAX_BYTES = 1 << 20
"""Largest dataset YAML read (1 MiB; an Ultralytics ``data.yaml`` is a few hundred bytes)."""

MAX_NODES = 200_000
"""Most YAML nodes a document may describe, counting each alias as the node it repeats."""


class _TooLarge(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that counts the expanded size of the document while composing it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._total = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        alias = self.check_event(yaml.AliasEvent)
        node: Node | None = super().compose_node(parent, index)
        if node is None:
            raise yaml.YAMLError("empty node")
        # a node counts once; an alias counts as the whole (expanded) node it repeats
        self._total += self._size(node) if alias else 1
        if self._total > MAX_NODES:
            raise _TooLarge
        return node

    def _size(self, node: Node) -> int:
        key = id(node)
        if key not in self._sizes:
            if isinstance(node, SequenceNode):
                children = [self._size(c) for c in node.value]
            elif isinstance(node, MappingNode):
                children = [self._size(k) + self._size(v) for k, v in node.value]
            else:
                children = []
            self._sizes[key] = 1 + sum(children)
        return self._sizes[key]


def _one_line(text: object, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def load_yaml(path: Path) -> Any:
    """Parse a small YAML file with bounded size and alias expansion.

    Args:
        path: The YAML file.

    Returns:
        The parsed value (plain types only).

    Raises:
        DatasetError: Too large, not UTF-8, not valid YAML, too deeply nested, or
            describing more than :data:`MAX_NODES` nodes; one line, no values quoted.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"cannot read file ({exc.strerror})", path=path) from exc
    if size > MAX_BYTES:
        raise DatasetError(f"YAML file is {size} bytes, more than the {MAX_BYTES} a dataset "
                           "YAML may have; is this the right file?", path=path)
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _TooLarge:
        raise DatasetError(f"YAML describes more than {MAX_NODES} values once its aliases "
                           "are expanded (an alias bomb?); write the values out",
                           path=path) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at column {mark.column + 1}" if mark else ""
        raise DatasetError(f"not valid YAML: {_one_line(exc.problem or exc.context)}{where}; "
                           "fix the file", path=path,
                           line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise DatasetError(f"not valid YAML: {_one_line(exc)}; fix the file",
                           path=path) from None
    except RecursionError:
        raise DatasetError("YAML nested too deeply; fix the file", path=path) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an int of 10^5 digits
        raise DatasetError(f"YAML value cannot be read ({type(exc).__name__}: "
                           f"{_one_line(exc, 80)}); fix the file", path=path) from None
