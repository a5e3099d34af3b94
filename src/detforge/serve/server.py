"""Run the app under uvicorn: ``detforge serve`` calls :func:`serve`."""

from __future__ import annotations

import logging
import socket

from detforge.core.errors import BackendError, DetforgeError, MissingExtraError
from detforge.serve.config import ServeConfig

__all__ = ["serve"]


def serve(config: ServeConfig, *, sockets: list[socket.socket] | None = None) -> None:
    """Serve ``config.model`` over HTTP until SIGINT/SIGTERM, then shut down gracefully.

    Shutdown stops accepting connections, lets requests in flight finish (up to
    ``config.graceful_timeout_s``), lets the worker drain its queue and releases the model.

    Args:
        config: Server options.
        sockets: Already-bound sockets to serve on instead of ``host``/``port``.

    Raises:
        ConfigError: No loadable model at ``config.model``.
        MissingExtraError: FastAPI, uvicorn or prometheus-client is not installed.
        BackendError: The model failed to load or warm up (the server stops).

    Example:
        >>> serve(ServeConfig(model="models/", port=8000))  # doctest: +SKIP
    """
    try:
        import uvicorn

        from detforge.serve.app import create_app
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"detforge serve needs {exc.name}: pip install "
                                f"'detforge[serve]'") from exc
    _log_to_stderr(config.log_level)
    failures: list[BaseException] = []
    holder: list[uvicorn.Server] = []

    def stop(exc: BaseException) -> None:
        failures.append(exc)
        if holder:
            holder[0].should_exit = True

    app = create_app(config, on_failure=stop)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level=config.log_level, ws="none",
        lifespan="on", access_log=False, timeout_graceful_shutdown=int(config.graceful_timeout_s)))
    holder.append(server)
    server.run(sockets=sockets)
    if failures:
        failure = failures[0]
        if isinstance(failure, DetforgeError):
            raise failure
        raise BackendError(f"{config.model}: the model failed to load: "
                           f"{type(failure).__name__}: {failure}") from failure


def _log_to_stderr(level: str) -> None:
    logger = logging.getLogger("detforge.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
