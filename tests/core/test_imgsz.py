"""One --imgsz grammar: the parser in core, and every command that takes the option."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core import ConfigError
from detforge.core.imgsz import format_imgsz, parse_imgsz, parse_imgszs


@pytest.mark.parametrize(("text", "expect"), [
    ("640", (640, 640)), ("384,640", (384, 640)), (" 384 , 640 ", (384, 640)),
    ("384x640", (384, 640)), ("384X640", (384, 640)),
    ("0", None), ("384,0", None), ("-320", None), ("320,640,960", None), ("a", None),
    ("", None), ("3.5", None), ("99999", None), ("384,", None),
], ids=["square", "height-width", "spaces", "x", "upper-x", "zero", "zero-width",
        "negative", "three", "word", "empty", "float", "too-large", "trailing-comma"])
def test_parse_imgsz(text: str, expect: tuple[int, int] | None) -> None:
    ctx: Any = pytest.raises(ConfigError, match="N or H,W") if expect is None \
        else contextlib.nullcontext()
    with ctx:
        assert parse_imgsz(text) == expect


def test_several_sizes_never_read_height_width_as_two() -> None:
    assert parse_imgszs("384,640") == ((384, 640),)
    assert parse_imgszs(["320", "384,640;640"]) == ((320, 320), (384, 640), (640, 640))
    with pytest.raises(ConfigError, match="separate them with ';'"):
        parse_imgszs("320,640,960")
    assert [format_imgsz(s) for s in parse_imgszs("320;384x640") or ()] == ["320", "384,640"]


IMGSZ_COMMANDS = {  # command -> arguments that reach the --imgsz parsing
    "train": ["train"], "evaluate": ["evaluate", "--predictions", "p.json", "--gt", "g.json"],
    "export": ["export", "m.pt", "--out", "m.onnx"], "predict": ["predict", "m.onnx", "x.jpg",
                                                                 "--out", "o.jsonl"],
    "benchmark": ["benchmark", "m.onnx", "--source", "x", "--json", "b.json"],
    "parity": ["parity", "a.onnx", "b.onnx", "--data", "ds"],
    "deploy": ["deploy", "bundle", "m.pt", "--target", "t4"],
    "serve": ["serve", "m.onnx"],
    "library": ["library", "index", ".", "--model", "m.onnx"],
    "monitor": ["monitor", "reference", "m.onnx", "--data", "ds", "--out", "r.json"],
    "active": ["active", "select", "m.onnx", ".", "--budget", "1", "--out", "o"],
}


def test_every_command_with_imgsz_is_covered() -> None:
    """A new command with --imgsz must be added to IMGSZ_COMMANDS (and use core.imgsz)."""
    from typer.main import get_command

    found = set()
    root: Any = get_command(app)
    for name, cmd in root.commands.items():
        subs = getattr(cmd, "commands", {name: cmd})
        for sub in subs.values():
            if any("--imgsz" in p.opts for p in sub.params):
                found.add(name)
    assert found == set(IMGSZ_COMMANDS)


@pytest.mark.parametrize("command", sorted(IMGSZ_COMMANDS))
def test_every_command_refuses_a_bad_size_in_one_line(command: str, tmp_path: Any) -> None:
    value = "0"  # export accepted it
    with contextlib.chdir(tmp_path):
        out = CliRunner().invoke(app, [*IMGSZ_COMMANDS[command], "--imgsz", value])
    assert out.exit_code == 2, out.output
    assert out.output.startswith(f"ConfigError: --imgsz '{value}' is not an input size"), \
        out.output
    assert len(out.output.strip().splitlines()) == 1


def test_parsers_of_the_stages_speak_the_same_grammar() -> None:
    """The stage-level helpers kept for their callers give the core results and errors."""
    from detforge.bench.options import parse_imgszs as bench_parse
    from detforge.runtime.predict import parse_imgsz as runtime_parse
    from detforge.train.config import parse_imgsz as train_parse

    assert train_parse("384,640") == (384, 640) and train_parse("320") == 320
    assert runtime_parse("384x640") == (384, 640) and bench_parse("384,640") == ((384, 640),)
    for fn in (bench_parse, runtime_parse, train_parse):
        with pytest.raises(ConfigError, match="is not an input size"):
            fn("0")
