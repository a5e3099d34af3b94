"""Ultralytics backend: YOLOv8 / YOLO11 / RT-DETR, offline, on every allowed core.

Mapping of :class:`~detforge.train.config.TrainConfig` onto Ultralytics arguments:

* ``imgsz`` -> the square ``train_imgsz`` (longer side of a rectangular size); ``rect``
  passes through.
* ``amp`` is only ever on with a GPU ``device``; on CPU Ultralytics trains in fp32.
* ``optim.nbs`` is Ultralytics' nominal batch: gradients accumulate over
  ``round(nbs / batch)`` batches, so a small ``batch`` trains like a batch of ``nbs``.
* ``overfit``: BatchNorm running statistics follow the last few steps (momentum 0.5, not
  0.03), so evaluation sees the network being trained; the epoch callback stops training
  once :func:`~detforge.train.config.overfit_done` (mAP50 on the memorised images).
* Warm-up (``optim.warmup_epochs``), EMA of the weights (always on in Ultralytics), early
  stop (``patience``) and a ``last.pt`` checkpoint after every epoch are Ultralytics'.
* ``activation`` writes the model YAML with Ultralytics' ``activation`` key (e.g.
  ``nn.ReLU()``) into the run directory as ``<stem>-<activation>.yaml`` (the stem keeps the
  scale letter Ultralytics reads from the file name) and builds the model from it.
* ``project``/``name`` are the run directory, so ``weights/``, ``results.csv`` and the
  plots land in it.
"""

from __future__ import annotations

import importlib
import logging
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from detforge.core.atomic import atomic_write_text
from detforge.core.errors import ConfigError
from detforge.train.backends.base import BackendRun, EpochCallback, ModelInfo
from detforge.train.config import overfit_done
from detforge.train.offline import import_ultralytics
from detforge.train.threads import configure_threads

if TYPE_CHECKING:
    from detforge.train.config import TrainConfig

LOGGER = logging.getLogger(__name__)
_OVERFIT_BN_MOMENTUM = 0.5
_ACTIVATIONS = {"silu": "nn.SiLU()", "relu": "nn.ReLU()"}

__all__ = ["UltralyticsBackend", "metric_name"]


def metric_name(key: str) -> str:
    """Ultralytics metric key -> detforge name (``metrics/mAP50-95(B)`` -> ``mAP50-95``)."""
    if key.startswith("metrics/"):
        key = key[len("metrics/"):]
    return key[:-3] if key.endswith("(B)") else key


class UltralyticsBackend:
    """Trains with Ultralytics, offline, with detforge's thread and callback wiring."""

    name = "ultralytics"

    def _model(self, config: TrainConfig, weights: str | Path) -> Any:
        import_ultralytics(Path(config.out) / ".ultralytics")
        configure_threads(config.threads)
        ul: Any = importlib.import_module("ultralytics")
        cls = ul.RTDETR if "rtdetr" in Path(str(weights)).name.lower() else ul.YOLO
        return cls(str(weights))

    @staticmethod
    def _model_source(config: TrainConfig, run_dir: Path) -> str:
        """``config.model``, or a copy of its YAML with ``config.activation`` in the run dir."""
        if config.activation is None:
            return config.model
        import_ultralytics(Path(config.out) / ".ultralytics")
        tasks: Any = importlib.import_module("ultralytics.nn.tasks")
        spec = {k: v for k, v in tasks.yaml_model_load(config.model).items()
                if k not in {"scale", "yaml_file"}}
        spec["activation"] = _ACTIVATIONS[config.activation]
        out = run_dir / f"{Path(config.model).stem}-{config.activation}.yaml"
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, yaml.safe_dump(spec, sort_keys=False))
        return str(out)

    def _attach(self, model: Any, config: TrainConfig, on_epoch: EpochCallback) -> dict[str, Any]:
        state: dict[str, Any] = {"pending": False, "t0": 0.0, "train_s": 0.0, "final": {}}
        threads = configure_threads(config.threads)

        def pretrain_start(trainer: Any) -> None:
            import torch

            torch.set_num_threads(threads)  # select_device ran just before this

        def pretrain_end(trainer: Any) -> None:
            if not config.overfit:
                return
            import torch

            # BatchNorm running statistics average the activations of the weights of the
            # last ~33 steps (momentum 0.03); a memorising run changes its weights so fast
            # that the evaluation-mode network lags far behind (mAP 0 on 2 images whose
            # training loss is near 0). Tracking the last few steps closes the gap.
            for module in trainer.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.momentum = _OVERFIT_BN_MOMENTUM

        def epoch_start(trainer: Any) -> None:
            state["t0"] = time.perf_counter()

        def epoch_end(trainer: Any) -> None:
            state["train_s"] = time.perf_counter() - state["t0"]
            state["pending"] = True

        def fit_epoch_end(trainer: Any) -> None:
            if not state["pending"]:  # final evaluation of best.pt, not an epoch
                return
            state["pending"] = False
            metrics: dict[str, float] = {}
            if trainer.tloss is not None:
                metrics.update(trainer.label_loss_items(trainer.tloss))
            metrics.update(trainer.metrics or {})
            metrics.update(trainer.lr or {})
            images = len(trainer.train_loader.dataset)
            metrics["train_seconds"] = state["train_s"]
            metrics["train_images_per_s"] = images / max(state["train_s"], 1e-9)
            named = {metric_name(k): float(v) for k, v in metrics.items()}
            on_epoch(trainer.epoch + 1, named)
            if overfit_done(config, named):
                LOGGER.info("overfit: mAP50 %.3f on the %d training images; stopping",
                            named["mAP50"], images)
                trainer.stop = True  # the loop breaks right after this callback

        def train_end(trainer: Any) -> None:
            state["final"] = {metric_name(k): float(v) for k, v in (trainer.metrics or {}).items()}
            state["epochs"] = trainer.epoch + 1

        model.add_callback("on_pretrain_routine_start", pretrain_start)
        model.add_callback("on_pretrain_routine_end", pretrain_end)
        model.add_callback("on_train_epoch_start", epoch_start)
        model.add_callback("on_train_epoch_end", epoch_end)
        model.add_callback("on_fit_epoch_end", fit_epoch_end)
        model.add_callback("on_train_end", train_end)
        return state

    def _args(self, config: TrainConfig, data_yaml: Path, run_dir: Path) -> dict[str, Any]:
        return {
            "data": str(data_yaml), "epochs": config.epochs, "imgsz": config.train_imgsz,
            "batch": config.batch, "device": config.device, "seed": config.seed,
            "deterministic": config.deterministic, "patience": config.patience,
            "amp": config.amp and config.on_gpu, "workers": config.workers,
            "cache": config.cache, "rect": config.rect, "val": config.val,
            "plots": config.plots, "project": str(run_dir.parent.resolve()),
            "name": run_dir.name, "exist_ok": True, "save": True,
            # Ultralytics 8.4 drops the weights of a loaded .pt when pretrained is False
            # (engine/model.py train()); a YAML has none to drop and downloads nothing.
            "pretrained": str(config.model).lower().endswith(".pt"),
            **config.optim.model_dump(), **config.augment.model_dump(),
        }

    def _result(self, run_dir: Path, state: dict[str, Any]) -> BackendRun:
        weights = run_dir / "weights"
        return BackendRun(save_dir=run_dir, best=weights / "best.pt", last=weights / "last.pt",
                          final_metrics=dict(state["final"]),
                          epochs_done=int(state.get("epochs", 0)))

    def fit(self, config: TrainConfig, *, data_yaml: Path, run_dir: Path,
            on_epoch: EpochCallback) -> BackendRun:
        """Train from a model YAML or local weights.

        Args:
            config: The resolved config.
            data_yaml: An Ultralytics ``data.yaml``.
            run_dir: Directory for weights, results and plots.
            on_epoch: Called after each epoch with its metrics.

        Returns:
            Paths of the checkpoints and the final metrics.
        """
        model = self._model(config, self._model_source(config, run_dir))
        state = self._attach(model, config, on_epoch)
        model.train(**self._args(config, data_yaml, run_dir))
        return self._result(run_dir, state)

    def resume(self, config: TrainConfig, *, last: Path, data_yaml: Path, run_dir: Path,
               on_epoch: EpochCallback) -> BackendRun:
        """Continue from ``last`` with the epochs, optimiser and EMA state it holds.

        Raises:
            ConfigError: ``last`` holds no optimiser state (the run already finished).
        """
        model = self._model(config, last)
        ckpt = getattr(model, "ckpt", None) or {}
        if ckpt.get("optimizer") is None or ckpt.get("epoch", -1) < 0:
            raise ConfigError(f"{last}: this run already finished (the checkpoint has no "
                              "optimiser state); start a new run instead of --resume")
        state = self._attach(model, config, on_epoch)
        model.train(resume=True, data=str(data_yaml), device=config.device,
                    project=str(run_dir.parent.resolve()), name=run_dir.name, exist_ok=True)
        return self._result(run_dir, state)

    def model_info(self, weights: Path, imgsz: int) -> ModelInfo:
        """Parameters and GFLOPs of ``weights`` at a square ``imgsz``."""
        tu: Any = importlib.import_module("ultralytics.utils.torch_utils")
        net = self._load(weights)
        return ModelInfo(params=int(tu.get_num_params(net)), gflops=float(tu.get_flops(net, imgsz)))

    def cpu_latency_ms(self, weights: Path, imgsz: int, *, repeats: int = 10) -> float:
        """Median CPU forward time of one image (batch 1, fused, fp32), in milliseconds."""
        import torch

        net = self._load(weights)
        if hasattr(net, "fuse"):
            net = net.fuse(verbose=False)
        x = torch.zeros(1, 3, imgsz, imgsz)
        times = []
        with torch.inference_mode():
            for i in range(repeats + 2):
                t0 = time.perf_counter()
                net(x)
                if i >= 2:  # two warm-up runs
                    times.append((time.perf_counter() - t0) * 1e3)
        return float(statistics.median(times))

    @staticmethod
    def _load(weights: Path) -> Any:
        tasks: Any = importlib.import_module("ultralytics.nn.tasks")
        net, _ = tasks.load_checkpoint(str(weights), device="cpu")
        return net.float().eval()
