"""Parsing of --batch, --imgsz and --tolerance."""

from __future__ import annotations

import pytest

from detforge.bench.options import format_imgsz, parse_batches, parse_imgszs, parse_tolerance
from detforge.core.errors import ConfigError


@pytest.mark.parametrize(("text", "expected"), [
    ("5%", 0.05), ("0.05", 0.05), (" 12.5% ", 0.125), ("0", 0.0),
    ("0%", 0.0), ("99.9%", 0.999),
], ids=["percent", "fraction", "decimal-percent", "zero", "zero-percent", "near-100"])
def test_parse_tolerance(text: str, expected: float) -> None:
    assert parse_tolerance(text) == pytest.approx(expected)


@pytest.mark.parametrize(("text", "message"), [
    ("5", "ambiguous"), ("abc", "not a number"), ("-5%", "must lie in"),
    ("100%", "must lie in"), ("nan", "not a number"), ("%", "not a number"),
], ids=["bare-int", "word", "negative", "hundred", "nan", "empty-percent"])
def test_parse_tolerance_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tolerance(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("1", (1,)), ("1,8", (1, 8)), (" 8, 1 ,8", (8, 1)),
], ids=["one", "two", "spaces-duplicates"])
def test_parse_batches(text: str, expected: tuple[int, ...]) -> None:
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["0", "1,x", "", "1,,8", "-1"],
                         ids=["zero", "word", "empty", "gap", "negative"])
def test_parse_batches_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        parse_batches(text)


@pytest.mark.parametrize(("text", "expected"), [
    (None, None), ("320", ((320, 320),)), ("384,640", ((384, 640),)),
    ("320;640", ((320, 320), (640, 640))), (["320", "384,640"], ((320, 320), (384, 640))),
    ("384x640; 320;320", ((384, 640), (320, 320))), ("480X640", ((480, 640),)),
], ids=["none", "one", "height-width-is-one-size", "semicolon", "repeated-option",
        "rect-and-duplicate", "upper-x"])
def test_parse_imgszs(text: str | list[str] | None,
                      expected: tuple[tuple[int, int], ...] | None) -> None:
    assert parse_imgszs(text) == expected


@pytest.mark.parametrize("text", ["", "0", "3x4x5", "axb", "320,640,960"],
                         ids=["empty", "zero", "three-dims", "words", "three-numbers"])
def test_parse_imgszs_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--imgsz"):
        parse_imgszs(text)


def test_format_imgsz() -> None:
    assert format_imgsz((320, 320)) == 320 and format_imgsz((480, 640)) == [480, 640]
