"""``detforge predict`` end to end on a small exported model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.hostile_inputs import (
    dev_zero_link,
    fifo,
    jpeg_declaring,
    pfm,
    png_header,
    small_filesystem,
)
from typer.testing import CliRunner

from detforge.cli import app
from detforge.runtime.hardware import cpu_cores
from detforge.testing import random_image, tiny_onnx_model, write_image, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_predict_images_and_video_to_jsonl(tiny_onnx: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.jpg", random_image(48, 80, seed=0))
    write_image(src / "sub" / "b.png", random_image(64, 64, seed=1))
    (src / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    write_video(src / "clip.avi", [random_image(40, 60, seed=s) for s in range(6)], fps=10)
    out = tmp_path / "out.jsonl"
    vis = tmp_path / "vis"
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(src), "--out", str(out),
                                 "--save-vis", str(vis), "--conf", "0.1", "--every", "2",
                                 "--batch", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == [None, 0, 2, 4, None]
    assert records[0]["source"].endswith("a.jpg") and records[0]["width"] == 80
    det = records[0]["detections"][0]
    assert set(det) == {"xyxy", "score", "class_id", "class_name", "track_id"}
    assert det["class_name"] in ("cat", "dog") and det["track_id"] is None
    assert "skipped: 1" in result.output and "img/s" in result.output and "p95" in result.output
    assert (vis / "a.jpg").is_file() and (vis / "clip.mp4").is_file()


def test_streams_give_the_same_records(tiny_onnx: Path, tmp_path: Path) -> None:
    for i in range(13):
        write_image(tmp_path / "src" / f"{i:02d}.jpg", random_image(48, 80, seed=i))
    outputs = {}
    for streams in ("1", "2"):
        out = tmp_path / f"s{streams}.jsonl"
        result = runner.invoke(app, ["predict", str(tiny_onnx), str(tmp_path / "src"),
                                     "--out", str(out), "--conf", "0.1", "--batch", "2",
                                     "--streams", streams, "--device", "cpu", "--no-progress"])
        assert result.exit_code == 0, result.output
        ran = streams if cpu_cores() >= 2 else "1"  # one core: nothing to split
        assert f"batch 2 x {ran} stream(s)" in result.output
        outputs[streams] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(outputs["1"]) == 13
    assert [r["source"] for r in outputs["2"]] == [r["source"] for r in outputs["1"]]
    for a, b in zip(outputs["1"], outputs["2"], strict=True):
        assert [d["class_id"] for d in a["detections"]] == [d["class_id"] for d in b["detections"]]
        for da, db in zip(a["detections"], b["detections"], strict=True):
            assert da["xyxy"] == pytest.approx(db["xyxy"], abs=1e-3)
            assert da["score"] == pytest.approx(db["score"], abs=1e-5)


def test_predict_fast_decode_keeps_original_pixels(tiny_onnx: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "big.jpg", random_image(192, 256, seed=2))  # 4x the 64x64 input
    out = tmp_path / "fast.jsonl"
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(tmp_path / "big.jpg"),
                                 "--out", str(out), "--conf", "0.1", "--fast-decode",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (record["width"], record["height"]) == (256, 192)
    boxes = [d["xyxy"] for d in record["detections"]]
    assert boxes and all(0 <= x1 <= x2 <= 256 and 0 <= y1 <= y2 <= 192
                         for x1, y1, x2, y2 in boxes)
    assert any(x2 > 128 for _, _, x2, _ in boxes)  # not left in the reduced image's pixels


def test_predict_coco_with_gt_ids_is_ready_for_evaluate(tmp_path: Path) -> None:
    from detforge.data.synth import synthesize

    synthesize(tmp_path / "ds", images=6, classes=2, seed=0, size=(96, 64), fmt="coco",
               splits=None)
    gt_file = next((tmp_path / "ds").rglob("*.json"))
    gt = json.loads(gt_file.read_text())
    model = tiny_onnx_model(tmp_path / "m.onnx",
                            classes=[c["name"] for c in gt["categories"]][::-1])
    out = tmp_path / "dt.json"
    result = runner.invoke(app, ["predict", str(model), str(tmp_path / "ds"), "--out", str(out),
                                 "--format", "coco", "--gt", str(gt_file), "--conf", "0.01",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    dt = json.loads(out.read_text())
    assert dt and {r["image_id"] for r in dt} == {im["id"] for im in gt["images"]}
    assert {r["category_id"] for r in dt} <= {c["id"] for c in gt["categories"]}
    scored = runner.invoke(app, ["evaluate", "--predictions", str(out), "--gt", str(gt_file)])
    assert scored.exit_code == 0, scored.output
    # a model whose classes the ground truth does not name, and --gt with another format
    wrong = runner.invoke(app, ["predict", str(tiny_onnx_model(tmp_path / "w.onnx")),
                                str(tmp_path / "ds"), "--out", str(out), "--format", "coco",
                                "--gt", str(gt_file), "--no-progress"])
    assert wrong.exit_code == 2 and "no category named ['cat', 'dog']" in wrong.output
    jsonl = runner.invoke(app, ["predict", str(model), str(tmp_path / "ds"), "--out",
                                str(out), "--gt", str(gt_file), "--no-progress"])
    assert jsonl.exit_code == 2 and "--gt only applies to --format coco" in jsonl.output
    # a results file where the ground truth belongs: the evaluator's own check and message
    results = runner.invoke(app, ["predict", str(model), str(tmp_path / "ds"), "--out",
                                  str(tmp_path / "x.json"), "--format", "coco", "--gt",
                                  str(out), "--no-progress"])
    assert results.exit_code == 2 and "not a COCO ground-truth file" in results.output
    assert "Traceback" not in results.output


@pytest.mark.parametrize(("args", "message"), [
    (["--batch", "many"], "ConfigError: --batch 'many'"),
    (["--imgsz", "0,5"], "ConfigError: --imgsz"),
    (["--format", "xml"], "unknown output format 'xml'"),
    (["--streams", "0"], "ConfigError: --streams '0'"),
], ids=["bad-batch", "bad-imgsz", "bad-format", "bad-streams"])
def test_predict_bad_options_exit_2(tiny_onnx: Path, tmp_path: Path, args: list[str],
                                    message: str) -> None:
    write_image(tmp_path / "a.jpg", random_image(32, 32))
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(tmp_path / "a.jpg"), "--out",
                                 str(tmp_path / "o.jsonl"), "--no-progress", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_predict_missing_source_is_one_line_error(tiny_onnx: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(tmp_path / "nope"), "--out",
                                 str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "no such file or directory" in result.output


def _hostile_folder(root: Path) -> Path:
    """Three good images among a 60-byte PNG that declares 50000x50000, a 32000x32000 JPEG of
    a few hundred bytes, a PFM header, a FIFO and a symlink to /dev/zero."""
    src = root / "src"
    for i in range(3):
        write_image(src / f"good{i}.jpg", random_image(48, 80, seed=i))
    (src / "bomb.png").write_bytes(png_header(50000, 50000))
    (src / "bomb.jpg").write_bytes(jpeg_declaring(32000, 32000))
    (src / "float.png").write_bytes(pfm(40000, 40000))
    fifo(src / "pipe.jpg")
    dev_zero_link(src / "zero.jpg")
    return src


@pytest.mark.parametrize("fast", [False, True], ids=["full-decode", "fast-decode"])
def test_hostile_images_are_skipped_and_counted_not_fatal(tiny_onnx: Path, tmp_path: Path,
                                                          fast: bool) -> None:
    src = _hostile_folder(tmp_path)
    out = tmp_path / "out.jsonl"
    args = ["predict", str(tiny_onnx), str(src), "--out", str(out), "--no-progress",
            "--device", "cpu", *(["--fast-decode"] if fast else [])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["source"]).name for r in records] == ["good0.jpg", "good1.jpg", "good2.jpg"]
    assert "skipped: 5" in result.output
    for name, why in [("bomb.png", "50000x50000 = 2,500,000,000 pixels, over the"),
                      ("bomb.jpg", "32000x32000"), ("float.png", "PFM images are not"),
                      ("pipe.jpg", "FIFO"), ("zero.jpg", "character device")]:
        assert f"{name}: " in result.output and why in result.output, (name, result.output)

    strict = runner.invoke(app, [*args, "--fail-on-skip"])
    assert strict.exit_code == 3, strict.output
    assert len(out.read_text().splitlines()) == 3  # every readable image is still written
    assert "5 input(s) skipped (--fail-on-skip)" in strict.output


def test_memory_stays_bounded_on_a_decompression_bomb(tiny_onnx: Path, tmp_path: Path) -> None:
    """A 32000x32000 JPEG of a few hundred bytes decodes to 3 GB; predict must not try."""
    src = tmp_path / "src"
    write_image(src / "good.jpg", random_image(48, 80, seed=0))
    (src / "bomb.jpg").write_bytes(jpeg_declaring(32000, 32000))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-c", "from detforge.cli import main; main()", "predict",
           str(tiny_onnx), str(src), "--out", str(out), "--no-progress", "--device", "cpu",
           "--fast-decode"]
    # Linux keeps the peak RSS of the memory a process had before exec: a child started
    # from this (large) test process reports this process's peak. A small launcher starts
    # predict and reports predict's own peak (KiB) on its last line.
    launcher = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
                "_, s, u = os.wait4(p.pid, 0); print(u.ru_maxrss); "
                "sys.exit(os.waitstatus_to_exitcode(s))")
    proc = subprocess.run([sys.executable, "-c", launcher, *cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    output = proc.stdout
    assert proc.returncode == 0, output
    assert "skipped: 1" in output and len(out.read_text().splitlines()) == 1
    peak_kib = int(output.strip().splitlines()[-1])
    assert peak_kib * 1024 < 1.5 * 2**30, f"peak RSS {peak_kib / 2**20:.2f} GiB"


def test_out_is_written_only_when_the_run_succeeds(tiny_onnx: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(40):
        write_image(src / f"{i:02d}.png", random_image(32, 32, seed=i))
    with small_filesystem(tmp_path / "small", "8k") as small:
        out = small / "out.jsonl"
        result = runner.invoke(app, ["predict", str(tiny_onnx), str(src), "--out", str(out),
                                     "--no-progress", "--device", "cpu", "--conf", "0.01"])
        left = sorted(p.name for p in small.iterdir())
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("StorageError: ")]
    assert f"{out}: no space left on device (" in line and "free on" in line
    assert left == []  # no cut-short JSONL, no temporary file


KILLED_WRITER = """
import os, signal, sys
from detforge.core.detections import Detections
from detforge.runtime.sinks import JsonlSink, Prediction
sink = JsonlSink(sys.argv[1], ["cat", "dog"])
sink.write(Prediction("a.jpg", None, 8, 8, Detections.empty()))
sink._fh.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(tiny_onnx: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "res" / "out.jsonl"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], check=False)
    assert killed.returncode == -9
    [leftover] = list(out.parent.iterdir())
    assert leftover.name.startswith(".out.jsonl.") and leftover.name.endswith(".tmp")
    assert not out.exists()
    write_image(tmp_path / "a.jpg", random_image(48, 80, seed=0))
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(tmp_path / "a.jpg"), "--out",
                                 str(out), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.jsonl"]
