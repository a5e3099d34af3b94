from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from detforge.core.errors import ConfigError, DatasetError
from detforge.data.formats import read_dataset
from detforge.data.synth import synthesize
from detforge.train.dataset_prep import prepare_yolo_dataset, training_view


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def unsplit(tmp_path: Path) -> Path:
    path = tmp_path / "coco"
    synthesize(path, images=10, classes=2, seed=1, size=(64, 64), fmt="coco", splits=None)
    return path


def test_unsplit_source_gets_seeded_holdout_and_is_untouched(unsplit: Path,
                                                             tmp_path: Path) -> None:
    before = _tree_hash(unsplit)
    prep = prepare_yolo_dataset(unsplit, tmp_path / "a", seed=3)
    again = prepare_yolo_dataset(unsplit, tmp_path / "b", seed=3)
    assert _tree_hash(unsplit) == before
    assert (prep.num_train, prep.num_val, prep.val_source) == (8, 2, "train-holdout")
    data = yaml.safe_load(prep.data_yaml.read_text())
    assert Path(data["path"]).is_absolute() and data["names"] == {0: "circle", 1: "square"}
    a = sorted(p.name for p in (tmp_path / "a" / "images" / "val").iterdir())
    b = sorted(p.name for p in (tmp_path / "b" / "images" / "val").iterdir())
    assert a == b  # same seed, same hold-out
    assert prep.version is not None and prep.version == again.version


def test_overfit_trains_and_validates_on_the_same_images(unsplit: Path, tmp_path: Path) -> None:
    prep = prepare_yolo_dataset(unsplit, tmp_path / "o", overfit=3)
    data = yaml.safe_load(prep.data_yaml.read_text())
    assert data["val"] == data["train"] and "test" not in data
    assert (prep.num_train, prep.num_val, prep.val_source) == (3, 3, "overfit")


def test_test_split_stands_in_for_missing_val(tmp_path: Path) -> None:
    ds = synthesize(tmp_path / "s", images=10, classes=2, seed=0, size=(64, 64),
                    splits=(0.7, 0.0, 0.3))
    view, source = training_view(ds)
    assert source == "test" if (ds.images.split == "test").any() else source == "train-holdout"
    assert set(view.images.split.tolist()) == {"train", "val"}


@pytest.mark.parametrize(
    ("classes", "error"),
    [(["circle", "square"], None), (["car", "truck"], "differ from the config"),
     (["square", "circle"], "differ from the config")],
    ids=["match", "other-names", "other-order"],
)
def test_preset_classes_must_match(unsplit: Path, tmp_path: Path, classes: list[str],
                                   error: str | None) -> None:
    if error is None:
        assert prepare_yolo_dataset(unsplit, tmp_path / "c", classes=classes).classes == \
            tuple(classes)
    else:
        with pytest.raises(ConfigError, match=error):
            prepare_yolo_dataset(unsplit, tmp_path / "c", classes=classes)


def test_errors_name_the_problem(unsplit: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must not overwrite"):
        prepare_yolo_dataset(unsplit, unsplit)
    ds = read_dataset(unsplit)
    with pytest.raises(DatasetError, match="no val split"):
        training_view(ds.subset([0]))
    with pytest.raises(DatasetError, match="no images"):
        training_view(ds.subset([]))
