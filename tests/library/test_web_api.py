"""The web page's HTTP API, through a real server: read-only, by id, optional API key."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from detforge.library.errors import LibraryDatabaseError
from detforge.library.web.app import create_library_app

from .webserver import serving


@pytest.fixture(scope="module")
def site(indexed: tuple[Path, Path, dict[str, Any]]) -> Any:
    pytest.importorskip("fastapi")
    _, db, m = indexed
    with serving(create_library_app(db)) as url:
        yield url, db, m


def _id(db: Path, path: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()[0])
    finally:
        con.close()


def test_page_and_static_files(site: Any) -> None:
    url, _, _ = site
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN, nothing external
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{url}/static/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{url}/static/..%2Fapp.py").status_code == 404


def test_search_file_thumb_image(site: Any) -> None:
    url, db, m = site
    p = m["paths"]
    res = httpx.get(f"{url}/api/search", params={"q": "dog 2024 iphone", "limit": 2}).json()
    assert res["total"] == 4 and len(res["records"]) == 2
    assert httpx.get(f"{url}/api/search").json()["total"] == 13
    detail = httpx.get(f"{url}/api/file/{_id(db, p['dog24'])}").json()
    assert detail["content"]["camera_model"] == "iPhone 15 Pro"
    assert detail["detections"] and all(d["frame"] == -1 for d in detail["detections"])
    for key in ("heic", "dng", "dog24"):
        image = httpx.get(f"{url}/api/image/{_id(db, p[key])}")
        assert image.headers["content-type"] == "image/jpeg"
        rgb = cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR)
        assert rgb is not None and rgb.shape[1] == {"heic": 128, "dng": 48, "dog24": 160}[key]
    thumb = httpx.get(f"{url}/api/thumb/{_id(db, p['video1'])}")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    video = httpx.get(f"{url}/api/file/{_id(db, p['video1'])}").json()
    assert video["video_summary"]["sampled_frames"] == 4
    assert httpx.get(f"{url}/api/file/999999").status_code == 404
    assert httpx.get(f"{url}/api/image/{_id(db, p['broken'])}").status_code == 404
    groups = httpx.get(f"{url}/api/duplicates").json()
    assert sorted(g["kind"] for g in groups) == ["exact", "near"]
    assert httpx.get(f"{url}/api/stats").json()["files"] == m["files"]
    bad = httpx.get(f"{url}/api/search", params={"after": "yesterday"})
    assert bad.status_code == 400 and "date" in bad.json()["detail"]


def test_nothing_is_written(site: Any) -> None:
    url, db, _ = site
    before = db.stat().st_mtime_ns
    for path in ("/api/search", "/api/stats", "/api/duplicates", "/"):
        httpx.get(f"{url}{path}")
    assert db.stat().st_mtime_ns == before


def test_api_key(indexed: tuple[Path, Path, dict[str, Any]]) -> None:
    _, db, _ = indexed
    with serving(create_library_app(db, api_key="s3cret")) as url:
        assert httpx.get(f"{url}/api/search").status_code == 401
        assert httpx.get(f"{url}/api/search", headers={"X-API-Key": "nope"}).status_code == 401
        assert httpx.get(f"{url}/api/search", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.get(f"{url}/api/stats",
                         headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/").status_code == 200  # the page itself asks for the key
        assert httpx.get(f"{url}/api/health").status_code == 200


def test_a_missing_or_foreign_db_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(LibraryDatabaseError, match="no library index"):
        create_library_app(tmp_path / "none.sqlite")


def test_cli_serve_starts_on_loopback_and_stops(indexed: tuple[Path, Path, dict[str, Any]],
                                                tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    _, db, _ = indexed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("DETFORGE_API_KEY", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from detforge.cli import main; main()",
                                 "library", "serve", "--db", str(db), "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/api/stats").json()["files"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert f"on http://127.0.0.1:{port}/ (auth off" in log.read_text()
