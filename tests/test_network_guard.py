"""The suite's network guard (tests/conftest.py) refuses and reports what it should."""

from __future__ import annotations

import socket
import threading

import pytest

from .conftest import AUDIT, is_local


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), (None, True),
    ("config.mlflow-telemetry.io", False), ("8.8.8.8", False), ("pypi.org", False)])
def test_is_local(host: str | None, local: bool) -> None:
    assert is_local(host) is local


def test_outside_connect_and_lookup_are_refused() -> None:
    with pytest.raises(OSError, match="DNS lookup of 'example.com'"):
        socket.getaddrinfo("example.com", 443)
    with socket.socket() as s, pytest.raises(Exception, match="(?i)connect|allowed"):
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed
    assert len(AUDIT.attempts) == 2
    AUDIT.attempts.clear()  # the attempts were this test's point


def test_attempt_in_a_background_thread_is_recorded() -> None:
    def lookup() -> None:
        try:
            socket.getaddrinfo("config.mlflow-telemetry.io", 443)
        except OSError:
            pass  # what a telemetry thread does with the error

    t = threading.Thread(target=lookup)
    t.start()
    t.join()
    assert any("config.mlflow-telemetry.io" in a for a in AUDIT.attempts)
    AUDIT.attempts.clear()


def test_loopback_server_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            conn, _ = server.accept()
            client.sendall(b"ok")
            assert conn.recv(2) == b"ok"
            conn.close()
    assert AUDIT.attempts == []
