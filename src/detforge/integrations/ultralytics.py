"""Make Ultralytics fully offline: no check, download, sync or upload touches the network.

Every network path in Ultralytics 8.x and how it is closed here:

============================================  =============================================
Ultralytics path                              closed by
============================================  =============================================
``utils.is_online`` -> ``ONLINE`` (DNS)        ``YOLO_OFFLINE=1`` before import; ``ONLINE``
                                              forced False in loaded modules
``checks.check_pip_update_available`` (PyPI)  ``ONLINE`` False
``checks.check_requirements`` (pip install)    ``YOLO_AUTOINSTALL=False``
``checks.check_font`` (Arial.ttf download)    matplotlib's DejaVuSans copied as ``Arial.ttf``
                                              and ``Arial.Unicode.ttf`` into the config dir
``events.Events`` (analytics), sentry          settings ``sync=False`` (and ``ONLINE`` False)
``callbacks.platform`` (Ultralytics Platform) settings ``api_key=""``,
                                              ``ULTRALYTICS_API_KEY`` removed from the env
integration callbacks (mlflow, comet, ...)    disabled in settings; detforge tracks itself
``checks.check_amp`` (downloads yolo26n.pt)   replaced in the trainer: False on CPU, and on a
                                              GPU the check runs only with local weights
``downloads.attempt_download_asset`` (model)  models are built from YAML or local ``.pt``
``data.utils.check_det_dataset`` (dataset)    the prepared dataset is complete on disk
``utils.patches.image_open`` (pip install     ``PIL.Image.open`` restored to Pillow's own: an
pi-heif on any file Pillow cannot identify)   undecodable image raises, as without Ultralytics
============================================  =============================================

The environment must be set before ``ultralytics`` is imported (``USER_CONFIG_DIR`` and
``ONLINE`` are computed at import time); :func:`import_ultralytics` does it in that order and
patches the module-level flags when Ultralytics was already imported. The telemetry of the
other libraries a run touches (MLflow, ...) goes off at the same time
(:func:`~detforge.integrations.telemetry.disable_telemetry`).

Train, runtime (``.pt`` models, ByteTrack) and export all load Ultralytics through
:func:`import_ultralytics`; this module belongs to no stage, so none imports another.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from detforge.core.errors import MissingExtraError
from detforge.integrations.telemetry import disable_telemetry

__all__ = ["FONT_NAMES", "default_config_dir", "import_ultralytics", "offline_environment"]

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
"""Font files Ultralytics plots look for in its config dir (and would otherwise download)."""

_DISABLED_SETTINGS: dict[str, Any] = {
    "sync": False, "api_key": "", "clearml": False, "comet": False, "dvc": False,
    "mlflow": False, "raytune": False, "tensorboard": False, "wandb": False,
    "vscode_msg": False, "openvino_msg": False,
}
# GPUs Ultralytics itself refuses AMP on (same pattern as its check_amp).
_BAD_AMP_GPU = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|"
                          r"t1000|t1200|t2000|k40m)", re.IGNORECASE)
_log = logging.getLogger(__name__)


def offline_environment(config_dir: str | Path) -> Path:
    """Set the environment that keeps Ultralytics offline, before it is imported.

    Args:
        config_dir: Directory for Ultralytics settings, fonts and the matplotlib cache.

    Returns:
        The Ultralytics user config dir (``config_dir/Ultralytics``), fonts in place.
    """
    config_dir = Path(config_dir).resolve()
    disable_telemetry()
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ["YOLO_VERBOSE"] = os.environ.get("YOLO_VERBOSE", "True")
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    user_dir = config_dir / "Ultralytics"
    _install_fonts(user_dir)
    return user_dir


def _install_fonts(user_dir: Path) -> None:
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    user_dir.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = user_dir / name
        if not target.exists():
            tmp = target.with_name(f".{name}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


def default_config_dir() -> Path:
    """Ultralytics config dir for work outside a training run: ``$DETFORGE_HOME/ultralytics``.

    ``DETFORGE_HOME`` defaults to ``~/.detforge``.
    """
    home = Path(os.environ.get("DETFORGE_HOME", Path.home() / ".detforge")).expanduser()
    return home / "ultralytics"


def import_ultralytics(config_dir: str | Path | None = None) -> ModuleType:
    """Import Ultralytics offline and return the module.

    Sets :func:`offline_environment` first (in :func:`default_config_dir` when
    ``config_dir`` is None). When Ultralytics is already imported (for
    example by an earlier run in this process with another config dir), fonts are installed
    in its existing config dir and the online flags are patched instead.

    Args:
        config_dir: Directory for Ultralytics settings, fonts and the matplotlib cache.

    Returns:
        The ``ultralytics`` module.

    Raises:
        MissingExtraError: Ultralytics (or torch) is not installed.
    """
    already = "ultralytics" in sys.modules
    offline_environment(default_config_dir() if config_dir is None else config_dir)
    import importlib

    try:
        ultralytics = importlib.import_module("ultralytics")
    except ModuleNotFoundError as exc:
        if exc.name not in ("ultralytics", "torch", "torchvision"):
            raise
        raise MissingExtraError(f"{exc.name} is not installed; training, .pt models, export "
                                f"and tracking need it: pip install 'detforge[train]'") from exc
    ul_utils: Any = importlib.import_module("ultralytics.utils")

    if already:
        _install_fonts(Path(ul_utils.USER_CONFIG_DIR))
    for name, module in list(sys.modules.items()):
        if name.startswith("ultralytics") and getattr(module, "ONLINE", None) is True:
            setattr(module, "ONLINE", False)  # noqa: B010
    ul_utils.SETTINGS.update(_DISABLED_SETTINGS)
    _patch_amp_check()
    _restore_pil_open()
    return ultralytics


def _restore_pil_open() -> None:
    """Undo Ultralytics' ``PIL.Image.open`` patch, which pip-installs pi-heif on bad images."""
    import importlib

    from PIL import Image

    patches: Any = importlib.import_module("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original


def _patch_amp_check() -> None:
    import importlib

    trainer: Any = importlib.import_module("ultralytics.engine.trainer")
    checks: Any = importlib.import_module("ultralytics.utils.checks")

    original = checks.check_amp
    if getattr(trainer.check_amp, "_detforge_offline", False):
        return

    def check_amp_offline(model: Any) -> bool:
        """Ultralytics' AMP check without its yolo26n.pt download."""
        weights_dir = importlib.import_module("ultralytics.utils").WEIGHTS_DIR
        device = next(model.parameters()).device
        if device.type != "cuda":
            return False
        import torch

        if _BAD_AMP_GPU.search(torch.cuda.get_device_name(device)):
            return False
        if (Path(weights_dir) / "yolo26n.pt").is_file():
            return bool(original(model))
        _log.info("AMP check skipped offline (no local yolo26n.pt); AMP stays on for this GPU")
        return True

    check_amp_offline._detforge_offline = True  # type: ignore[attr-defined]
    trainer.check_amp = check_amp_offline
