"""parse_json: orjson's speed with the standard library's acceptance and errors."""

from __future__ import annotations

import json
import math

import pytest

from detforge.core.jsonfile import parse_json


@pytest.mark.parametrize("text", [
    b'{"images": [{"id": 1, "file_name": "\\u00e9t\\u00e9.jpg"}], "annotations": []}',
    b'[1, 2.5, -3e-7, true, null, "x"]',
    '{"name": "\u65e5\u672c"}'.encode(),
], ids=["coco", "scalars", "utf8"])
def test_same_value_as_json(text: bytes) -> None:
    assert parse_json(text) == json.loads(text)


@pytest.mark.parametrize(("text", "check"), [
    (b'{"score": NaN, "x": Infinity}', lambda v: math.isnan(v["score"]) and v["x"] == math.inf),
    (b'\xef\xbb\xbf{"a": 1}', lambda v: v == {"a": 1}),
], ids=["nan-infinity", "utf8-bom"])
def test_accepts_what_json_accepts_and_orjson_refuses(text: bytes, check: object) -> None:
    assert callable(check) and check(parse_json(text))


def test_invalid_json_raises_json_error_with_position() -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        parse_json(b'{"images": [\n  {"id": 1,}\n]}')
    assert (info.value.lineno, info.value.colno) == (2, 12)
