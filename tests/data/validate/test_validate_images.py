"""Image probes (missing, unreadable, truncated) and the near-duplicate search."""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import ImageFile
from tests.hostile_inputs import dev_zero_link, fifo, pfm, png_header

from detforge.data.dataset import Dataset, ImageTable
from detforge.data.validate import validate
from detforge.data.validate.duplicates import near_duplicate_pairs
from detforge.data.validate.images import probe_image

from .conftest import H, MakeDataset, W, noise_image, plant_defects


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    noise_image(7).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("content", "status"), [
    (lambda: _encoded("JPEG"), "ok"),
    (lambda: _encoded("PNG"), "ok"),
    (lambda: _encoded("JPEG")[:-300], "truncated"),
    (lambda: _encoded("PNG")[:-40], "truncated"),
    (lambda: b"", "unreadable"),
    (lambda: b"GIF89a garbage", "unreadable"),
    (lambda: _encoded("JPEG")[:200] + b"\x00" * 500 + b"\xff\xd9", "unreadable"),
    (None, "missing"),
], ids=["jpeg", "png", "jpeg-cut", "png-cut", "empty", "garbage", "jpeg-corrupt", "missing"])
@pytest.mark.parametrize("load_truncated", [False, True], ids=["strict", "pil-lenient"])
def test_probe_image_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object,
                            status: str, load_truncated: bool) -> None:
    # Other libraries flip this PIL global; the verdict must not depend on it.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    path = tmp_path / "img"
    if callable(content):
        path.write_bytes(content())
    probe = probe_image(path)
    assert probe.status == status, probe.error
    if status == "ok":
        assert (probe.width, probe.height) == (W, H) and len(probe.sha256) == 64
    else:
        assert probe.error


def _brute_force(hashes: np.ndarray, t: int) -> set[tuple[int, int]]:
    d = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    a, b = np.nonzero(np.triu(d <= t, k=1))
    return set(zip(a.tolist(), b.tolist(), strict=True))


@pytest.mark.parametrize("t", [0, 2, 4, 8], ids=lambda t: f"t{t}")
def test_near_duplicate_pairs_match_brute_force(t: int) -> None:
    rng = np.random.default_rng(t)
    base = rng.integers(0, 2**63, 400, dtype=np.int64).astype(np.uint64)
    # Plant near copies 0..t+1 bits away.
    picks = rng.choice(400, 80, replace=False)
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))
             for k in rng.integers(0, t + 2, 80)]
    hashes = np.concatenate([base, base[picks] ^ np.array(flips, np.uint64)])
    first, second, dist = near_duplicate_pairs(hashes, max_distance=t)
    got = set(zip(first.tolist(), second.tolist(), strict=True))
    assert got == _brute_force(hashes, t)
    assert len(got) > 0 and (dist <= t).all()


def test_near_duplicates_can_be_turned_off(tmp_path: Path, make_dataset: MakeDataset) -> None:
    ds = make_dataset(n_images=4)
    assert ds.root is not None
    src = ds.root / ds.images.file[1]
    (ds.root / "images/train/again.jpg").write_bytes(src.read_bytes())
    files = [*ds.images.file.tolist(), "images/train/again.jpg"]
    images = ImageTable.build(files, [W] * 5, [H] * 5, split=["train"] * 5)
    ds2 = Dataset(ds.classes, images, ds.boxes, ds.root, ds.info)
    checks = [f.check for f in validate(ds2, progress=False, near_duplicate_bits=-1).findings]
    assert checks == ["exact_duplicate_image", "empty_image"]


def test_many_identical_hashes_stay_fast() -> None:
    """5,000 frames with one perceptual hash (e.g. black frames) must not pair up n^2."""
    import time

    from detforge.core.classes import ClassMap
    from detforge.data.dataset import BoxTable
    from detforge.data.validate.duplicates import duplicate_findings
    from detforge.data.validate.images import ImageProbe

    n = 5000
    images = ImageTable.build([f"f{i}.jpg" for i in range(n)], [W] * n, [H] * n,
                              split=["train"] * (n - 1) + ["val"])
    ds = Dataset(ClassMap.from_names(["a"]), images, BoxTable.empty())
    probes = [ImageProbe("ok", W, H, f"{i:064x}", 12345) for i in range(n)]
    start = time.perf_counter()
    findings = duplicate_findings(ds, probes)
    assert time.perf_counter() - start < 5
    assert len(findings) == n - 1
    assert [f.check for f in findings].count("split_leak") == 1


WAIT_S = 60.0  # an upper bound for a check that must not block; never a lower bound


def test_special_and_oversized_images_are_reported_not_read(tmp_path: Path,
                                                           make_dataset: MakeDataset) -> None:
    """/dev/zero behind a symlink, a FIFO, a 50000x50000 PNG header and a PFM file: each
    is one finding, and validation ends (it used to read /dev/zero forever)."""
    ds = make_dataset(n_images=8)
    assert ds.root is not None
    images = ds.root / "images" / "train"
    for name in ("img_00.png", "img_01.jpg", "img_02.jpg", "img_04.jpg"):
        (images / name).unlink()
    dev_zero_link(images / "img_00.png")
    fifo(images / "img_01.jpg")
    (images / "img_02.jpg").write_bytes(png_header(50000, 50000))
    (images / "img_04.jpg").write_bytes(pfm(40000, 40000))
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(validate(ds, progress=False)),
                              daemon=True)
    thread.start()
    thread.join(WAIT_S)
    if thread.is_alive():
        with contextlib.suppress(OSError):  # release a reader blocked on the FIFO
            os.close(os.open(images / "img_01.jpg", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"validate still reading after {WAIT_S:.0f} s")
    found = {f.file: f.message for f in box[0].findings if f.check == "unreadable_image"}
    assert set(found) == {f"images/train/{n}" for n in ("img_00.png", "img_01.jpg",
                                                         "img_02.jpg", "img_04.jpg")}
    assert "not a regular file (a character device)" in found["images/train/img_00.png"]
    assert "not a regular file (a FIFO" in found["images/train/img_01.jpg"]
    assert "50000x50000 = 2,500,000,000 pixels, over the 64,000,000-pixel cap" in found[
        "images/train/img_02.jpg"]
    assert "PFM images are not supported" in found["images/train/img_04.jpg"]


def test_a_failed_fix_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fix_log.jsonl is written before the repaired copy is moved into place: if the log
    cannot be written, there is no copy without its log."""
    fix_module = importlib.import_module("detforge.data.validate.fix")

    src = tmp_path / "src"
    src.mkdir()
    ds = plant_defects(src)
    report = validate(ds, progress=False)

    def disk_full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fix_module, "atomic_write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        fix_module.fix(ds, report, tmp_path / "fixed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
