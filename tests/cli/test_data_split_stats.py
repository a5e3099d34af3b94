from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.classes import ClassMap
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import WriteOptions, read_dataset, write_dataset
from detforge.data.images import image_key

runner = CliRunner()
VIDEOS, FRAMES = 10, 5


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """50 tiny PNGs ``vid<j>_<i>.png`` (10 videos x 5 frames), 2 classes, a few empty."""
    root = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    files, idx, cls = [], [], []
    for j in range(VIDEOS):
        for i in range(FRAMES):
            n = len(files)
            files.append(f"vid{j}_{i}.png")
            Image.new("RGB", (32, 24), (n * 5 % 256, 80, 160)).save(root / files[-1])
            for _ in range(int(rng.integers(0 if n % 7 == 0 else 1, 3))):
                idx.append(n)
                cls.append(int(rng.integers(0, 2)))
    xyxy = np.tile([2.0, 3.0, 12.0, 15.0], (len(idx), 1))
    return Dataset(ClassMap.from_names(["cat", "dog"]),
                   ImageTable.build(files, [32] * len(files), [24] * len(files)),
                   BoxTable.build(idx, xyxy, cls), root=root)


@pytest.fixture(params=["yolo", "coco"])
def src(request: pytest.FixtureRequest, raw: Dataset, tmp_path: Path) -> Path:
    out = tmp_path / f"src_{request.param}"
    write_dataset(raw, out, str(request.param), options=WriteOptions(val_split="train"))
    return out


def _splits(path: Path) -> dict[str, str]:
    ds = read_dataset(path)
    return {image_key(str(f)): str(s)
            for f, s in zip(ds.images.file, ds.images.split, strict=True)}


def test_split_writes_a_grouped_split_copy(src: Path, tmp_path: Path) -> None:
    before = _tree(src)
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "split", str(src), str(out), "--ratios", "0.6,0.2,0.2",
                                 "--seed", "1", "--group-by", r"^(vid\d+)_"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["split", "images", "boxes", "groups", "ratio", "target"]
    assert [row[0] for row in lines[1:5]] == ["train", "val", "test", "total"]
    assert lines[4][1] == str(VIDEOS * FRAMES) and lines[4][3] == str(VIDEOS)
    assert any(row[:1] == ["cat"] for row in lines)
    splits = _splits(out)
    assert len(splits) == VIDEOS * FRAMES
    assert set(splits.values()) == {"train", "val", "test"}
    for j in range(VIDEOS):
        assert len({splits[f"vid{j}_{i}.png"] for i in range(FRAMES)}) == 1
    assert _tree(src) == before  # the source is never modified


def test_split_is_deterministic_and_can_change_format(src: Path, tmp_path: Path) -> None:
    args = ["--ratios", "0.5,0.5", "--seed", "7"]
    first = runner.invoke(app, ["data", "split", str(src), str(tmp_path / "a"), *args])
    second = runner.invoke(app, ["data", "split", str(src), str(tmp_path / "b"), *args,
                                 "--to", "voc"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert (tmp_path / "b" / "Annotations").is_dir()
    assert _splits(tmp_path / "a") == _splits(tmp_path / "b")
    assert set(_splits(tmp_path / "a").values()) == {"train", "val"}


@pytest.mark.parametrize(("args", "message"), [
    (["--ratios", "0.5,0.6"], "ConfigError: ratios [0.5, 0.6] sum to 1.1"),
    (["--ratios", "a,b"], "ConfigError: ratios 'a,b': 'a' is not a number"),
    (["--group-by", "(vid"], "ConfigError: --group-by '(vid' is not a valid regular"),
    (["--to", "pascal"], "ConfigError: unknown dataset format 'pascal'"),
], ids=["sum", "not-number", "regex", "format"])
def test_split_bad_arguments(src: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "split", str(src), str(out), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_split_refuses_a_non_empty_output(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["data", "split", str(src), str(out)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert _tree(out) == {"keep.txt": b"mine"}


def test_stats_table_and_json(src: Path) -> None:
    table = runner.invoke(app, ["data", "stats", str(src)])
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == ["split", "images", "empty", "boxes"]
    assert re.search(r"^cat\s+\d+", table.stdout, re.M)
    as_json = runner.invoke(app, ["data", "stats", str(src), "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["num_images"] == VIDEOS * FRAMES and data["classes"] == ["cat", "dog"]
    assert data["image_sizes"] == [[32, 24, VIDEOS * FRAMES]]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_stats_html_report(raw: Dataset, tmp_path: Path, as_json: bool) -> None:
    src, report = tmp_path / "src", tmp_path / "report.html"
    write_dataset(raw, src, "yolo", options=WriteOptions(val_split="train"))
    result = runner.invoke(app, ["data", "stats", str(src), "--html", str(report),
                                 *(["--json"] if as_json else [])])
    assert result.exit_code == 0, result.output
    if as_json:  # stdout stays pure JSON; the path goes to stderr
        assert json.loads(result.stdout)["num_boxes"] == raw.num_boxes
        assert f"report: {report}" in result.stderr
    else:
        assert f"report: {report}" in result.stdout
    html = report.read_text(encoding="utf-8")
    assert '<img src="data:image/png;base64,' in html and not re.search(r"https?://", html)


def test_stats_missing_dataset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "DatasetError:" in result.output
