"""A loopback HTTP MJPEG stream (multipart/x-mixed-replace, as IP cameras serve) that can be
stopped and started again on the same port, to test reconnection against a real server."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


class MjpegServer:
    """Serves ``frames`` JPEG frames per connection at ``/stream.mjpg`` on 127.0.0.1.

    Args:
        frames: Frames sent per connection, then the connection closes (the camera "drops").
        gap_s: Pause between frames.
    """

    def __init__(self, frames: int = 10, gap_s: float = 0.01) -> None:
        self.frames, self.gap_s = frames, gap_s
        self.connections = 0
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(owner.frames):
                    img = np.full((48, 64, 3), 40 + (i * 7) % 200, np.uint8)
                    data = cv2.imencode(".jpg", img)[1].tobytes()
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(data) + data
                                         + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(owner.gap_s)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
