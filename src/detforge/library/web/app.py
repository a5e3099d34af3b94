"""The library's web page: a read-only FastAPI app over an index, with static HTML/JS.

Routes (JSON unless said)::

    GET /                      the page (static/index.html, app.js, app.css; no CDN)
    GET /api/search            ?q=&object=&tag=&after=&before=&camera=&min_sharpness=
                               &kind=&near=&limit=&offset=  -> {"total", "records"}
    GET /api/file/{id}         everything about one file (boxes, tags, video summary)
    GET /api/thumb/{id}        JPEG thumbnail from the index
    GET /api/image/{id}        JPEG preview decoded from the original (any format)
    GET /api/duplicates        ?threshold=  -> duplicate groups
    GET /api/stats             library statistics
    GET /api/health            {"status": "ok"}

The database is opened read-only for every request, and files are reached only through
their id in the index, never by a path from the request. With an API key (the value of
the environment variable ``api_key_env``, as ``detforge serve`` does) every ``/api`` route
needs ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; the page asks for it once.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

from detforge.core.errors import ConfigError, DetforgeError, MissingExtraError
from detforge.library.errors import LibraryDatabaseError

__all__ = ["STATIC", "create_library_app", "serve_library"]

STATIC = Path(__file__).with_name("static")
_STATIC_TYPES = {"index.html": "text/html; charset=utf-8",
                 "app.js": "text/javascript; charset=utf-8",
                 "app.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
_PREVIEW_SIDE = 1600


def create_library_app(db: str | Path, *, api_key: str | None = None) -> Any:
    """The FastAPI app serving the index ``db`` (read-only).

    Args:
        db: The library index.
        api_key: Require this key on ``/api`` routes (None: no auth).

    Raises:
        LibraryDatabaseError: ``db`` is missing, not an index, or from a newer detforge.
        MissingExtraError: FastAPI is not installed.
    """
    try:
        from fastapi import FastAPI, HTTPException, Query, Request
        from fastapi.responses import JSONResponse, Response
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"detforge library serve needs {exc.name}: pip install "
                                f"'detforge[serve]'") from exc
    from detforge.library import (
        SearchQuery,
        file_detail,
        find_duplicates,
        library_stats,
        open_store,
        search,
    )

    db_path = Path(db).absolute()
    open_store(db_path, readonly=True).close()  # fail now, with the one-line error
    app = FastAPI(title="detforge library", docs_url=None, redoc_url=None, openapi_url=None)

    def connect() -> Any:
        return open_store(db_path, readonly=True)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if api_key is not None and request.url.path.startswith("/api/") \
                and request.url.path != "/api/health":
            supplied = request.headers.get("x-api-key", "")
            auth = request.headers.get("authorization", "")
            if not supplied and auth[:7].lower() == "bearer ":
                supplied = auth[7:].strip()
            if not supplied or not hmac.compare_digest(supplied.encode(), api_key.encode()):
                return JSONResponse({"error": "unauthorized", "detail": "missing or wrong API "
                                     "key; send 'X-API-Key: <key>'"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(DetforgeError)
    async def detforge_error(request: Request, exc: DetforgeError) -> Any:
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=400)

    def static(name: str) -> Any:
        return Response((STATIC / name).read_bytes(), media_type=_STATIC_TYPES[name],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        return static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Any:
        if name not in _STATIC_TYPES:
            raise HTTPException(404, "no such file")
        return static(name)

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/search")
    def api_search(q: str = "", object: str = "", tag: str = "", after: str = "",
                   before: str = "", camera: str = "", min_sharpness: float | None = None,
                   kind: str = "", near: int | None = None, threshold: int = 8,
                   limit: int = Query(60, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
        con = connect()
        try:
            near_path = None
            if near is not None:
                row = con.execute("SELECT path FROM files WHERE id = ?", (near,)).fetchone()
                if row is None:
                    raise HTTPException(404, f"no file with id {near}")
                near_path = row[0]
            query = SearchQuery(
                text=q or None, objects=tuple(_split(object)), tags=tuple(_split(tag)),
                after=after or None, before=before or None, camera=camera or None,
                min_sharpness=min_sharpness, kind=kind or None, near_duplicates_of=near_path,
                near_threshold=threshold, limit=limit, offset=offset)
            result = search(con, query)
            return {"total": result.total, "records": result.records}
        finally:
            con.close()

    @app.get("/api/file/{file_id}")
    def api_file(file_id: int) -> Any:
        con = connect()
        try:
            detail = file_detail(con, file_id)
        finally:
            con.close()
        if detail is None:
            raise HTTPException(404, f"no file with id {file_id}")
        return detail

    @app.get("/api/thumb/{file_id}")
    def api_thumb(file_id: int) -> Any:
        con = connect()
        try:
            row = con.execute("SELECT t.jpeg FROM files f JOIN thumbnails t ON t.hash = f.hash "
                              "WHERE f.id = ?", (file_id,)).fetchone()
        finally:
            con.close()
        if row is None:
            raise HTTPException(404, f"no thumbnail for file {file_id}")
        return Response(bytes(row[0]), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/image/{file_id}")
    def api_image(file_id: int) -> Any:
        con = connect()
        try:
            row = con.execute("SELECT path, kind FROM files WHERE id = ? AND error IS NULL",
                              (file_id,)).fetchone()
        finally:
            con.close()
        if row is None:
            raise HTTPException(404, f"no readable file with id {file_id}")
        if row[1] != "image":
            return api_thumb(file_id)
        data = _preview(row[0])
        if data is None:
            raise HTTPException(404, f"{row[0]}: cannot be read any more; re-index the library")
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=600"})

    @app.get("/api/duplicates")
    def api_duplicates(threshold: int = Query(6, ge=0, le=16)) -> Any:
        con = connect()
        try:
            return [g.as_dict() for g in find_duplicates(con, threshold=threshold)]
        finally:
            con.close()

    @app.get("/api/stats")
    def api_stats() -> Any:
        con = connect()
        try:
            return library_stats(con)
        finally:
            con.close()

    return app


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _preview(path: str) -> bytes | None:
    """A JPEG of the original, long side at most 1600 px, or None when unreadable."""
    from detforge.library.analyse import thumbnail_jpeg
    from detforge.library.decode import UndecodableError, decode_still
    from detforge.library.formats import kind_of

    kind = kind_of(path)
    try:
        data = Path(path).read_bytes()
        decoded = decode_still(data, kind, min_side=_PREVIEW_SIDE)
        return thumbnail_jpeg(decoded.rgb, _PREVIEW_SIDE)
    except (OSError, UndecodableError, DetforgeError):
        return None


def serve_library(db: str | Path, *, host: str = "127.0.0.1", port: int = 8765,
                  api_key_env: str | None = "DETFORGE_API_KEY",
                  log_level: str = "warning") -> None:
    """Serve the web page of the index ``db`` until Ctrl-C.

    Args:
        db: The library index.
        host: Interface to bind (loopback by default; ``0.0.0.0`` for every interface).
        port: TCP port.
        api_key_env: Environment variable holding the API key; auth is off when unset.
        log_level: uvicorn log level.

    Raises:
        LibraryDatabaseError: ``db`` is missing or not an index.
        ConfigError: A bad port.
        MissingExtraError: FastAPI or uvicorn is not installed.
    """
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"detforge library serve needs {exc.name}: pip install "
                                f"'detforge[serve]'") from exc
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: choose 0..65535")
    key = os.environ.get(api_key_env) if api_key_env else None
    try:
        app = create_library_app(db, api_key=key or None)
    except LibraryDatabaseError:
        raise
    print(f"serving {Path(db).absolute()} on http://{host}:{port}/ (auth "
          f"{'on' if key else 'off'}; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, ws="none")
