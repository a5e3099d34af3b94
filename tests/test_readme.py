"""The README's command examples run, offline, on a small synthetic dataset.

Every ``detforge`` line of the README's shell blocks is either run here (in README order,
in one folder, with sizes made tiny) or listed in ``NOT_RUN`` with the reason; a new
example must be added to one or the other.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"

SHRINK = {"--images 200": "--images 24"}
"""Substitutions that keep a README example small; the command is otherwise unchanged."""

NOT_RUN = {  # example (prefix) -> why it is not run here
    "detforge data convert coco_ds": "shows a refusal and its options on a COCO dataset with "
                                     "crowd regions (tests/data/formats)",
    "detforge data convert voc_ds": "needs a VOC dataset (tests/data converts BCCD)",
    "detforge train": "trains a model (tests/train and the INT8 test train small ones)",
    "detforge evaluate --predictions dt.json --gt gt.json --ray": "needs a running Ray cluster "
                                                                  "(tests/scale)",
    "detforge evaluate runs/": "needs a trained model (tests/evaluate runs the same code)",
    "detforge export": "needs trained weights (tests/export)",
    "detforge quantize": "needs an exported model (tests/export)",
    "detforge engine": "needs TensorRT and a GPU",
    "detforge predict": "needs an exported model and photos (tests/runtime, tests/cli)",
    "detforge benchmark": "needs exported models (tests/bench)",
    "detforge parity": "needs trained weights (tests/export)",
    "detforge deploy": "needs an exported model; verify runs on the device",
    "detforge registry": "needs a bundle (tests/deploy)",
    "detforge library": "needs a detector, CLIP weights and a photo folder (tests/library)",
    "detforge monitor": "needs an exported model, a running server or promtool (tests/monitor)",
    "detforge data catalog show ds": "follows `active merge` (tests/active)",
    "detforge active": "needs a trained model and a pool of photos (tests/active)",
    "detforge serve": "starts a server (tests/serve)",
    "DETFORGE_API_KEY=": "starts a server (tests/serve)",
}


def readme_commands() -> list[str]:
    """The ``detforge`` command lines of the README's bash blocks, comments removed."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    joined = [re.sub(r"\\\n\s*", " ", block) for block in blocks]  # continuation lines
    lines = [ln.strip() for block in joined for ln in block.splitlines()]
    return [_strip_comment(ln) for ln in lines if ln.startswith(("detforge", "DETFORGE_"))]


def _strip_comment(line: str) -> str:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return shlex.join(list(lexer))


def _runnable(cmd: str) -> bool:
    return not any(cmd.startswith(prefix) for prefix in NOT_RUN)


def test_every_example_is_run_or_has_a_reason() -> None:
    cmds = readme_commands()
    assert len(cmds) > 25
    run = [c for c in cmds if _runnable(c)]
    assert len(run) >= 8, run
    # every NOT_RUN entry still matches an example (no stale reasons)
    assert all(any(c.startswith(p) for c in cmds) for p in NOT_RUN)


def _gt_and_detections(folder: Path) -> None:
    """gt.json from the COCO copy of the README's dataset, dets.json from its boxes."""
    gt: dict[str, Any] = json.loads(next((folder / "ds_coco").rglob("*.json")).read_text())
    (folder / "gt.json").write_text(json.dumps(gt))
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"],
             "bbox": [v + 1.0 for v in a["bbox"]], "score": 0.5 + 0.4 * (i % 2)}
            for i, a in enumerate(gt["annotations"])]
    (folder / "dets.json").write_text(json.dumps(dets))


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DETFORGE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    ran = []
    for cmd in filter(_runnable, readme_commands()):
        for old, new in SHRINK.items():
            cmd = cmd.replace(old, new)
        if "--predictions dets.json" in cmd:
            _gt_and_detections(tmp_path)
        args = shlex.split(cmd)[1:]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{cmd}\n{result.output[-2000:]}"
        ran.append(cmd)
    assert any("evaluate --predictions" in c for c in ran)
    assert (tmp_path / "stats.html").is_file() and (tmp_path / "scores.json").is_file()
    assert json.loads((tmp_path / "scores.json").read_text())["stats"][1] > 0.9
