"""The FastAPI application: probes, metrics, model info and ``POST /v1/detect``.

Every error answers ``{"error": <kind>, "detail": <what, where, fix>}`` with its status:
400 bad body or image, 401 missing or wrong API key, 408 request body too slow (the
connection is closed), 413 over a size limit, 415 wrong content type or an image format
that is not decoded, 422 bad query parameter, 503 overloaded (with ``Retry-After``) or not
ready, 500 inference failure or any other fault (``internal_error``). Every answer, errors
included, is counted in ``detforge_requests_total``.

Request bodies are read with a deadline per piece (``--body-timeout``) and a minimum average
rate (``--min-upload-rate``), and they hold the shared body budget only for the bytes that
have arrived, so connections that declare large bodies and then go quiet hold nothing and
are closed with 408. See docs/decisions/0027-serve-timeouts.md.

Videos and streams (:mod:`detforge.serve.jobs`): ``POST /v1/videos`` (the video as the raw
body) answers 202 with a job, or 200 with every frame's detections when ``wait=true``;
``POST /v1/streams`` (``--allow-streams``) starts a job on an rtsp:// or http(s):// URL;
``GET /v1/jobs/{id}`` reads a job's state and results, ``DELETE`` stops it. With
``--reference`` every image and frame also feeds the drift monitor
(:mod:`detforge.monitor.live`), whose gauges ``/metrics`` exposes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from detforge.core.detections import Detections
from detforge.monitor.live import LiveMonitor
from detforge.monitor.signals import ImageStats, image_stats
from detforge.runtime import Model, load_model, resolve_model_path
from detforge.runtime.preprocess import LetterboxInfo
from detforge.runtime.sinks import Prediction
from detforge.serve.batcher import Batcher, NotReady, Overloaded
from detforge.serve.collectors import DriftCollector, GpuCollector
from detforge.serve.config import ServeConfig
from detforge.serve.jobs import JobLimitError, JobRunner, Sampling
from detforge.serve.metrics import ServeMetrics
from detforge.serve.uploads import (
    Upload,
    UploadError,
    check_size,
    decode_image_bytes,
    parse_multipart,
    video_container,
)

__all__ = ["ApiError", "create_app"]

log = logging.getLogger("detforge.serve")
_ENDPOINTS = frozenset({"/health", "/ready", "/metrics", "/v1/model", "/v1/detect",
                        "/v1/videos", "/v1/streams", "/v1/jobs"})
_RAW_TYPES = ("image/", "application/octet-stream")
_VIDEO_TYPES = ("video/", "application/octet-stream")
_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")

Prepared = tuple[int, int, NDArray[np.float32], LetterboxInfo, ImageStats | None]


class ApiError(Exception):
    """An HTTP error answered as ``{"error": error, "detail": detail}``."""

    def __init__(self, status: int, error: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}


@dataclass(eq=False)
class _BodyBudget:
    """Bytes of request bodies held at once, across requests (one event loop: no lock)."""

    limit: int
    used: int = 0
    readers: int = 0


@dataclass(eq=False)
class _Hold:
    """One request's share of the :class:`_BodyBudget`; released when the request ends."""

    budget: _BodyBudget
    held: int = 0

    def grow_to(self, size: int) -> None:
        extra = size - self.held
        if extra <= 0:
            return
        b = self.budget
        if b.used + extra > b.limit:
            raise ApiError(503, "overloaded", f"request bodies in progress hold "
                           f"{b.used / 2**20:.3g} MiB of the {b.limit / 2**20:.3g} MiB budget "
                           f"(--max-queue x --max-image-mb); retry later", {"Retry-After": "1"})
        b.used += extra
        self.held = size

    def release(self) -> None:
        self.budget.used -= self.held
        self.held = 0


@dataclass(eq=False)
class _State:
    config: ServeConfig
    batcher: Batcher
    metrics: ServeMetrics
    api_key: str | None
    model_name: str
    bodies: _BodyBudget
    videos: _BodyBudget
    monitor: LiveMonitor | None
    jobs: JobRunner


def create_app(config: ServeConfig, *, load: Callable[[], Model] | None = None,
               on_failure: Callable[[BaseException], None] | None = None) -> FastAPI:
    """Build the server application; the model loads on its worker thread at start-up.

    Args:
        config: Server options.
        load: Builds the model (default: :func:`~detforge.runtime.load_model` on
            ``config.model`` with the config's device, thresholds and threads).
        on_failure: Called if loading or warming up the model fails (the CLI stops the
            server with it).

    Returns:
        The FastAPI app; run it with uvicorn (its lifespan starts and stops the worker).

    Raises:
        ConfigError: ``config.model`` designates no loadable model file, or the reference
            (``config.reference``) is unreadable. A reference of another model stops the
            server when the model has loaded (through ``on_failure``).

    Example:
        >>> app = create_app(ServeConfig(model="model.onnx"))  # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    name = "model"
    file: Path | None = None
    if load is None:
        file = resolve_model_path(config.model, device=config.device)
        name = file.name

        def load() -> Model:
            return load_model(file, device=config.device, imgsz=config.imgsz,
                              conf=config.conf, iou=config.iou, max_det=config.max_det,
                              threads=config.threads)

    monitor = _live_monitor(config)
    load_model_only = load

    def load_checked() -> Model:
        model = load_model_only()
        if monitor is not None:
            try:
                _check_reference(monitor, model, file, config)
            except BaseException:
                model.close()
                raise
        return model

    def failed(exc: BaseException) -> None:
        log.error("model %s failed to load: %s: %s", name, type(exc).__name__, exc)
        if on_failure is not None:
            on_failure(exc)

    metrics_box: list[ServeMetrics] = []

    def on_batch(n: int, seconds: float) -> None:
        metrics_box[0].observe_batch(n, seconds)
        gpu.sample(every_s=0.5)

    batcher = Batcher(load_checked, max_batch=config.max_batch,
                      max_wait_s=config.max_wait_ms / 1000, max_queue=config.max_queue,
                      warmup=config.warmup, on_batch=on_batch, on_failure=failed)
    gpu = GpuCollector(lambda: None if batcher.model is None else str(
        getattr(batcher.model.backend, "device", "cpu")))
    bodies = _BodyBudget(config.max_queue * (config.max_image_bytes + 16 * 1024))
    videos = _BodyBudget(config.max_jobs * config.max_video_bytes)
    collectors: list[Any] = [gpu]
    if monitor is not None:
        collectors.append(DriftCollector(monitor))
    metrics = ServeMetrics(queue_depth=lambda: batcher.queue_depth,
                           ready=lambda: batcher.ready, queue_capacity=config.max_queue,
                           uploads=lambda: bodies.readers + videos.readers,
                           upload_bytes=lambda: bodies.used + videos.used,
                           collectors=collectors)
    metrics_box.append(metrics)

    def observe_frame(img: NDArray[np.uint8], det: Detections, w: int, h: int) -> None:
        if monitor is not None:
            monitor.observe(image_stats(img), det, w, h)

    jobs = JobRunner(batcher, max_jobs=config.max_jobs, max_frames=config.max_video_frames,
                     max_pixels=config.max_pixels, stream_keep=config.stream_keep,
                     observe=observe_frame if monitor is not None else None)
    state = _State(config, batcher, metrics, config.api_key(), name, bodies, videos, monitor,
                   jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        log.info("loading %s (auth %s, drift %s)", name, "on" if state.api_key else "off",
                 "on" if monitor is not None else "off")
        try:
            yield
        finally:
            await run_in_threadpool(jobs.close)
            await run_in_threadpool(batcher.close, config.graceful_timeout_s)

    app = FastAPI(title="detforge serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.detforge = state
    app.include_router(_router)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Any]) -> Response:
        start = time.perf_counter()
        try:
            response: Response = await call_next(request)
        except Exception as exc:  # a fault no handler turned into an answer: still JSON
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            response = _body(500, "internal_error", f"{request.method} {request.url.path}: "
                             f"{type(exc).__name__}: {exc}")
        path = request.url.path
        if path.startswith("/v1/jobs/"):
            path = "/v1/jobs"
        metrics.observe_request(path if path in _ENDPOINTS else "other",
                                response.status_code, time.perf_counter() - start)
        return response

    return app


def _live_monitor(config: ServeConfig) -> LiveMonitor | None:
    """The drift monitor of ``config.reference`` (None without one)."""
    if config.reference is None:
        return None
    from detforge.monitor.reference import load_reference
    from detforge.monitor.window import Thresholds

    reference = load_reference(config.reference)
    return LiveMonitor(reference, window=config.drift_window,
                       min_images=config.drift_min_images,
                       thresholds=Thresholds(config.drift_psi, dict(config.drift_thresholds)))


def _check_reference(monitor: LiveMonitor, model: Model, file: Path | None,
                     config: ServeConfig) -> None:
    """Refuse a reference of another model (classes, file, training run) or threshold."""
    from detforge.monitor.build import model_identity
    from detforge.monitor.reference import ModelIdentity

    ref = monitor.reference
    if file is not None:
        identity = model_identity(model, file)
    else:  # a model built in-process: only its classes can be compared
        identity = ModelIdentity(file=ref.model.file, sha256=ref.model.sha256,
                                 classes=model.classes, imgsz=model.imgsz,
                                 layout=model.meta.layout, run_id=model.meta.run_id)
    ref.check_model(identity, conf=config.conf, where=str(config.reference))


# -- error handlers ----------------------------------------------------------------------
def _body(status: int, error: str, detail: str,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ApiError):
        raise exc
    return _body(exc.status, exc.error, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):
        raise exc
    parts = []
    for err in exc.errors():
        loc = err.get("loc", ())
        where = f"{loc[0]} parameter {loc[-1]!r}" if len(loc) > 1 else "request"
        parts.append(f"{where}: {err.get('msg')} (got {err.get('input')!r})")
    return _body(422, "invalid_parameter", "; ".join(parts))


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    if exc.status_code == 404:
        detail += f"; endpoints: {sorted(_ENDPOINTS)}"
    return _body(exc.status_code, kind, detail, dict(exc.headers or {}))


# -- endpoints ---------------------------------------------------------------------------
_router = APIRouter()


def _state(request: Request) -> _State:
    state: _State = request.app.state.detforge
    return state


def _authorize(request: Request, state: _State) -> None:
    if state.api_key is None:
        return
    supplied = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not supplied and auth[:7].lower() == "bearer ":
        supplied = auth[7:].strip()
    challenge = {"WWW-Authenticate": "Bearer"}
    if not supplied:
        raise ApiError(401, "unauthorized", "missing API key; send the header "
                       "'Authorization: Bearer <key>' or 'X-API-Key: <key>'", challenge)
    if not hmac.compare_digest(supplied.encode(), state.api_key.encode()):
        raise ApiError(401, "unauthorized", f"wrong API key; use the value of the server's "
                       f"${state.config.api_key_env}", challenge)


def _not_ready(exc: NotReady | None, state: _State) -> ApiError:
    detail = str(exc) if exc else state.batcher.not_ready_reason()
    return ApiError(503, "not_ready", detail, {"Retry-After": "5"})


@_router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: 200 while the process serves HTTP."""
    return {"status": "ok"}


@_router.get("/ready")
async def ready(request: Request) -> dict[str, str]:
    """Readiness: 200 once the model is loaded and warmed up, else 503."""
    state = _state(request)
    if not state.batcher.ready:
        raise _not_ready(None, state)
    return {"status": "ready", "model": state.model_name}


@_router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    data, content_type = _state(request).metrics.render()
    return Response(data, media_type=content_type)


@_router.get("/v1/model")
async def model_info(request: Request) -> dict[str, Any]:
    """Classes, input size, layout, backend and the server's batching limits."""
    state = _state(request)
    _authorize(request, state)
    model = state.batcher.model
    if model is None or not state.batcher.ready:
        raise _not_ready(None, state)
    cfg = state.config
    backend: Any = model.backend
    return {"model": state.model_name, "classes": list(model.classes),
            "imgsz": list(model.imgsz), "layout": model.meta.layout,
            "stride": model.meta.stride, "backend": backend.name, "device": backend.device,
            "conf": model.conf, "iou": model.iou, "max_det": model.max_det,
            "max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms,
            "max_queue": cfg.max_queue, "max_images": cfg.max_images,
            "max_image_mb": cfg.max_image_mb, "gpu": model.statistics().get("gpu"),
            "drift": state.monitor is not None}


@_router.post("/v1/detect")
async def detect(
    request: Request,
    conf: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    iou: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    max_det: Annotated[int | None, Query(ge=1)] = None,
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """Detect objects in the images of a multipart body (field ``images``) or a raw image."""
    start = time.perf_counter()
    state = _state(request)
    cfg = state.config
    _authorize(request, state)
    if max_det is not None and max_det > cfg.max_det:
        raise ApiError(422, "invalid_parameter", f"query parameter 'max_det': {max_det} is over "
                       f"the server's limit {cfg.max_det} (--max-det)")
    if not state.batcher.ready:
        raise _not_ready(None, state)
    hold = _Hold(state.bodies)
    try:
        return await _detect(request, state, hold, conf, iou, max_det, filename, start)
    finally:
        hold.release()


async def _detect(request: Request, state: _State, hold: _Hold, conf: float | None,
                  iou: float | None, max_det: int | None, filename: str | None,
                  start: float) -> Response:
    cfg = state.config
    uploads = await _read_uploads(request, cfg, filename, hold)
    batcher = state.batcher
    model = batcher.model
    try:
        batcher.check_room(len(uploads))
        if model is None:
            raise NotReady("the model is not loaded")
        prepared = await run_in_threadpool(_prepare, uploads, model, cfg.max_pixels,
                                           state.monitor is not None)
        future = batcher.submit([(t, info) for _, _, t, info, _ in prepared], conf=conf,
                                iou=iou, max_det=max_det)
    except UploadError as exc:
        raise ApiError(exc.status, exc.error, str(exc)) from exc
    except Overloaded as exc:
        raise ApiError(503, "overloaded", str(exc),
                       {"Retry-After": str(exc.retry_after)}) from exc
    except NotReady as exc:
        raise _not_ready(exc, state) from exc
    try:
        detections: list[Detections] = await asyncio.wrap_future(future)
    except Exception as exc:
        log.exception("inference failed")
        raise ApiError(500, "inference_failed", f"{type(exc).__name__}: {exc}") from exc
    state.metrics.images.inc(len(uploads))
    if state.monitor is not None:
        for (w, h, _, _, stats), det in zip(prepared, detections, strict=True):
            if stats is not None:
                state.monitor.observe(stats, det, w, h, conf=conf)
    results = []
    for up, (w, h, _, _, _), det in zip(uploads, prepared, detections, strict=True):
        rec = Prediction(up.filename, None, w, h, det).to_record(model.classes)
        results.append({"filename": up.filename, "width": w, "height": h,
                        "detections": rec["detections"]})
    return JSONResponse({"results": results, "model": state.model_name,
                         "latency_ms": round((time.perf_counter() - start) * 1000, 2)})


async def _read_uploads(request: Request, cfg: ServeConfig, filename: str | None,
                        hold: _Hold) -> list[Upload]:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        limit = cfg.max_body_bytes
    elif media.startswith(_RAW_TYPES):
        limit = cfg.max_image_bytes
    else:
        raise ApiError(415, "unsupported_media_type", f"Content-Type {media or '(none)'!r} is "
                       f"not accepted; send multipart/form-data with the files in the field "
                       f"'images', or one image as the body with an image/* Content-Type")
    over = ApiError(413, "request_too_large", f"request body over {limit / 2**20:.3g} MiB "
                    f"(--max-images x --max-image-mb); send fewer or smaller images")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise over
    body = await _receive_body(request, cfg, limit, over, hold)
    try:
        if media == "multipart/form-data":
            return parse_multipart(bytes(body), content_type, max_file_bytes=cfg.max_image_bytes,
                                   max_files=cfg.max_images)
        name = filename or "image"
        check_size(name, len(body), cfg.max_image_bytes)
    except UploadError as exc:
        raise ApiError(exc.status, exc.error, str(exc)) from exc
    return [Upload(name, bytes(body))]


_CLOSE = {"Connection": "close"}


async def _receive_body(request: Request, cfg: ServeConfig, limit: int, over: ApiError,
                        hold: _Hold) -> bytearray:
    """The request body, read under the timeouts; the budget grows with the bytes received.

    Raises:
        ApiError: 408 when the next piece takes over ``--body-timeout`` or the average rate
            falls under ``--min-upload-rate`` after that long; 413 past ``limit``; 503 when
            the body budget is spent; 400 when the client goes away mid-body.
    """
    hold.budget.readers += 1
    try:
        return await _receive(request, cfg, limit, over, hold)
    finally:
        hold.budget.readers -= 1


async def _receive(request: Request, cfg: ServeConfig, limit: int, over: ApiError,
                   hold: _Hold) -> bytearray:
    body = bytearray()
    stream = request.stream().__aiter__()
    start = time.monotonic()
    min_rate = cfg.min_upload_rate * 1024
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=cfg.body_timeout)
        except StopAsyncIteration:
            return body
        except asyncio.TimeoutError:
            raise ApiError(408, "body_timeout", f"no request body data for {cfg.body_timeout:g} "
                           f"s after {len(body)} bytes (--body-timeout); send the whole body "
                           f"without pausing", _CLOSE) from None
        except ClientDisconnect:
            raise ApiError(400, "client_disconnected", f"the client closed the connection after "
                           f"{len(body)} bytes of the body") from None
        body += chunk
        if len(body) > limit:
            raise over
        hold.grow_to(len(body))
        elapsed = time.monotonic() - start
        if min_rate and elapsed > cfg.body_timeout and len(body) / elapsed < min_rate:
            raise ApiError(408, "upload_too_slow", f"request body arrived at "
                           f"{len(body) / elapsed / 1024:.2g} KiB/s over {elapsed:.0f} s, under "
                           f"the {cfg.min_upload_rate:g} KiB/s minimum (--min-upload-rate)",
                           _CLOSE)


def _prepare(uploads: list[Upload], model: Model, max_pixels: int,
             with_stats: bool = False) -> list[Prepared]:
    """Decode and letterbox (on a thread-pool thread; reads only the model's metadata);
    with ``with_stats`` also measure the image signals of the drift monitor."""
    out: list[Prepared] = []
    for up in uploads:
        img = decode_image_bytes(up.data, up.filename, max_pixels=max_pixels)
        tensor, info = model.preprocess(img)
        out.append((img.shape[1], img.shape[0], tensor, info,
                    image_stats(img) if with_stats else None))
    return out


# -- videos, streams and jobs ------------------------------------------------------------
@_router.post("/v1/videos")
async def video(
    request: Request,
    every: Annotated[int, Query(ge=1)] = 1,
    fps: Annotated[float | None, Query(gt=0)] = None,
    keyframes: bool = False,
    wait: bool = False,
) -> Response:
    """Detect objects in the frames of a video sent as the raw body (``video/*``)."""
    state = _state(request)
    cfg = state.config
    _authorize(request, state)
    if not state.batcher.ready:
        raise _not_ready(None, state)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media.startswith(_VIDEO_TYPES):
        raise ApiError(415, "unsupported_media_type", f"Content-Type {media or '(none)'!r} is "
                       f"not accepted; send the video file as the body with a video/* "
                       f"Content-Type (e.g. curl --data-binary @clip.mp4 -H 'Content-Type: "
                       f"video/mp4')")
    limit = cfg.max_video_bytes
    over = ApiError(413, "video_too_large", f"video over {limit / 2**20:.3g} MiB "
                    f"(--max-video-mb); cut it or raise the limit")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise over
    hold = _Hold(state.videos)
    try:
        body = await _receive_body(request, cfg, limit, over, hold)
        suffix = video_container(bytes(body[:400]))
        if suffix is None:
            raise ApiError(415, "unsupported_video_format", "the body is not a video container "
                           "detforge reads (MP4/MOV, AVI, MKV/WebM, MPEG-TS, MPEG-PS); images "
                           "go to /v1/detect")
        try:
            job = state.jobs.start_video(bytes(body), suffix, Sampling(every, fps, keyframes))
        except JobLimitError as exc:
            raise ApiError(503, "too_many_jobs", str(exc), {"Retry-After": "5"}) from exc
    finally:
        hold.release()
    return await _job_answer(job, wait)


class _StreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    every: int = Field(1, ge=1)
    fps: float | None = Field(None, gt=0)
    keyframes: bool = False
    reconnect: int = Field(5, ge=-1)


@_router.post("/v1/streams")
async def stream(request: Request, body: _StreamRequest) -> Response:
    """Start a job on a live stream (``--allow-streams``)."""
    state = _state(request)
    _authorize(request, state)
    if not state.config.allow_streams:
        raise ApiError(403, "streams_disabled", "this server does not open streams; start it "
                       "with --allow-streams (it then connects to the URLs clients send)")
    if not body.url.lower().startswith(_STREAM_SCHEMES):
        raise ApiError(422, "invalid_parameter", f"url {body.url!r}: use an rtsp://, "
                       f"rtsps://, http:// or https:// stream")
    if not state.batcher.ready:
        raise _not_ready(None, state)
    try:
        job = state.jobs.start_stream(body.url, Sampling(body.every, body.fps, body.keyframes),
                                      reconnect=body.reconnect)
    except JobLimitError as exc:
        raise ApiError(503, "too_many_jobs", str(exc), {"Retry-After": "5"}) from exc
    return await _job_answer(job, False)


async def _job_answer(job: Any, wait: bool) -> Response:
    if wait:
        await asyncio.to_thread(job.done.wait)
        if job.state == "failed":
            raise ApiError(422, "bad_video", f"{job.source}: {job.error}")
        return JSONResponse(job.to_dict())
    return JSONResponse({"job": job.id, "state": job.state, "url": f"/v1/jobs/{job.id}"},
                        status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@_router.get("/v1/jobs/{job_id}")
async def job_status(request: Request, job_id: str,
                     results: bool = True) -> dict[str, Any]:
    """A job's state, counters and per-frame results so far."""
    state = _state(request)
    _authorize(request, state)
    job = state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "no_such_job", f"no job {job_id!r} (finished jobs are forgotten "
                       f"once --max-jobs newer ones exist)")
    return job.to_dict(results=results)


@_router.delete("/v1/jobs/{job_id}")
async def job_cancel(request: Request, job_id: str) -> dict[str, Any]:
    """Stop a job; the results so far are kept."""
    state = _state(request)
    _authorize(request, state)
    job = state.jobs.cancel(job_id)
    if job is None:
        raise ApiError(404, "no_such_job", f"no job {job_id!r}")
    return job.to_dict(results=False)
