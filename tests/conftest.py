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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


# A fresh interpreter that refuses and records (in $NETWORK_LOG) every non-local DNS lookup
# and connect, from ``import detforge`` on, then runs the ``detforge`` CLI.
GUARDED_CLI = """
import os, socket, sys

LOCAL = ("", "localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname())
DNS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex")

def local(host):
    return host is None or str(host) in LOCAL or str(host).startswith("127.")

def refuse_network(event, args):
    if event in DNS and not local(args[0]) or event == "socket.connect" and \\
            args[0].family in (socket.AF_INET, socket.AF_INET6) and not local(args[1][0]):
        with open(os.environ["NETWORK_LOG"], "a", encoding="utf-8") as fh:
            fh.write(f"{event} {args!r}\\n")
        raise OSError(f"network disabled in this test: {event}")

sys.addaudithook(refuse_network)
from detforge.cli import main
main()
"""

QUIET_BY_THEMSELVES = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "DO_NOT_TRACK",
                       "MLFLOW_DISABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY",
                       "RAY_USAGE_STATS_ENABLED", "MPLCONFIGDIR")
"""Variables that make libraries quiet on their own (MLflow stays silent under CI or
pytest): a run that must be offline by detforge's own doing runs without them."""


def guarded_env(log: Path, home: Path) -> dict[str, str]:
    """This environment less :data:`QUIET_BY_THEMSELVES` and the Ultralytics settings."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: v for k, v in os.environ.items()
           if k not in QUIET_BY_THEMSELVES and not k.startswith(("YOLO_", "ULTRALYTICS_"))}
    return {**env, "NETWORK_LOG": str(log), "DETFORGE_HOME": str(home),
            "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)}


@dataclass(frozen=True)
class LearnedRun:
    """The session's trained model (see :func:`learned_run`)."""

    data: Path
    run_dir: Path
    weights: Path
    imgsz: int
    train_s: float
    network_log: Path


LEARN_IMAGES, LEARN_CLASSES, LEARN_SIZE, LEARN_EPOCHS, LEARN_BATCH = 200, 2, 128, 25, 8


@pytest.fixture(scope="session")
def learned_run(tmp_path_factory: pytest.TempPathFactory) -> LearnedRun:
    """One short CPU training that learns, shared by the tests that need a trained model.

    ``detforge data synth`` (200 images, 2 classes, 128 px), then ``detforge train``
    (YOLO11n, 25 epochs, MLflow tracking on) in a fresh interpreter under
    :data:`GUARDED_CLI`, without the variables that make libraries quiet by themselves.
    """
    pytest.importorskip("ultralytics")
    from typer.testing import CliRunner

    from detforge.cli import app

    folder = tmp_path_factory.mktemp("learned")
    data, out, log = folder / "ds", folder / "runs", folder / "network_attempts.txt"
    made = CliRunner().invoke(app, ["data", "synth", str(data), "--images", str(LEARN_IMAGES),
                                    "--classes", str(LEARN_CLASSES),
                                    "--size", f"{LEARN_SIZE},{LEARN_SIZE}"])
    assert made.exit_code == 0, made.output
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", GUARDED_CLI, "train", "--data", str(data),
         "--model", "yolo11n.yaml", "--epochs", str(LEARN_EPOCHS), "--imgsz", str(LEARN_SIZE),
         "--batch", str(LEARN_BATCH), "--seed", "0", "--name", "learn", "--out", str(out),
         "--set", "plots=false",
         # One optimiser step per batch (not per 64 images) and a one-epoch warm-up: a short
         # run needs the steps. Validation only at the end.
         "--set", f"optim.nbs={LEARN_BATCH}", "--set", "optim.warmup_epochs=1",
         "--set", "augment.close_mosaic=5", "--set", "val=false"],
        capture_output=True, text=True, timeout=1800, cwd=folder,
        env=guarded_env(log, folder / "home"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "learn" / "v1"
    return LearnedRun(data, run_dir, run_dir / "weights" / "best.pt", LEARN_SIZE,
                      time.perf_counter() - t0, log)
