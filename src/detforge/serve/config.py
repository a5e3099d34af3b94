"""``ServeConfig``: every knob of ``detforge serve``, validated once at start-up."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from detforge.core.config import StrictModel
from detforge.core.errors import ConfigError

__all__ = ["ServeConfig"]

_MB = 1024 * 1024


class ServeConfig(StrictModel):
    """Options of the HTTP server.

    Attributes:
        model: Model file, folder (a bundle target or a models folder) or stem.
        host: Interface to bind.
        port: TCP port (0 picks a free one).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        imgsz: Input ``(height, width)`` for models with a dynamic input size.
        conf: Default confidence threshold (a request may override it).
        iou: Default NMS IoU threshold (a request may override it).
        max_det: Default and largest detections per image.
        max_batch: Most images the worker runs in one batch.
        max_wait_ms: Longest the oldest queued image waits for a batch to fill.
        max_queue: Most images waiting for the worker; past it requests get 503.
        max_image_mb: Largest encoded image, in MiB; past it 413.
        max_images: Most images in one request; past it 413.
        max_pixels: Largest decoded image (width x height), checked on the header before
            decoding; past it 413.
        body_timeout: Longest wait for the next piece of a request body; past it 408 and
            the connection is closed.
        min_upload_rate: Slowest average upload rate (KiB/s) accepted once a body has taken
            ``body_timeout``; below it 408 (0: no minimum).
        api_key_env: Environment variable holding the API key; auth is off when it is unset
            or empty.
        threads: CPU threads for ONNX Runtime (default: all usable cores).
        warmup: Run dummy batches before reporting ready.
        log_level: uvicorn log level.
        graceful_timeout_s: Longest shutdown waits for requests in flight.
        reference: Reference statistics (``detforge monitor reference``): turns on the drift
            gauges; a reference of another model or class list stops the server at start.
        drift_window: Images in the drift window.
        drift_min_images: Images the window needs before drift is reported.
        drift_psi: PSI threshold of every signal (exported as ``detforge_drift_threshold``).
        drift_thresholds: Per-signal PSI thresholds (``monitor.yaml`` ``thresholds.signals``).
        max_video_mb: Largest uploaded video, in MiB; past it 413.
        max_video_frames: Most sampled frames one video or stream job may run.
        max_jobs: Video and stream jobs kept (running or finished); past it 503.
        allow_streams: Accept ``POST /v1/streams`` (the server then connects to the URLs
            clients give it: rtsp://, rtsps://, http://, https://).
        stream_keep: Most recent frames whose results a stream job keeps.

    Example:
        >>> ServeConfig(model="model.onnx", max_batch=4).max_queue
        64
    """

    model: str
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    device: str = "auto"
    imgsz: tuple[int, int] | None = None
    conf: float = Field(0.25, ge=0.0, le=1.0)
    iou: float = Field(0.7, ge=0.0, le=1.0)
    max_det: int = Field(300, ge=1)
    max_batch: int = Field(8, ge=1, le=1024)
    max_wait_ms: float = Field(5.0, ge=0.0, le=10_000.0)
    max_queue: int = Field(64, ge=1)
    max_image_mb: float = Field(20.0, gt=0.0)
    max_images: int = Field(16, ge=1)
    max_pixels: int = Field(64_000_000, ge=1, le=1 << 30)
    body_timeout: float = Field(30.0, gt=0.0, le=3600.0)
    min_upload_rate: float = Field(8.0, ge=0.0)
    api_key_env: str | None = "DETFORGE_API_KEY"
    threads: int | None = Field(None, ge=1)
    warmup: bool = True
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    graceful_timeout_s: float = Field(30.0, ge=0.0)
    reference: str | None = None
    drift_window: int = Field(500, ge=1, le=1_000_000)
    drift_min_images: int = Field(50, ge=1)
    drift_psi: float = Field(0.2, gt=0.0)
    drift_thresholds: dict[str, float] = Field(default_factory=dict)
    max_video_mb: float = Field(200.0, gt=0.0)
    max_video_frames: int = Field(10_000, ge=1)
    max_jobs: int = Field(8, ge=1)
    allow_streams: bool = False
    stream_keep: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _fits_queue(self) -> ServeConfig:
        if self.max_images > self.max_queue:
            raise ValueError(f"max_images ({self.max_images}) is larger than max_queue "
                             f"({self.max_queue}), so such a request could never be queued; "
                             f"raise --max-queue or lower --max-images")
        return self

    @classmethod
    def from_options(cls, **options: Any) -> ServeConfig:
        """Build the config from keyword options, as the CLI passes them.

        Args:
            **options: Field values; ``None`` values are dropped (defaults apply).

        Returns:
            The validated config.

        Raises:
            ConfigError: A value is out of range; the message names the option and the limit.
        """
        data = {k: v for k, v in options.items() if v is not None}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            parts = []
            for err in exc.errors():
                loc = "--" + "-".join(str(p) for p in err["loc"]).replace("_", "-")
                msg = str(err["msg"]).removeprefix("Value error, ")
                if err["loc"]:
                    parts.append(f"{loc}: {msg} (got {err.get('input')!r})")
                else:
                    parts.append(msg)
            raise ConfigError("; ".join(parts)) from exc

    @property
    def max_image_bytes(self) -> int:
        """Largest encoded image, in bytes."""
        return int(self.max_image_mb * _MB)

    @property
    def max_video_bytes(self) -> int:
        """Largest uploaded video, in bytes."""
        return int(self.max_video_mb * _MB)

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: every allowed image plus room for multipart headers."""
        return self.max_images * (self.max_image_bytes + 16 * 1024)

    def api_key(self) -> str | None:
        """The API key from the environment, or None when auth is off."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None
