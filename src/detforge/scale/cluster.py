"""Reaching a Ray cluster for one run: a local one bound to loopback, or a given address.

``ADDRESS`` follows Ray's own forms: ``local`` (the default: start a private cluster on this
machine for the run and stop it afterwards), ``auto`` (the cluster already running here, or
``$RAY_ADDRESS``), ``HOST:PORT`` (a head node's GCS) or ``ray://HOST:10001`` (Ray Client).

A local cluster never touches the network beyond loopback:

* ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray take ``127.0.0.1`` as the node address
  (``ray._private.services.get_node_ip_address``) instead of finding the outward interface,
  so the GCS, the raylet, the object manager and every worker listen on loopback only (its
  gRPC servers bind the node address); the address is checked after start-up and the run is
  refused if it is anything else;
* ``RAY_USAGE_STATS_ENABLED=0``: no usage report;
* ``include_dashboard=False``: no dashboard web page.

Its workers also run at the priority of this process (``RAY_worker_niceness=0``; Ray's own
default is 15): they are the run's compute, as the local pipeline's threads are, and on a
machine shared with other jobs a nice-15 worker gets a fraction of a core.

A process that is already connected (``ray.is_initialized()``: a notebook, a test session)
keeps its connection and the run leaves it open.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from detforge.core.errors import DetforgeError, MissingExtraError
from detforge.scale.errors import ClusterError

__all__ = ["LOCAL_ENV", "Cluster", "ClusterInfo", "import_ray", "reraise_cause"]

LOCAL_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_worker_niceness": "0",
}
"""Environment of a local cluster (inherited by its GCS, raylet and workers)."""


def import_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        MissingExtraError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("--ray needs Ray: pip install 'detforge[scale]'") from exc
    return ray


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The cluster a run used.

    Attributes:
        address: ``local``, the address given, or the GCS address of a connection the
            process already had.
        started: A local cluster was started (and stopped) for the run.
        nodes: Live nodes.
        cpus: Logical CPUs over all nodes.
        gpus: GPUs over all nodes.
        connect_s: Seconds to start or reach the cluster.
    """

    address: str
    started: bool
    nodes: int
    cpus: float
    gpus: float
    connect_s: float

    def describe(self) -> str:
        """One line for run summaries."""
        how = ("local cluster (127.0.0.1) started" if self.started
               else f"cluster at {self.address} reached")
        return (f"ray: {how} in {self.connect_s:.1f} s; {self.nodes} node(s), "
                f"{self.cpus:g} CPU(s), {self.gpus:g} GPU(s)")


class Cluster:
    """A Ray connection for the length of a ``with`` block.

    Args:
        address: ``local`` (start a private cluster, see the module docstring), ``auto``,
            ``HOST:PORT`` or ``ray://HOST:PORT``.
        num_cpus: Logical CPUs of a local cluster (default: this machine's cores).

    Raises:
        MissingExtraError: Ray is not installed.
        ClusterError: The cluster cannot be reached, or a local one did not bind to loopback.

    Example:
        >>> with Cluster("local") as cluster:  # doctest: +SKIP
        ...     print(cluster.info.describe())
    """

    def __init__(self, address: str = "local", *, num_cpus: int | None = None) -> None:
        self.address = address or "local"
        self.num_cpus = num_cpus
        self.info: ClusterInfo | None = None
        self._owned = False
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> Cluster:
        local = self.address == "local"
        if local:
            self._saved_env = {k: os.environ.get(k) for k in LOCAL_ENV}
            os.environ.update(LOCAL_ENV)
        t0 = time.perf_counter()
        try:
            ray = import_ray()
            address = self.address
            if ray.is_initialized():  # keep the process's connection
                address = str(ray.get_runtime_context().gcs_address)
            else:
                self._connect(ray, local)
                self._owned = True
            self.info = _describe(ray, address, started=self._owned and local,
                                  connect_s=time.perf_counter() - t0)
            if self._owned and local:
                _check_loopback(ray)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def require(self) -> ClusterInfo:
        """The connected cluster's :class:`ClusterInfo` (inside the ``with`` block).

        Raises:
            ClusterError: Not connected yet.
        """
        if self.info is None:
            raise ClusterError("not connected: use the Cluster in a `with` block")
        return self.info

    def _connect(self, ray: Any, local: bool) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "namespace": "detforge"}
        if local:
            kwargs.update(address="local", num_cpus=self.num_cpus,
                          logging_level=logging.ERROR)
        else:
            # the workers run the driver's detforge, whatever the cluster has installed
            kwargs.update(address=self.address, logging_level=logging.WARNING,
                          runtime_env={"py_modules": [str(Path(__file__).parents[1])]})
        try:
            with _loopback_constant(ray) if local else contextlib.nullcontext():
                ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {self.address!r} ({exc}); "
                               "pass --ray alone for a local cluster, --ray auto for the "
                               "one running here, or the head node's HOST:PORT") from exc

    def _close(self) -> None:
        if self._owned:
            self._owned = False
            with contextlib.suppress(Exception):
                sys.modules["ray"].shutdown()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}


@contextlib.contextmanager
def _loopback_constant(ray: Any) -> Iterator[None]:
    """Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is first imported; a
    process that imported it before setting :data:`LOCAL_ENV` gets the same effect here."""
    constants = ray._private.ray_constants
    saved = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


def _describe(ray: Any, address: str, *, started: bool, connect_s: float) -> ClusterInfo:
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return ClusterInfo(address=address, started=started, nodes=len(nodes),
                       cpus=float(resources.get("CPU", 0.0)),
                       gpus=float(resources.get("GPU", 0.0)), connect_s=connect_s)


def _check_loopback(ray: Any) -> None:
    for node in ray.nodes():
        host = str(node.get("NodeManagerAddress", ""))
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ClusterError(f"the local Ray cluster bound {host!r}, not loopback; detforge "
                               "refuses to serve it on the network. Start a cluster yourself "
                               "(ray start --head --node-ip-address 127.0.0.1) and pass "
                               "--ray auto")


def reraise_cause(exc: BaseException) -> None:
    """Raise the error a Ray task raised, when it is one of detforge's own (so the command
    line prints it as a one-line message); otherwise return and let the caller raise."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DetforgeError):
        raise cause from None
