"""Selection on a planted pool, through ONNX Runtime: what is chosen first, and what never is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from detforge.active import select
from detforge.active.embedding import EMBED_OUTPUT, load_with_embedding, tap_embedding
from detforge.cli import app
from detforge.core.errors import ConfigError
from detforge.testing import write_image

from .conftest import PLANTED, last_line, probe_onnx, textured, write_pool


def _keys(out: Path) -> list[str]:
    return [p["key"] for p in json.loads((out / "selection.json").read_text())["selected"]]


@pytest.mark.parametrize("strategy", ["entropy", "margin", "least-confidence", "hybrid"])
def test_the_images_the_model_is_unsure_about_are_chosen_first(
        probe_model: Path, planted_pool: Path, tmp_path: Path, strategy: str) -> None:
    res = select(probe_model, planted_pool, budget=2, out=tmp_path / "sel", strategy=strategy,
                 hybrid_factor=1, progress=False)
    assert sorted(p.image.key for p in res.picked) == ["c_unsure.png", "d_unsure2.png"]
    assert res.picked[0].score.uncertainty["entropy"] > 0.95
    assert _keys(tmp_path / "sel") == [p.image.key for p in res.picked]


def test_full_ranking_follows_the_planted_confidence(probe_model: Path, planted_pool: Path,
                                                    tmp_path: Path) -> None:
    res = select(probe_model, planted_pool, budget=6, out=tmp_path / "sel", strategy="entropy",
                 progress=False)
    ranked = [p.image.key for p in res.picked]
    # |score - 0.5| grows along this order; a_dark scores under the floor: nothing to doubt
    assert ranked == ["c_unsure.png", "d_unsure2.png", "e_mid.png", "f_low.png",
                      "b_bright.png", "a_dark.png"]
    assert res.picked[-1].value == 0.0
    assert len(res.picked[0].labels) == 1  # the sure-enough box is pre-annotated (>= 0.25)
    assert len(res.picked[-1].labels) == 0


def test_duplicates_are_never_chosen_twice(probe_model: Path, tmp_path: Path) -> None:
    unsure = textured(128, seed=99)
    images = {n: textured(v, seed=i) for i, (n, v) in enumerate(PLANTED.items())}
    images["c_unsure.png"] = unsure
    images["c_copy.png"] = unsure.copy()                            # same bytes
    images["c_brighter.png"] = np.clip(unsure.astype(int) + 3, 0, 255).astype(np.uint8)
    pool = write_pool(tmp_path / "pool", images)
    res = select(probe_model, pool, budget=4, out=tmp_path / "sel", strategy="entropy",
                 progress=False)
    picked = [p.image.key for p in res.picked]
    assert len([k for k in picked if k.startswith("c_")]) == 1
    assert picked[1] == "d_unsure2.png"  # the next unsure image, not another copy
    doc = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert {d["key"] for d in doc["pool"]["duplicates"]} == {"c_copy.png", "c_unsure.png"}
    assert {d["duplicate_of"] for d in doc["pool"]["duplicates"]} == {"c_brighter.png"}


def test_near_duplicates_of_labelled_images_are_skipped(probe_model: Path, planted_pool: Path,
                                                       tmp_path: Path) -> None:
    from detforge.data.synth import synthesize

    labelled = synthesize(tmp_path / "ds", images=2, classes=1, seed=0, size=(64, 64),
                          splits=None)
    shutil.copy(planted_pool / "c_unsure.png", labelled.image_path(0))  # already labelled
    res = select(probe_model, planted_pool, budget=2, out=tmp_path / "sel", strategy="entropy",
                 exclude=tmp_path / "ds", progress=False)
    assert [p.image.key for p in res.picked] == ["d_unsure2.png", "e_mid.png"]
    assert res.pool.labelled_duplicate_of == {2: labelled.images.file[0]}


def test_unreadable_files_are_recorded_and_skipped(probe_model: Path, planted_pool: Path,
                                                  tmp_path: Path) -> None:
    (planted_pool / "broken.png").write_bytes(b"not a png at all")
    (planted_pool / "empty.jpg").write_bytes(b"")
    res = select(probe_model, planted_pool, budget=2, out=tmp_path / "sel", strategy="entropy",
                 progress=False)
    assert {s.key for s in res.skipped} == {"broken.png", "empty.jpg"}
    doc = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert {s["key"] for s in doc["pool"]["skipped"]} == {"broken.png", "empty.jpg"}
    assert len(res.picked) == 2


def test_a_budget_larger_than_the_pool_is_one_error_and_writes_nothing(
        probe_model: Path, planted_pool: Path, tmp_path: Path) -> None:
    (planted_pool / "broken.png").write_bytes(b"junk")
    out = tmp_path / "sel"
    with pytest.raises(ConfigError, match=r"--budget 7 is larger than the 6 selectable images"
                                          r".*1 unreadable"):
        select(probe_model, planted_pool, budget=7, out=out, progress=False)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sel")]
    result = CliRunner().invoke(app, ["active", "select", str(probe_model), str(planted_pool),
                                      "--budget", "9", "--out", str(out)])
    assert result.exit_code == 2
    assert last_line(result.output).startswith("ConfigError: --budget 9 is larger")
    assert "Traceback" not in result.output
    assert not out.exists()


def test_output_folder_is_never_overwritten(probe_model: Path, planted_pool: Path,
                                           tmp_path: Path) -> None:
    (tmp_path / "sel").mkdir()
    (tmp_path / "sel" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty folder"):
        select(probe_model, planted_pool, budget=1, out=tmp_path / "sel", progress=False)
    assert (tmp_path / "sel" / "keep.txt").read_text() == "mine"


def test_disagreement_with_the_mirror_image_and_with_a_second_model(probe_model: Path,
                                                                    tmp_path: Path) -> None:
    # Sure either way (score ~0.98 / ~0.02), but lopsided: the mirror image flips the score.
    pool = write_pool(tmp_path / "pool", {
        "lopsided.png": textured(250, right=5, seed=1), "even_bright.png": textured(250, seed=2),
        "even_dark.png": textured(5, seed=3), "even_mid.png": textured(200, seed=4)})
    res = select(probe_model, pool, budget=1, out=tmp_path / "tta", strategy="disagreement",
                 progress=False)
    assert [p.image.key for p in res.picked] == ["lopsided.png"]
    assert res.picked[0].score.disagreement == pytest.approx(1.0, abs=0.05)
    second = probe_onnx(tmp_path / "right.onnx", half="right")
    res = select(probe_model, pool, budget=1, out=tmp_path / "two", strategy="disagreement",
                 second_model=second, progress=False)
    assert [p.image.key for p in res.picked] == ["lopsided.png"]
    doc = json.loads((tmp_path / "two" / "selection.json").read_text())
    assert doc["second_model"] == str(second.resolve())


def test_diversity_spreads_over_the_models_embedding(tmp_path: Path) -> None:
    model = probe_onnx(tmp_path / "probe.onnx")
    colours = {"red1.png": (220, 30, 30), "red2.png": (210, 40, 35), "red3.png": (230, 25, 40),
               "green.png": (30, 220, 30), "blue.png": (30, 30, 220)}
    pool = write_pool(tmp_path / "pool", {n: textured(0, colour=c, seed=i)
                                          for i, (n, c) in enumerate(colours.items())})
    res = select(model, pool, budget=3, out=tmp_path / "sel", strategy="diversity",
                 progress=False)
    picked = {p.image.key for p in res.picked}
    assert {"green.png", "blue.png"} <= picked and len(picked & {"red1.png", "red2.png",
                                                                  "red3.png"}) == 1
    assert res.embedding == "onnx:cells"


def test_tapped_model_keeps_its_detections_and_adds_the_pooled_features(
        probe_model: Path, tmp_path: Path) -> None:
    from detforge.runtime import load_model

    img = textured(0, colour=(200, 100, 50), seed=0)
    plain = load_model(probe_model, device="cpu")
    tapped, tap = load_with_embedding(probe_model, device="cpu")
    assert tap is not None and (tap.tensor, tap.channels, tap.stride) == ("cells", 3, 32)
    x = plain.preprocess(img)[0][None]
    a, b = plain.infer(x), tapped.infer(x)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(b[-1][0], img.reshape(-1, 3).mean(0) / 255, atol=1e-5)
    assert tap_embedding(probe_model, tmp_path / "t.onnx", imgsz=(64, 64)) is not None
    import onnx

    assert onnx.load(str(tmp_path / "t.onnx")).graph.output[-1].name == EMBED_OUTPUT


def test_cli_select_prints_the_picks_and_the_files(probe_model: Path, planted_pool: Path,
                                                   tmp_path: Path) -> None:
    write_image(planted_pool / "sub" / "g_unsure3.png", textured(135, seed=9))
    result = CliRunner().invoke(app, ["active", "select", str(probe_model), str(planted_pool),
                                      "--budget", "3", "--out", str(tmp_path / "sel"),
                                      "--strategy", "entropy"])
    assert result.exit_code == 0, result.output
    assert "picked 3 of 7 selectable images by entropy" in result.output
    assert "sub/g_unsure3.png" in result.output
    lines = (tmp_path / "sel" / "images.txt").read_text().splitlines()
    assert len(lines) == 3 and all(Path(x).is_absolute() and Path(x).is_file() for x in lines)


def test_selection_report_renders_offline_in_a_browser(probe_model: Path, planted_pool: Path,
                                                       tmp_path: Path) -> None:
    import shutil as sh
    import subprocess

    browser = sh.which("chromium") or sh.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed")
    select(probe_model, planted_pool, budget=3, out=tmp_path / "sel", strategy="entropy",
           progress=False)
    page = (tmp_path / "sel" / "report.html").resolve()
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert "c_unsure.png" in dom and dom.count("<figure") == 3
    assert dom.count('src="data:image/jpeg;base64,') == 3
    assert "http" not in dom.replace("http-equiv", "")


@pytest.mark.train
def test_embedding_tap_on_a_real_yolo11n_graph(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from detforge.export.onnx_export import export_onnx
    from detforge.runtime import load_model
    from detforge.testing import random_image, seeded_yolo11n

    seeded_yolo11n(64, 64).save(str(tmp_path / "y.pt"))
    onnx_path = export_onnx(tmp_path / "y.pt", tmp_path / "y.onnx", imgsz=(64, 64),
                            simplify=False).path
    plain = load_model(onnx_path, device="cpu", imgsz=(64, 64))
    tapped, tap = load_with_embedding(onnx_path, device="cpu", imgsz=(64, 64))
    assert tap is not None and tap.stride == 32 and tap.channels >= 256
    batch = np.stack([plain.preprocess(random_image(64, 64, seed=s))[0] for s in range(3)])
    a, b = plain.infer(batch), tapped.infer(batch)
    np.testing.assert_array_equal(a[0], b[0])                      # detections untouched
    assert b[-1].shape == (3, tap.channels) and np.isfinite(b[-1]).all()
    assert not np.allclose(b[-1][0], b[-1][1])                     # images differ


def test_exif_rotated_images_are_skipped_with_the_reason(probe_model: Path,
                                                        planted_pool: Path,
                                                        tmp_path: Path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(textured(128, seed=50)).save(planted_pool / "phone.jpg", exif=exif)
    res = select(probe_model, planted_pool, budget=1, out=tmp_path / "sel", strategy="entropy",
                 progress=False)
    assert [(s.key, s.reason[:18]) for s in res.skipped] == [("phone.jpg",
                                                              "EXIF orientation 6")]
