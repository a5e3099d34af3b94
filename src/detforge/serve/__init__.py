"""Online inference over HTTP: FastAPI app, dynamic batching, Prometheus metrics.

Needs the ``serve`` extra (``pip install 'detforge[serve]'``). Importing this package does
not import FastAPI, uvicorn or torch; :func:`create_app` and :func:`serve` do.

Example:
    >>> from detforge.serve import ServeConfig, serve  # doctest: +SKIP
    >>> serve(ServeConfig(model="bundles/t4", host="0.0.0.0"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detforge.serve.config import ServeConfig
from detforge.serve.server import serve

if TYPE_CHECKING:
    from detforge.serve.app import create_app

__all__ = ["ServeConfig", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from detforge.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'detforge.serve' has no attribute {name!r}")
