"""Mutations of a valid dataset: bytes, structure (JSON, YAML, XML, text fields), names.

Every input is derived from a seed by one mutation chosen by a seeded RNG, so input
``k`` of a campaign is the same on every machine and a failure can be replayed from its
index. Mutations cover what hostile or broken files hold: flipped and cut bytes, wrong
types, numbers at 2^31, 2^63 and beyond, NaN and infinities, deep nesting, YAML alias
bombs, XML entity bombs and bogus encodings, NUL bytes, overlong and odd file names,
thousands of identical boxes, and symbolic links (loops, dangling).
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detforge.data.fuzz.seeds import SEEDS, Seed

__all__ = ["MUTATORS", "FuzzInput", "make_input"]

HOSTILE_TOKENS = ("2147483648", "-2147483649", "4294967296", "9223372036854775808",
                  "18446744073709551616", "1" + "0" * 400, "1e400", "-1e400", "nan", "NaN",
                  "inf", "-inf", "Infinity", "1e-400", "0x10", "1_0", "\u0661", "", "-0",
                  "1.5", "-1", "0", "999999", "１", "\x00", "1e308", "4.9e-324")
HOSTILE_JSON: tuple[Any, ...] = (
    2**31, -2**31 - 1, 2**63, 2**64, 10**30, 1e308, -1e308, 0.5, -1, 0, "", "x" * 100_000,
    None, True, False, [], {}, "a\u0000b", "../../../../etc/passwd", "/dev/null",
    "x" * 300 + ".png", "\ud800", " ", "a\nb.png", "ü/ß 猫.png", "C:\\a\\b.png", [1, 2],
    {"a": 1}, [[[1]]], "NaN")
HOSTILE_YAML = ("/", "..", "../..", "/etc", "[]", "{}", "null", "~", "''",
                "!!python/object:os.system [ls]", "*nowhere", "!!binary aGk=", "[" * 3000,
                "1e400", ".nan", ".inf", "2147483648", "x" * 10_000, "\"a\\0b\"",
                "[a, [b], {c: d}]", "{0: a, 0: b}", "{-1: a}", "{2147483648: a}",
                "[null, null]", "[1, 2]", "[a, a]", "images/train\n  - x", "2001-13-45",
                "0o777", "&a [*a]", "images/../../..", "./images/train/../../../")
_LOL = "[" + ", ".join(["*{}"] * 9) + "]"
ALIAS_BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\n"
              + "".join(f"{n}: &{n} {_LOL.format(*[p] * 9)}\n"
                        for p, n in zip("abcdefg", "bcdefgh", strict=True))
              + "names: *h\ntrain: *h\nval: images/val\n")
ENTITY_BOMB = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
               + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
               + ']>\n<annotation><filename>&lol9;</filename></annotation>\n')
EXTERNAL_ENTITY = ('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY e SYSTEM '
                   '"file:///etc/passwd">]>\n<annotation><filename>&e;</filename>'
                   "</annotation>\n")
ODD_NAMES = ("x" * 255 + ".png", "a\nb.png", " .png", "ü ß 猫.png", "-rf.png", "a:b.png",
             "..png", "UPPER.PNG", "a.png.txt", "\u202egnp.png")


@dataclass(frozen=True)
class FuzzInput:
    """One fuzzed dataset.

    Attributes:
        format: Format name.
        index: Input number in its campaign.
        mutator: Name of the mutation applied.
        files: Every file of the dataset (path relative to the root -> bytes).
        links: Symbolic links to create (path -> target).
    """

    format: str
    index: int
    mutator: str
    files: dict[str, bytes]
    links: dict[str, str] = field(default_factory=dict)


Mutation = Callable[[random.Random, Seed, str], tuple[dict[str, bytes], dict[str, str]]]


def _with(seed: Seed, target: str, data: bytes) -> dict[str, bytes]:
    return {**seed.files, target: data}


def _flip(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    data = bytearray(seed.files[t])
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return _with(seed, t, bytes(data)), {}


def _truncate(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    data = seed.files[t]
    return _with(seed, t, data[: rng.randrange(len(data) + 1)]), {}


def _splice(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    data = seed.files[t]
    a, b = sorted(rng.randrange(len(data) + 1) for _ in range(2))
    junk = rng.choice([b"", data[a:b] * rng.randint(2, 50), bytes(rng.randrange(256)
                       for _ in range(rng.randint(1, 64))), b"\x00" * 8, b"\xff\xfe",
                       "\u00e9\u4e2d".encode("latin-1", "replace"), b"\r\n" * 3])
    cut = rng.randrange(len(data) + 1)
    return _with(seed, t, data[:a] + junk + data[cut:] if cut > a else data[:a] + junk), {}


def _repeat_line(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes],
                                                                 dict[str, str]]:
    lines = seed.files[t].splitlines(keepends=True) or [b"\n"]
    line = rng.choice(lines)
    if not line.endswith(b"\n"):
        line += b"\n"
    return _with(seed, t, seed.files[t] + line * rng.choice([2, 100, 8000])), {}


def _token(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    text = seed.files[t].decode("utf-8", "replace")
    spans = [m.span() for m in re.finditer(r"[^\s<>\"':,\[\]{}=]+", text)]
    if not spans:
        return _splice(rng, seed, t)
    for _ in range(rng.randint(1, 3)):
        a, b = rng.choice(spans)
        text = text[:a] + rng.choice(HOSTILE_TOKENS) + text[b:]
        spans = [m.span() for m in re.finditer(r"[^\s<>\"':,\[\]{}=]+", text)] or [(0, 0)]
    return _with(seed, t, text.encode("utf-8", "surrogatepass")), {}


def _fields(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    lines = seed.files[t].decode("utf-8", "replace").splitlines()
    if not lines:
        return _splice(rng, seed, t)
    k = rng.randrange(len(lines))
    parts = lines[k].split()
    choice = rng.randrange(4)
    if choice == 0 and parts:
        parts.pop(rng.randrange(len(parts)))
    elif choice == 1:
        parts += [rng.choice(HOSTILE_TOKENS) or "1"] * rng.randint(1, 20)
    elif choice == 2:
        parts = ["0"] + ["0.5"] * rng.choice([3, 4, 14, 15, 16, 1000])
    else:
        parts = [p + "\t" for p in parts] + ["\x0c"]
    lines[k] = " ".join(parts)
    return _with(seed, t, "\n".join(lines).encode("utf-8", "surrogatepass")), {}


def _json_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _json_paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):
            out += _json_paths(v, (*path, i))
    return out


def _json(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    try:
        doc = json.loads(seed.files[t])
    except ValueError:
        return _token(rng, seed, t)
    paths = [p for p in _json_paths(doc) if p]
    path = rng.choice(paths)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    action = rng.randrange(6)
    if action == 0 and isinstance(parent, dict):
        del parent[last]
    elif action == 1 and isinstance(parent[last], list) and parent[last]:
        parent[last] = parent[last] + [parent[last][0]] * rng.choice([10, 8000])
    elif action == 2:
        parent[last] = "__DEEP__"
    else:
        parent[last] = rng.choice(HOSTILE_JSON)
    depth = rng.choice([50, 3000, 100_000])
    text = json.dumps(doc, ensure_ascii=rng.random() < 0.5).replace('"NaN"', rng.choice(
        ["NaN", "Infinity", "-Infinity", '"NaN"'])).replace(
        '"__DEEP__"', "[" * depth + "1" + "]" * depth)
    return _with(seed, t, text.encode("utf-8", "surrogatepass")), {}


def _yaml(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    if not t.endswith(".yaml"):
        return _token(rng, seed, t)
    if rng.random() < 0.1:
        return _with(seed, t, ALIAS_BOMB.encode()), {}
    lines = seed.files[t].decode().splitlines()
    k = rng.randrange(len(lines))
    key = lines[k].split(":", 1)[0]
    value = rng.choice(HOSTILE_YAML)
    lines[k] = f"{key}: {value}" if not key.startswith(" ") else f"{key}: {value}"
    if rng.random() < 0.2:
        lines.insert(rng.randrange(len(lines) + 1), f"{key}: {rng.choice(HOSTILE_YAML)}")
    return _with(seed, t, "\n".join(lines).encode("utf-8", "surrogatepass")), {}


def _xml(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    if not t.endswith(".xml"):
        return _token(rng, seed, t)
    text = seed.files[t].decode()
    action = rng.randrange(8)
    if action == 0:
        text = rng.choice([ENTITY_BOMB, EXTERNAL_ENTITY])
    elif action == 1:
        enc = rng.choice(["bogus", "utf-16", "latin-1", "ascii", "utf-32", "ebcdic-cp-us", ""])
        text = re.sub(r'encoding="[^"]*"', f'encoding="{enc}"', text)
    elif action == 2:
        depth = rng.choice([100, 100_000])
        text = text.replace("<segmented>", "<x>" * depth + "</x>" * depth + "<segmented>")
    elif action == 3:
        obj = re.search(r"<object>.*?</object>", text)
        if obj:
            text = text.replace(obj.group(0), obj.group(0) * rng.choice([10, 8000]))
    elif action == 4:
        tags = re.findall(r"<(\w+)>[^<]*</\1>", text)
        if tags:
            tag = rng.choice(tags)
            text = re.sub(f"<{tag}>[^<]*</{tag}>", "", text, count=1)
    elif action == 5:
        text = text.replace("<filename>", "<filename>" + rng.choice(
            ["&#0;", "../../", "/etc/", "&amp;", "<![CDATA[x]]>", "x" * 300]), 1)
    else:
        return _token(rng, seed, t)
    return _with(seed, t, text.encode("utf-8", "surrogatepass")), {}


def _names(rng: random.Random, seed: Seed, t: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """Odd file names and symbolic links beside the dataset's own files."""
    files = dict(seed.files)
    links: dict[str, str] = {}
    images = [p for p in files if p.endswith(".png")]
    src = rng.choice(images)
    folder = src.rsplit("/", 1)[0] + "/" if "/" in src else ""
    odd = rng.choice(ODD_NAMES)
    action = rng.randrange(4)
    if action == 0:  # rename an image (labels now point at a missing file)
        files[folder + odd] = files.pop(src)
    elif action == 1:  # an extra image, and a label of the same odd name where one fits
        files[folder + odd] = files[src]
        label = folder.replace("images", "labels", 1) + odd.rsplit(".", 1)[0] + ".txt"
        if label != folder + odd and seed.format == "yolo":
            files[label] = b"0 0.5 0.5 0.2 0.2\n"
    elif action == 2:  # a symlink loop inside an image folder
        links[folder + "loop"] = "."
        links[folder + "up"] = ".."
    else:  # a dangling symlink and a link to another image
        links[folder + "dangling.png"] = "does-not-exist.png"
        links[folder + "alias.png"] = src.rsplit("/", 1)[-1]
    return files, links


MUTATORS: dict[str, Mutation] = {
    "flip": _flip, "truncate": _truncate, "splice": _splice, "repeat-line": _repeat_line,
    "token": _token, "fields": _fields, "json": _json, "yaml": _yaml, "xml": _xml,
    "names": _names,
}
"""Mutations by name."""

_WEIGHTS = {"coco": {"flip": 2, "truncate": 1, "splice": 2, "repeat-line": 1, "token": 3,
                     "json": 8, "names": 1},
            "yolo": {"flip": 2, "truncate": 1, "splice": 2, "repeat-line": 2, "token": 3,
                     "fields": 3, "yaml": 5, "names": 1},
            "voc": {"flip": 2, "truncate": 1, "splice": 2, "repeat-line": 1, "token": 3,
                    "xml": 6, "names": 1},
            "kitti": {"flip": 2, "truncate": 1, "splice": 2, "repeat-line": 2, "token": 4,
                      "fields": 4, "names": 1}}


@functools.cache
def _seed(fmt: str) -> Seed:
    return SEEDS[fmt]()


def make_input(fmt: str, index: int, seed: int = 0) -> FuzzInput:
    """Input ``index`` of the campaign ``(fmt, seed)``: the same bytes on every machine.

    Args:
        fmt: ``coco``, ``yolo``, ``voc`` or ``kitti``.
        index: Input number.
        seed: Campaign seed.

    Returns:
        The mutated dataset.
    """
    rng = random.Random(f"{fmt}/{seed}/{index}")
    base = _seed(fmt)
    weights = _WEIGHTS[fmt]
    name = rng.choices(list(weights), weights=list(weights.values()))[0]
    target = rng.choice(base.targets)
    files, links = MUTATORS[name](rng, base, target)
    return FuzzInput(fmt, index, name, files, links)
