"""detforge's DeepStream parser: shipped in every bundle, and run here through ctypes.

A bundle holds ``nvdsinfer_custom_impl_detforge/`` with the C++ source of
``NvDsInferParseCustomDetforge`` and a Makefile whose defaults are the target's CUDA and
DeepStream versions; ``make -C nvdsinfer_custom_impl_detforge`` on the device builds the
library ``custom-lib-path`` names and a sha256 record of it and its sources.

On a workstation with a C++ compiler, :func:`host_library` compiles the same source against
``host/`` -- minimal stand-ins of DeepStream's ``nvdsinfer.h`` and
``nvdsinfer_custom_impl.h`` with the SDK's struct layouts -- plus a C entry point, so
:class:`HostParser` runs the shipped parser on a tensor. ``deploy verify`` uses it when it
can and the numpy twin (:func:`detforge.deploy.verify_on_device.parse_rows`) otherwise;
the tests hold the two equal.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.atomic import atomic_write_bytes, atomic_write_text
from detforge.core.errors import ConfigError, ExportError
from detforge.deploy.targets import Target

__all__ = ["CUDA_FOR_DEEPSTREAM", "CUSTOM_LIB", "FUNCTION", "LIBRARY", "PARSER_DIR",
           "SOURCES", "HostParser", "cuda_version", "host_library", "write_parser"]

PARSER_DIR = "nvdsinfer_custom_impl_detforge"
"""The parser's folder in a bundle, next to config_infer_primary.txt."""
LIBRARY = "libnvdsinfer_custom_impl_detforge.so"
CUSTOM_LIB = f"{PARSER_DIR}/{LIBRARY}"
"""``custom-lib-path``: relative to the nvinfer config, as nvinfer resolves it."""
FUNCTION = "NvDsInferParseCustomDetforge"
"""``parse-bbox-func-name``."""
SOURCES = ("nvdsparsebbox_detforge.cpp", "Makefile")

_HERE = Path(__file__).parent

CUDA_FOR_DEEPSTREAM: dict[tuple[str, str], str] = {
    ("6.0.1", "jetson"): "10.2", ("6.0.1", "x86"): "11.4",
    ("6.3", "jetson"): "11.4", ("6.3", "x86"): "12.1",
    ("7.0", "jetson"): "12.2", ("7.0", "x86"): "12.2",
    ("7.1", "jetson"): "12.6", ("7.1", "x86"): "12.6",
    ("8.0", "jetson"): "13.0", ("8.0", "x86"): "12.8",
}
"""CUDA version of each DeepStream release per platform (DeepStream-Yolo README, "Set the
CUDA_VER according to your DeepStream version"; DeepStream 8.0 release notes)."""


def cuda_version(target: Target) -> str:
    """The CUDA version of the target's DeepStream release.

    Raises:
        ConfigError: A DeepStream version the table does not know.
    """
    try:
        return CUDA_FOR_DEEPSTREAM[(target.deepstream, target.kind)]
    except KeyError:
        raise ConfigError(f"{target.name}: no CUDA version known for DeepStream "
                          f"{target.deepstream} on {target.kind}; add it to "
                          f"detforge.deploy.parser.CUDA_FOR_DEEPSTREAM") from None


def write_parser(folder: Path, target: Target) -> list[str]:
    """Write the parser source and its Makefile into ``folder/nvdsinfer_custom_impl_detforge``.

    Returns:
        The files written, relative to ``folder``.
    """
    out = folder / PARSER_DIR
    cpp = (_HERE / SOURCES[0]).read_bytes()
    make = (_HERE / "Makefile.in").read_text(encoding="utf-8")
    for key, value in (("@TARGET@", target.title), ("@DEEPSTREAM@", target.deepstream),
                       ("@CUDA@", cuda_version(target))):
        make = make.replace(key, value)
    atomic_write_bytes(out / SOURCES[0], cpp)
    atomic_write_text(out / SOURCES[1], make)
    return [f"{PARSER_DIR}/{name}" for name in SOURCES]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "detforge" / "parser"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def host_library(source: Path | None = None, *, cache: Path | None = None) -> Path:
    """Compile the parser (``source``: a bundle's .cpp, default the packaged one) for this
    machine, with the host stand-in headers and the C entry point; cached by content.

    Raises:
        MissingExtraError: No C++ compiler here (``CXX`` or ``g++``).
        ExportError: The source does not compile; the message holds the compiler's output.
    """
    from detforge.core.errors import MissingExtraError

    source = source or _HERE / SOURCES[0]
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise MissingExtraError("no C++ compiler to build the DeepStream parser here; "
                                "install g++ (apt-get install g++) or set CXX")
    shim = _HERE / "host" / "shim.cpp"
    digest = hashlib.sha256()
    for path in (source, shim, _HERE / "host" / "nvdsinfer.h",
                 _HERE / "host" / "nvdsinfer_custom_impl.h"):
        digest.update(path.read_bytes())
    out = (cache or _cache_dir()) / f"parser-{digest.hexdigest()[:24]}.so"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="detforge-parser-") as tmp:
        built = Path(tmp) / "parser.so"
        cmd = [cxx, "-std=c++11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
               f"-I{_HERE / 'host'}", str(source), str(shim), "-o", str(built)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ExportError(f"{source}: the DeepStream parser does not compile:\n"
                              f"{done.stderr.strip()[-2000:]}")
        atomic_write_bytes(out, built.read_bytes())
    return out


class HostParser:
    """The compiled parser, called as nvinfer calls it, one frame at a time.

    Example:
        >>> parser = HostParser(host_library())  # doctest: +SKIP
        >>> parser.parse(np.zeros((0, 6), np.float32), 640, 640, [0.25])  # doctest: +SKIP
        array([], shape=(0, 6), dtype=float32)
    """

    def __init__(self, library: Path) -> None:
        self._lib: Any = ctypes.CDLL(str(library))
        fn = self._lib.detforge_parse
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint,
                       ctypes.POINTER(ctypes.c_uint), ctypes.c_char_p, ctypes.c_uint,
                       ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_float),
                       ctypes.POINTER(ctypes.c_float), ctypes.c_uint]
        self._fn = fn

    def parse(self, tensor: NDArray[Any], net_w: int, net_h: int,
              thresholds: list[float], *, layer: str = "output") -> NDArray[np.float32]:
        """Objects from one frame's output tensor (batch axis removed).

        Args:
            tensor: ``[N, 6]`` float32 or float16.
            net_w: Network input width.
            net_h: Network input height.
            thresholds: Per-class pre-cluster thresholds (their count is the class count).
            layer: The tensor's name.

        Returns:
            ``[M, 6]`` rows of class id, left, top, width, height, confidence.

        Raises:
            BackendError: The parser refused the tensor (returned false).
        """
        from detforge.core.errors import BackendError

        data = np.ascontiguousarray(tensor)
        dtype = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}.get(data.dtype)
        if dtype is None:
            data, dtype = data.astype(np.float32), 0
        dims = (ctypes.c_uint * data.ndim)(*data.shape)
        thr = np.ascontiguousarray(thresholds, np.float32)
        cap = max(1, int(np.prod(data.shape[:-1])) if data.ndim else 1)
        out = np.zeros((cap, 6), np.float32)
        n = self._fn(data.ctypes.data, dtype, data.ndim, dims, layer.encode(), net_w, net_h,
                     len(thr), thr.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                     out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), cap)
        if n < 0:
            raise BackendError(f"the DeepStream parser refused a {list(data.shape)} "
                               f"{data.dtype} tensor named {layer!r}")
        return out[:n]
