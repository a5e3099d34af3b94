from __future__ import annotations

import filecmp
import importlib
import os
from pathlib import Path

import matplotlib
import pytest

from detforge.train.offline import FONT_NAMES, import_ultralytics, offline_environment
from detforge.train.threads import allowed_cores, configure_threads

_ENV = ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR", "MPLCONFIGDIR",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")


@pytest.fixture
def keep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restore the variables these functions set, after the test."""
    for var in _ENV:
        monkeypatch.setenv(var, os.environ.get(var, ""))


def test_allowed_cores_is_the_affinity_mask() -> None:
    assert allowed_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("policy", "expect"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")],
                         ids=["unset-passive", "user-choice-kept"])
def test_configure_threads_sets_env_and_a_passive_wait_policy(
        monkeypatch: pytest.MonkeyPatch, keep_env: None, policy: str | None,
        expect: str) -> None:
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    n = allowed_cores()  # another count would stay set in torch for later tests
    assert configure_threads() == n
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == str(n)
    assert os.environ["OMP_WAIT_POLICY"] == expect


def test_offline_environment_sets_env_and_fonts(tmp_path: Path, keep_env: None) -> None:
    user_dir = offline_environment(tmp_path)
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "False"
    assert os.environ["YOLO_CONFIG_DIR"] == str(tmp_path.resolve())
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in FONT_NAMES:
        assert filecmp.cmp(user_dir / name, dejavu, shallow=False)


def test_ultralytics_is_offline_and_uses_every_core(train_out: Path, keep_env: None) -> None:
    import torch

    import_ultralytics(train_out / ".ultralytics")
    n = configure_threads()
    utils = importlib.import_module("ultralytics.utils")
    torch_utils = importlib.import_module("ultralytics.utils.torch_utils")
    checks = importlib.import_module("ultralytics.utils.checks")
    trainer = importlib.import_module("ultralytics.engine.trainer")
    assert n == allowed_cores() == torch.get_num_threads() == torch_utils.NUM_THREADS
    assert utils.ONLINE is False and checks.ONLINE is False
    assert utils.SETTINGS["sync"] is False and utils.SETTINGS["mlflow"] is False
    assert trainer.check_amp(torch.nn.Conv2d(3, 4, 1)) is False  # CPU: no AMP, no download
    assert (Path(utils.USER_CONFIG_DIR) / "Arial.ttf").is_file()


def test_undecodable_image_raises_without_a_pip_install(train_out: Path, keep_env: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ultralytics patches PIL.Image.open to pip-install pi-heif; the patch is undone."""
    import io

    from PIL import Image, UnidentifiedImageError

    import_ultralytics(train_out / ".ultralytics")
    checks = importlib.import_module("ultralytics.utils.checks")
    calls: list[object] = []
    monkeypatch.setattr(checks, "check_requirements", lambda *a, **k: calls.append(a))
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"not an image at all"))
    assert calls == []
    assert Image.open.__module__ == "PIL.Image"
