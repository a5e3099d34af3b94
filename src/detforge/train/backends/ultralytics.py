"""Ultralytics backend: YOLOv8 / YOLO11 / RT-DETR, offline, on every allowed core.

Mapping of :class:`~detforge.train.config.TrainConfig` onto Ultralytics arguments:

* Training runs in detforge's trainer (:mod:`.ul_trainer`: Ultralytics' own with a few
  hooks). An RT-DETR model, or ``rect``, trains letterboxed at exactly ``imgsz`` = (height,
  width) (:mod:`.rect_data`), with aspect-keeping multi-scale; Ultralytics' ``imgsz`` is
  then the longer side and its ``rect`` / ``multi_scale`` stay off. Otherwise ``imgsz`` ->
  the square ``train_imgsz`` (longer side of a rectangular size), as Ultralytics trains.
* ``optim.lr_schedule`` (linear, cosine, multistep with ``lr_milestones`` / ``lr_gamma``),
  ``optim.max_grad_norm`` and ``ema`` (decay, tau, off) are the trainer's hooks; the rest
  of ``optim`` and ``augment`` are Ultralytics arguments.
* ``amp`` is only ever on with a GPU ``device``; on CPU Ultralytics trains in fp32.
* ``optim.nbs`` is Ultralytics' nominal batch: gradients accumulate over
  ``round(nbs / batch)`` batches, so a small ``batch`` trains like a batch of ``nbs``.
* ``overfit``: BatchNorm running statistics follow the last few steps (momentum 0.5, not
  0.03), so evaluation sees the network being trained; the epoch callback stops training
  once :func:`~detforge.train.config.overfit_done` (mAP50 on the memorised images).
* Warm-up (``optim.warmup_epochs``), early stop (``patience``) and a ``last.pt``
  checkpoint after every epoch are Ultralytics'.
* ``activation`` writes the model YAML with Ultralytics' ``activation`` key (e.g.
  ``nn.ReLU()``) into the run directory as ``<stem>-<activation>.yaml`` (the stem keeps the
  scale letter Ultralytics reads from the file name) and builds the model from it.
* ``project``/``name`` are the run directory, so ``weights/``, ``results.csv`` and the
  plots land in it.
* Several GPUs (``device: 0,1``): Ultralytics' DDP launch pickles the trainer's callbacks
  into every worker (``ultralytics/utils/dist.py``, ``generate_ddp_file``); detforge's epoch
  and end-of-training callbacks act on rank 0 only, and rank 0 leaves the final metrics in
  ``ddp_result.json`` for the launching process, which trained nothing itself. The launch
  also removes the trainer's ``save_dir`` unless resuming (``generate_ddp_command``); that
  is the run directory (its record, lock and prepared dataset), so the launch runs with the
  removal skipped: the workers reuse the folder (``exist_ok=True``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.core.errors import ConfigError
from detforge.integrations.ultralytics import import_ultralytics
from detforge.train.backends.base import BackendRun, EpochCallback, ModelInfo
from detforge.train.config import is_rtdetr, model_source, overfit_done
from detforge.train.devices import is_rank_zero, parse_device
from detforge.train.threads import configure_threads

if TYPE_CHECKING:
    from detforge.train.config import TrainConfig

LOGGER = logging.getLogger(__name__)
_OVERFIT_BN_MOMENTUM = 0.5
_ACTIVATIONS = {"silu": "nn.SiLU()", "relu": "nn.ReLU()"}
_DETFORGE_OPTIM = ("lr_schedule", "lr_milestones", "lr_gamma", "max_grad_norm")
"""``optim`` keys detforge's trainer implements (not Ultralytics arguments)."""
DDP_RESULT = "ddp_result.json"
"""Rank 0's final metrics and epoch count, for the process that launched the DDP workers."""

__all__ = ["DDP_RESULT", "UltralyticsBackend", "keep_run_dir", "metric_name"]


def metric_name(key: str) -> str:
    """Ultralytics metric key -> detforge name (``metrics/mAP50-95(B)`` -> ``mAP50-95``)."""
    if key.startswith("metrics/"):
        key = key[len("metrics/"):]
    return key[:-3] if key.endswith("(B)") else key


@contextlib.contextmanager
def keep_run_dir(device: str) -> Iterator[None]:
    """With several GPUs, launch Ultralytics' DDP workers without removing the run
    directory (see the module docstring); with one device or the CPU, nothing changes."""
    if len(parse_device(device)) < 2:
        yield
        return
    trainer_module: Any = importlib.import_module("ultralytics.engine.trainer")
    launch = trainer_module.generate_ddp_command

    def keeping(trainer: Any) -> Any:
        resume = trainer.resume
        trainer.resume = True  # the only use of it there: skip shutil.rmtree(save_dir)
        try:
            return launch(trainer)
        finally:
            trainer.resume = resume

    trainer_module.generate_ddp_command = keeping
    try:
        yield
    finally:
        trainer_module.generate_ddp_command = launch


class UltralyticsBackend:
    """Trains with Ultralytics, offline, with detforge's thread and callback wiring."""

    name = "ultralytics"

    def _model(self, config: TrainConfig, weights: str | Path) -> Any:
        import_ultralytics(Path(config.out) / ".ultralytics")
        configure_threads(config.threads)
        ul: Any = importlib.import_module("ultralytics")
        cls = ul.RTDETR if is_rtdetr(weights) else ul.YOLO
        return cls(str(weights))

    @staticmethod
    def _trainer(config: TrainConfig) -> type:
        """detforge's trainer class for ``config`` (see :mod:`.ul_trainer`)."""
        hooks: Any = importlib.import_module("detforge.train.backends.ul_trainer")
        o = config.optim
        options = hooks.TrainerOptions(
            shape=config.train_shape if config.letterboxed else None,
            multi_scale=config.augment.multi_scale, max_grad_norm=o.max_grad_norm,
            lr_schedule=o.lr_schedule, milestones=tuple(o.lr_milestones), gamma=o.lr_gamma,
            ema=config.ema.enabled, ema_decay=config.ema.decay, ema_tau=config.ema.tau)
        trainer: type = hooks.trainer_class(config.is_rtdetr, options)
        return trainer

    @staticmethod
    def _model_source(config: TrainConfig, run_dir: Path) -> str:
        """``config.model``, or a copy of its YAML with ``config.activation`` in the run dir."""
        if config.activation is None:
            return model_source(config.model)
        import_ultralytics(Path(config.out) / ".ultralytics")
        tasks: Any = importlib.import_module("ultralytics.nn.tasks")
        spec = {k: v for k, v in tasks.yaml_model_load(model_source(config.model)).items()
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
            if not state["pending"] or not is_rank_zero():  # final evaluation, or rank > 0
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
            if not is_rank_zero():
                return
            state["final"] = {metric_name(k): float(v) for k, v in (trainer.metrics or {}).items()}
            state["epochs"] = trainer.epoch + 1
            if "LOCAL_RANK" in os.environ:  # a DDP worker: the launcher reads this
                atomic_write_json(Path(trainer.save_dir) / DDP_RESULT,
                                  {"final": state["final"], "epochs": state["epochs"]})

        model.add_callback("on_pretrain_routine_start", pretrain_start)
        model.add_callback("on_pretrain_routine_end", pretrain_end)
        model.add_callback("on_train_epoch_start", epoch_start)
        model.add_callback("on_train_epoch_end", epoch_end)
        model.add_callback("on_fit_epoch_end", fit_epoch_end)
        model.add_callback("on_train_end", train_end)
        return state

    def _args(self, config: TrainConfig, data_yaml: Path, run_dir: Path) -> dict[str, Any]:
        augment = config.augment.model_dump()
        if config.letterboxed:  # the trainer's own aspect-keeping multi-scale
            augment["multi_scale"] = 0.0
        return {
            "data": str(data_yaml), "epochs": config.epochs, "imgsz": config.train_imgsz,
            "batch": config.batch, "device": config.device, "seed": config.seed,
            "deterministic": config.deterministic, "patience": config.patience,
            "amp": config.amp and config.on_gpu, "workers": config.workers,
            "cache": config.cache, "rect": config.rect and not config.letterboxed,
            "val": config.val, "plots": config.plots,
            "project": str(run_dir.parent.resolve()), "name": run_dir.name, "exist_ok": True,
            "save": True,
            # Ultralytics 8.4 drops the weights of a loaded .pt when pretrained is False
            # (engine/model.py train()); a YAML has none to drop and downloads nothing.
            "pretrained": str(config.model).lower().endswith(".pt"),
            **config.optim.model_dump(exclude=set(_DETFORGE_OPTIM)), **augment,
        }

    def _result(self, run_dir: Path, state: dict[str, Any]) -> BackendRun:
        if not state["final"] and (run_dir / DDP_RESULT).is_file():  # trained by DDP workers
            state.update(json.loads((run_dir / DDP_RESULT).read_text(encoding="utf-8")))
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
        with keep_run_dir(config.device):
            model.train(trainer=self._trainer(config), **self._args(config, data_yaml, run_dir))
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
        with keep_run_dir(config.device):
            model.train(resume=True, trainer=self._trainer(config), data=str(data_yaml),
                        device=config.device, project=str(run_dir.parent.resolve()),
                        name=run_dir.name, exist_ok=True)
        return self._result(run_dir, state)

    def training_done(self, config: TrainConfig, last: Path) -> bool:
        """True when ``last.pt`` has no optimiser state (Ultralytics strips it once training
        ends) or holds the last epoch."""
        ckpt = getattr(self._model(config, last), "ckpt", None) or {}
        epoch = int(ckpt.get("epoch", -1))
        return ckpt.get("optimizer") is None or epoch < 0 or epoch + 1 >= config.epochs

    def finish(self, config: TrainConfig, *, run_dir: Path, data_yaml: Path,
               epochs_done: int) -> BackendRun:
        """What Ultralytics does after the last epoch: strip the optimiser from ``last.pt``
        and ``best.pt``, then validate ``best.pt`` (its metrics are the run's final ones)."""
        weights = run_dir / "weights"
        best = weights / "best.pt" if (weights / "best.pt").is_file() else weights / "last.pt"
        import_ultralytics(Path(config.out) / ".ultralytics")
        configure_threads(config.threads)
        tu: Any = importlib.import_module("ultralytics.utils.torch_utils")
        for ckpt in (weights / "last.pt", weights / "best.pt"):
            if ckpt.is_file():
                tu.strip_optimizer(ckpt)
        model = self._model(config, best)
        kwargs: dict[str, Any] = {"imgsz": config.train_imgsz}
        if config.letterboxed:
            hooks: Any = importlib.import_module("detforge.train.backends.ul_trainer")
            kwargs = {"imgsz": list(config.train_shape),
                      "validator": hooks.validator_class(config.is_rtdetr)}
        results = model.val(data=str(data_yaml), batch=config.batch, device=config.device,
                            plots=False, verbose=False, project=str(run_dir.resolve()),
                            name="final_val", exist_ok=True, **kwargs)
        final = {metric_name(k): float(v) for k, v in results.results_dict.items()
                 if k != "fitness"}
        return BackendRun(save_dir=run_dir, best=best, last=weights / "last.pt",
                          final_metrics=final, epochs_done=epochs_done)

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
