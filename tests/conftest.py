"""Shared fixtures. Tests build their own data and never touch the network.

Network guard (every test): pytest-socket lets sockets connect to loopback and unix
addresses only, and an audit hook records every DNS lookup of a non-local name and every
connect to a non-local address, from any thread, refusing the lookups; a test during which
either happened fails, even when the code under test swallowed the error (telemetry
threads do). ``--force-enable-socket`` turns the pytest-socket half off.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_socket import SocketConnectBlockedError

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bccd" / "BCCD"
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
"""What a test may connect to (pytest-socket's allow list), besides unix sockets."""


def is_local(host: Any) -> bool:
    """True for loopback, wildcard and this machine's own name (never leaves the host)."""
    if host is None or isinstance(host, bytes | bytearray) and not host:
        return True
    name = host.decode() if isinstance(host, bytes | bytearray) else str(host)
    return (name in ("", "0.0.0.0", "::", *LOCAL_HOSTS, socket.gethostname())
            or name.startswith("127.") or name.endswith(".localhost"))


class NetworkAudit:
    """Records non-local DNS lookups and connects while :attr:`armed` (process-wide)."""

    def __init__(self) -> None:
        self.armed = False
        self.attempts: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            host = args[0]
            if not is_local(host):
                self._record(f"{event}({host!r}) in thread {threading.current_thread().name}")
                raise OSError(f"network disabled in tests: DNS lookup of {host!r}")
        elif event == "socket.connect":
            sock, address = args[0], args[1]
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
                self._record(f"connect to {address!r} in thread "
                             f"{threading.current_thread().name}")

    def _record(self, what: str) -> None:
        with self._lock:
            self.attempts.append(what)


AUDIT = NetworkAudit()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Set pytest-socket's allow list, then import Ultralytics the offline way once.

    Ultralytics' import would otherwise patch ``PIL.Image.open`` (a pip install on
    undecodable images) and probe the network, whichever test happens to import it first.
    """
    if not config.option.allow_hosts:
        config.option.allow_hosts = ",".join(LOCAL_HOSTS)
    config.option.allow_unix_socket = True
    sys.addaudithook(AUDIT)
    try:
        from detforge.integrations.ultralytics import import_ultralytics

        import_ultralytics(Path(tempfile.gettempdir()) / "detforge-tests-ultralytics")
    except ImportError:  # the train extra is absent: those tests skip
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Arm the audit before any fixture of the test, session ones included."""
    AUDIT.attempts.clear()
    AUDIT.armed = True
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    AUDIT.armed = False


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Fail the test when anything in it, or in a fixture it set up, tried the network.

    pytest-socket's connect guard raises before the connect happens (so the audit hook
    never sees it); it is wrapped here to record the refusal too.
    """
    guarded = socket.socket.connect

    def recording_connect(sock: socket.socket, *args: Any) -> Any:
        try:
            return guarded(sock, *args)
        except (SocketConnectBlockedError, UserWarning):  # its warning, under "error"
            AUDIT._record(f"connect to {args[0]!r} in thread {threading.current_thread().name}")
            raise

    socket.socket.connect = recording_connect  # type: ignore[method-assign]
    yield
    if socket.socket.connect is recording_connect:
        socket.socket.connect = guarded  # type: ignore[method-assign]
    if AUDIT.attempts:
        pytest.fail("network attempts during the test: " + "; ".join(AUDIT.attempts[:5]),
                    pytrace=False)


@pytest.fixture(scope="session")
def bccd_path() -> Path:
    """The BCCD VOC dataset from ../shared/datasets, or skip when absent."""
    if not (BCCD / "Annotations").is_dir():
        pytest.skip("BCCD dataset not present in ../shared/datasets/bccd")
    return BCCD
