"""Fast JSON parsing for large annotation and results files.

orjson parses COCO-sized files 2-3x faster than the standard library (133 MB of COCO
annotations: ~5 s -> ~2 s on a 2-core CPU). It refuses a few things ``json`` accepts and
real files contain: ``NaN`` / ``Infinity`` literals and a UTF-8 byte-order mark. Those
files, and invalid ones, are parsed again by ``json``, so what is accepted and every error
message stay the standard library's. One difference remains: orjson reads an integer
beyond 64 bits as a float, where ``json`` keeps it exact; no COCO id or count can be that
large (pycocotools and numpy hold them in 64 bits), and the COCO reader rejects a
non-integer id with the file and the field named.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["parse_json"]


def parse_json(data: bytes) -> Any:
    """Parse JSON bytes: orjson's speed, the standard library's acceptance and errors.

    Args:
        data: The file's bytes.

    Returns:
        The parsed value.

    Raises:
        json.JSONDecodeError: Not valid JSON (the standard library's message and position).
        UnicodeDecodeError: Not UTF-8/16/32 text.

    Example:
        >>> parse_json(b'{"a": NaN}')["a"] != 0
        True
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
