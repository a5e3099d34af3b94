#!/usr/bin/env python3
"""On-device check of a detforge bundle, for devices where detforge itself does not install.

Copied into every bundle. Needs Python >= 3.6 and numpy only (JetPack 4.6 ships Python 3.6,
JetPack 5 Python 3.8), so it uses no syntax or library newer than that. It:

1. checks every file manifest.json lists against its sha256, the parser library against
   the record its Makefile wrote, and the manifest's HMAC signature when
   ``DETFORGE_SIGNING_KEY`` is set;
2. runs the TensorRT engine that build_engine.sh made on the reference inputs in
   ``reference/device/`` -- through the TensorRT Python API when it is installed, else
   through ``trtexec --loadInputs ... --exportOutput`` (or the JSON files you give with
   ``--trtexec-output``);
3. decodes the outputs the way the shipped parser and nvinfer's clustering do (NMS with
   cluster-mode=2; with 4, none: the topk best per class) and compares the boxes with the
   workstation's (same class, IoU >= 0.9).

Usage, from the bundle folder::

    python3 verify_on_device.py                  # engine from manifest.json
    python3 verify_on_device.py --engine my.engine
    python3 verify_on_device.py --trtexec-output out_000.json out_001.json

Exit status 0 when everything passes, 1 otherwise. detforge's own ``deploy verify`` imports
the decoding and checking functions from this file, so both agree by construction.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types live in comments; numpy.typing is newer than JetPack 4's numpy
    from typing import Any, Dict, List, Optional, Sequence, Tuple  # noqa: F401

    from numpy.typing import NDArray  # noqa: F401

MANIFEST = "manifest.json"
DEVICE_REFERENCE = "reference/device/expected.json"
SIGNING_KEY_ENV = "DETFORGE_SIGNING_KEY"
SIGNATURE_FIELD = "signature"
LIBRARY_RECORD_SUFFIX = ".sha256"
SCORE_TOLERANCE = {"fp32": 0.02, "fp16": 0.05, "int8": 0.1}
"""Scores within this distance of the threshold may cross it on another device."""


class DeviceCheckError(Exception):
    """A file, an engine or a reference cannot be used; the message says why and the fix."""


# --- the shipped parser and nvinfer, in numpy -------------------------------------------

def parse_rows(rows, net_w, net_h, thresholds, num_classes):
    # type: (NDArray[Any], float, float, Sequence[float], int) -> NDArray[Any]
    """What NvDsInferParseCustomDetforge returns for one frame's ``[N, 6]`` output.

    Rows are x1, y1, x2, y2, score, class in network pixels. A row is kept when every value
    is finite, the rounded class id is < ``num_classes`` and ``len(thresholds)``, the score
    is >= that class's pre-cluster threshold, and the box clipped to the network input has
    a positive width and height.

    Returns:
        ``[M, 6]`` float32 rows of class id, left, top, width, height, confidence (the
        fields of NvDsInferObjectDetectionInfo), in row order.
    """
    r = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    finite = np.isfinite(r).all(axis=1)
    r = r[finite]
    cls = np.floor(np.abs(r[:, 5]) + np.float32(0.5)) * np.sign(r[:, 5])  # std::lround
    limit = min(int(num_classes), len(thresholds))
    ok = (cls >= 0) & (cls < limit)
    r, cls = r[ok], cls[ok].astype(np.int64)
    thr = np.asarray(list(thresholds)[:limit] or [0.0], dtype=np.float32)
    keep = r[:, 4] >= thr[cls] if len(r) else np.zeros(0, bool)
    r, cls = r[keep], cls[keep]
    w, h = np.float32(net_w), np.float32(net_h)
    x1 = np.clip(r[:, 0], 0, w)
    x2 = np.clip(r[:, 2], 0, w)
    y1 = np.clip(r[:, 1], 0, h)
    y2 = np.clip(r[:, 3], 0, h)
    bw, bh = x2 - x1, y2 - y1
    positive = (bw > 0) & (bh > 0)
    out = np.stack([cls.astype(np.float32), x1, y1, bw, bh, np.minimum(r[:, 4], 1)], axis=1)
    kept = out[positive].astype(np.float32)  # type: NDArray[Any]
    return kept


def _iou_one(box, boxes):
    # type: (NDArray[Any], NDArray[Any]) -> NDArray[Any]
    """IoU as nvinfer's NMS computes it: left/top/width/height, 0 when the union is 0."""
    ox = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    oy = np.minimum(box[2] + box[4], boxes[:, 2] + boxes[:, 4]) - np.maximum(box[2], boxes[:, 2])
    inter = np.clip(ox, 0, None) * np.clip(oy, 0, None)
    union = box[3] * box[4] + boxes[:, 3] * boxes[:, 4] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union == 0, 0.0, inter / union)


def _per_class(objects, num_classes, pre_threshold):
    # type: (NDArray[Any], int, Optional[Sequence[float]]) -> List[NDArray[Any]]
    """The rows of each class id < ``num_classes`` in class order, less those below their
    class's pre-cluster-threshold (None: keep all), as nvinfer filters a parser's output."""
    objects = np.asarray(objects, dtype=np.float32).reshape(-1, 6)
    cls = objects[:, 0].astype(np.int64)
    keep = cls < num_classes
    if pre_threshold is not None and len(objects):
        thr = np.asarray(list(pre_threshold) + [np.inf] * num_classes, np.float32)
        keep &= objects[:, 5] >= thr[np.clip(cls, 0, len(thr) - 1)]
    objects, cls = objects[keep], cls[keep]
    return [objects[cls == c] for c in range(num_classes)]


def cluster_nms(objects, num_classes, iou_threshold, topk, post_threshold=0.0,
                pre_threshold=None):
    # type: (NDArray[Any], int, float, int, float, Optional[Sequence[float]]) -> NDArray[Any]
    """nvinfer's cluster-mode=2 after a custom parser, for one frame.

    nvinfer drops objects whose class id is >= num-detected-classes or whose score is below
    that class's pre-cluster-threshold, then per class in class order: stable sort by
    score, greedy NMS that keeps a box when its IoU with every kept box is <= the
    threshold, keeps scores > post-cluster-threshold, and the ``topk`` best (all when
    ``topk`` < 0).

    Args:
        objects: ``[M, 6]`` rows from :func:`parse_rows`.
        num_classes: ``num-detected-classes``.
        iou_threshold: ``nms-iou-threshold``.
        topk: ``topk`` (per class).
        post_threshold: ``post-cluster-threshold``.
        pre_threshold: Per-class ``pre-cluster-threshold`` (None: keep all).

    Returns:
        ``[K, 6]`` rows in nvinfer's output order.
    """
    out = []  # type: List[NDArray[Any]]
    for mine in _per_class(objects, num_classes, pre_threshold):
        if not len(mine):
            continue
        mine = mine[np.argsort(-mine[:, 5], kind="mergesort")]
        kept = []  # type: List[int]
        for i in range(len(mine)):
            if not kept or (_iou_one(mine[i], mine[kept]) <= iou_threshold).all():
                kept.append(i)
        chosen = mine[kept]
        chosen = chosen[chosen[:, 5] > post_threshold]
        if topk >= 0:
            chosen = chosen[:topk]
        out.append(chosen)
    return np.concatenate(out, axis=0) if out else np.zeros((0, 6), np.float32)


def unclustered(objects, num_classes, topk, pre_threshold=None):
    # type: (NDArray[Any], int, int, Optional[Sequence[float]]) -> NDArray[Any]
    """nvinfer's cluster-mode=4 (none) after a custom parser, for one frame.

    Objects of a class id >= num-detected-classes or below that class's
    pre-cluster-threshold are dropped (the shipped parser does so); then per class in class
    order: stable sort by score and the ``topk`` best (all when ``topk`` < 0), as
    ``fillUnclusteredOutput`` / ``filterTopKOutputs`` do. No NMS and no
    post-cluster-threshold.

    Args:
        objects: ``[M, 6]`` rows from :func:`parse_rows`.
        num_classes: ``num-detected-classes``.
        topk: ``topk`` (per class).
        pre_threshold: Per-class ``pre-cluster-threshold`` (None: keep all).

    Returns:
        ``[K, 6]`` rows in nvinfer's output order.
    """
    out = []  # type: List[NDArray[Any]]
    for mine in _per_class(objects, num_classes, pre_threshold):
        mine = mine[np.argsort(-mine[:, 5], kind="mergesort")]
        out.append(mine[:topk] if topk >= 0 else mine)
    return np.concatenate(out, axis=0) if out else np.zeros((0, 6), np.float32)


def nvinfer_objects(output, net_w, net_h, thresholds):
    # type: (NDArray[Any], float, float, Dict[str, Any]) -> NDArray[Any]
    """Parser then clustering (``cluster_mode`` 2: NMS, 4: none) on one frame's ``[N, 6]``
    output, as nvinfer would. References written before cluster_mode was recorded used 2."""
    num_classes = int(thresholds["num_classes"])
    pre = [float(thresholds["pre_cluster"])] * num_classes
    parsed = parse_rows(output, net_w, net_h, pre, num_classes)
    if int(thresholds.get("cluster_mode", 2)) == 4:
        return unclustered(parsed, num_classes, int(thresholds["topk"]), pre)
    return cluster_nms(parsed, num_classes, float(thresholds["nms_iou"]),
                       int(thresholds["topk"]), float(thresholds.get("post_cluster", 0.0)), pre)


def xyxy(objects):
    # type: (NDArray[Any]) -> NDArray[Any]
    """``[M, 6]`` object rows -> ``[M, 4]`` x1, y1, x2, y2."""
    o = np.asarray(objects, np.float32).reshape(-1, 6)
    return np.stack([o[:, 1], o[:, 2], o[:, 1] + o[:, 3], o[:, 2] + o[:, 4]], axis=1)


def match_boxes(ref_boxes, ref_scores, ref_cls, new_boxes, new_scores, new_cls, iou=0.9,
                borderline=0.0):
    # type: (NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], float, float) -> Tuple[int, int, int, float]  # noqa: E501
    """One-to-one greedy matching by reference score: (matched, missing, extra, max score
    difference). Same class and IoU >= ``iou`` match; unmatched boxes scoring below
    ``borderline`` are not counted (they may cross the threshold on another device)."""
    ref_boxes = np.asarray(ref_boxes, np.float32).reshape(-1, 4)
    new_boxes = np.asarray(new_boxes, np.float32).reshape(-1, 4)
    used_new = np.zeros(len(new_boxes), bool)
    used_ref = np.zeros(len(ref_boxes), bool)
    diff = 0.0
    if len(ref_boxes) and len(new_boxes):
        a, b = ref_boxes[:, None, :], new_boxes[None, :, :]
        iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
        ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
        inter = iw * ih
        area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
        area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.where(area_a + area_b - inter > 0, inter / (area_a + area_b - inter), 0.0)
        m[np.abs(a - b).max(axis=-1) <= 0.5] = 1.0  # boxes clipped to zero area at an edge
        m[np.asarray(ref_cls)[:, None] != np.asarray(new_cls)[None, :]] = 0
        for i in np.argsort(-np.asarray(ref_scores), kind="mergesort"):
            j = int(np.argmax(m[i]))
            if m[i, j] >= iou:
                used_ref[i] = used_new[j] = True
                diff = max(diff, abs(float(ref_scores[i]) - float(new_scores[j])))
                m[:, j] = 0
    missing = int(np.count_nonzero(~used_ref & (np.asarray(ref_scores) >= borderline)))
    extra = int(np.count_nonzero(~used_new & (np.asarray(new_scores) >= borderline)))
    return int(used_ref.sum()), missing, extra, diff


# --- files, records and signatures ------------------------------------------------------

def sha256_of(path):
    # type: (str) -> str
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_files(folder, files):
    # type: (str, Dict[str, str]) -> Tuple[List[str], List[str]]
    """(missing, changed): manifest ``files`` entries absent, or whose sha256 differs."""
    missing, changed = [], []  # type: List[str], List[str]
    for rel, want in sorted(files.items()):
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            missing.append(rel)
        elif sha256_of(path) != want:
            changed.append(rel)
    return missing, changed


def read_record(path):
    # type: (str) -> Dict[str, str]
    """A ``sha256sum`` file: relative name -> sha256 (names relative to the record's folder).

    Raises:
        DeviceCheckError: A line is not ``<64 hex>  <name>``.
    """
    out = {}  # type: Dict[str, str]
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            found = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line)
            if not found:
                raise DeviceCheckError(f"{path}:{n}: not a sha256sum line ({line[:80]!r}); "
                                       "rebuild it with make")
            out[found.group(2)] = found.group(1)
    return out


def check_build_record(folder, record_rel, sources):
    # type: (str, str, Dict[str, str]) -> List[str]
    """Problems with a library built on the device, judged by the record its Makefile wrote.

    The record lists the built file and the sources it was built from; the built file must
    match its line, and every source line must match the sha256 manifest.json holds for
    that source (so the library was built from the bundle's own, unmodified sources).

    Args:
        folder: The bundle folder.
        record_rel: The record, relative to ``folder``.
        sources: Bundle-relative source path -> sha256 from manifest.json.
    """
    record_path = os.path.join(folder, record_rel)
    base = os.path.dirname(record_rel)
    try:
        lines = read_record(record_path)
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{record_rel}: unreadable ({exc})"]
    except DeviceCheckError as exc:
        return [str(exc)]
    built = record_rel[: -len(LIBRARY_RECORD_SUFFIX)]
    problems = []
    for name, sha in sorted(lines.items()):
        rel = os.path.normpath(os.path.join(base, name)).replace(os.sep, "/")
        path = os.path.join(folder, rel)
        if rel == built:
            if not os.path.isfile(path) or sha256_of(path) != sha:
                problems.append("{} differs from {} (rebuild it: make -C {})".format(
                    rel, record_rel, base or "."))
        elif sources.get(rel) != sha:
            problems.append(f"{built} was built from a {rel} that is not the bundle's")
    if built not in {os.path.normpath(os.path.join(base, n)).replace(os.sep, "/")
                     for n in lines}:
        problems.append(f"{record_rel} does not list {built}")
    return problems


def canonical_manifest(manifest):
    # type: (Dict[str, Any]) -> bytes
    """The bytes a manifest signature covers: the manifest without its signature, as sorted,
    compact JSON (so re-indenting the file does not break the signature)."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hmac_signature(manifest, key):
    # type: (Dict[str, Any], bytes) -> str
    """Hex HMAC-SHA256 of :func:`canonical_manifest` with ``key``."""
    return hmac.new(key, canonical_manifest(manifest), hashlib.sha256).hexdigest()


# --- running the engine -----------------------------------------------------------------

def load_device_reference(folder):
    # type: (str) -> Tuple[Dict[str, Any], List[NDArray[Any]]]
    """``reference/device/expected.json`` and the network inputs it names, as float32 NCHW.

    Raises:
        DeviceCheckError: A file is missing or malformed.
    """
    path = os.path.join(folder, DEVICE_REFERENCE)
    try:
        with open(path, encoding="utf-8") as fh:
            ref = json.load(fh)
        spec = ref["input"]
        inputs = []
        for image in ref["images"]:
            pixels = np.load(os.path.join(os.path.dirname(path), image["input"]),
                             allow_pickle=False)
            inputs.append(network_input(pixels, spec))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeviceCheckError(f"{path}: unreadable device reference ({exc}); rebuild the "
                               "bundle with `detforge deploy bundle`") from exc
    return ref, inputs


def network_input(pixels, spec):
    # type: (NDArray[Any], Dict[str, Any]) -> NDArray[Any]
    """nvinfer's conversion of a scaled, padded ``[H, W, 3]`` uint8 frame:
    ``net-scale-factor * (x - offsets)`` per channel, as a ``[1, 3, H, W]`` float32 batch."""
    x = np.asarray(pixels, np.float32)
    offsets = np.asarray(spec.get("offsets", [0.0, 0.0, 0.0]), np.float32)
    x = np.float32(spec["net_scale_factor"]) * (x - offsets)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def read_trtexec_output(path, name):
    # type: (str, str) -> NDArray[Any]
    """One output tensor from ``trtexec --exportOutput=FILE``.

    trtexec writes a JSON list of ``{"name", "dimensions": "1x300x6", "values": [...]}``
    (TensorRT samples/common/sampleReporting.cpp, exportJSONOutput); non-finite values are
    printed as C++ streams print them (``nan``, ``inf``), which JSON does not allow.

    Raises:
        DeviceCheckError: The file or the tensor is missing or malformed.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        text = re.sub(r"(?<![\w.\"])-?(nan|inf)(?![\w\"])", "null", text, flags=re.I)
        tensors = json.loads(text)
        for t in tensors:
            if t["name"] == name:
                dims = [int(d) for d in str(t["dimensions"]).split("x")]
                values = np.array([np.nan if v is None else v for v in t["values"]], np.float32)
                return values.reshape(dims)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeviceCheckError(f"{path}: not a trtexec --exportOutput file ({exc})") from exc
    raise DeviceCheckError(f"{path}: no output tensor named {name!r}")


def trtexec_path():
    # type: () -> Optional[str]
    found = os.environ.get("TRTEXEC") or shutil.which("trtexec")
    if found:
        return found
    default = "/usr/src/tensorrt/bin/trtexec"
    return default if os.path.isfile(default) else None


def run_trtexec(engine, inputs, input_name, output_name, work, exe=None):
    # type: (str, List[NDArray[Any]], str, str, str, Optional[str]) -> List[NDArray[Any]]
    """Run ``trtexec`` (default: found on the PATH or in TensorRT's install) once per input
    with ``--loadInputs`` and ``--exportOutput``."""
    exe = exe or trtexec_path()
    if exe is None:
        raise DeviceCheckError("neither the TensorRT Python API nor trtexec is installed; set "
                               "TRTEXEC=/path/to/trtexec or pass --trtexec-output")
    outputs = []
    for i, x in enumerate(inputs):
        raw = os.path.join(work, f"input_{i:03d}.bin")
        out = os.path.join(work, f"output_{i:03d}.json")
        x.astype("<f4").tofile(raw)
        shape = "x".join(str(d) for d in x.shape)
        cmd = [exe, "--loadEngine=" + engine, f"--loadInputs={input_name}:{raw}",
               f"--shapes={input_name}:{shape}", "--exportOutput=" + out,
               "--iterations=1", "--warmUp=0", "--duration=0"]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)  # noqa: UP021  (the text keyword is 3.7)
        if done.returncode != 0:
            tail = "\n".join(done.stdout.splitlines()[-5:])
            raise DeviceCheckError(f"trtexec failed on {engine} (exit {done.returncode}):\n{tail}")
        outputs.append(read_trtexec_output(out, output_name))
    return outputs


class _Cuda:
    """cudaMalloc / cudaMemcpy / cudaFree through ctypes: no pycuda needed."""

    def __init__(self):
        # type: () -> None
        import ctypes
        import ctypes.util

        names = [ctypes.util.find_library("cudart"), "libcudart.so",
                 "/usr/local/cuda/lib64/libcudart.so"]
        lib = None
        for name in names:
            if name:
                try:
                    lib = ctypes.CDLL(name)
                    break
                except OSError:
                    continue
        if lib is None:
            raise DeviceCheckError("libcudart not found; run with trtexec instead")
        self.lib = lib
        self.ctypes = ctypes

    def _ok(self, code, what):
        # type: (int, str) -> None
        if code != 0:
            raise DeviceCheckError(f"{what} failed with CUDA error {code}")

    def malloc(self, nbytes):
        # type: (int) -> int
        ptr = self.ctypes.c_void_p()
        self._ok(self.lib.cudaMalloc(self.ctypes.byref(ptr), self.ctypes.c_size_t(nbytes)),
                 "cudaMalloc")
        return int(ptr.value or 0)

    def to_device(self, ptr, array):
        # type: (int, NDArray[Any]) -> None
        self._ok(self.lib.cudaMemcpy(self.ctypes.c_void_p(ptr), array.ctypes.data_as(
            self.ctypes.c_void_p), self.ctypes.c_size_t(array.nbytes), 1), "cudaMemcpy")

    def to_host(self, array, ptr):
        # type: (NDArray[Any], int) -> None
        self._ok(self.lib.cudaMemcpy(array.ctypes.data_as(self.ctypes.c_void_p),
                                     self.ctypes.c_void_p(ptr),
                                     self.ctypes.c_size_t(array.nbytes), 2), "cudaMemcpy")

    def sync(self):
        # type: () -> None
        self._ok(self.lib.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def free(self, ptr):
        # type: (int) -> None
        self.lib.cudaFree(self.ctypes.c_void_p(ptr))


def run_tensorrt(engine_path, inputs, input_name, output_name):
    # type: (str, List[NDArray[Any]], str, str) -> List[NDArray[Any]]
    """Run the engine with the TensorRT Python API (named-tensor API from TensorRT 8.5,
    binding indices before), one input at a time."""
    import tensorrt as trt  # JetPack's python3-libnvinfer

    logger = trt.Logger(trt.Logger.WARNING)
    with open(engine_path, "rb") as fh:
        engine = trt.Runtime(logger).deserialize_cuda_engine(fh.read())
    if engine is None:
        raise DeviceCheckError(f"{engine_path}: TensorRT could not deserialize it (built for "
                               "another GPU or TensorRT version?); run ./build_engine.sh")
    context = engine.create_execution_context()
    cuda = _Cuda()
    named = hasattr(engine, "num_io_tensors")
    outputs = []
    for x in inputs:
        pointers = {}  # type: Dict[str, int]
        try:
            if named:
                names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
                context.set_input_shape(input_name, tuple(x.shape))
                for name in names:
                    shape = tuple(context.get_tensor_shape(name))
                    dtype = trt.nptype(engine.get_tensor_dtype(name))
                    pointers[name] = cuda.malloc(int(np.prod(shape)) * np.dtype(dtype).itemsize)
                    context.set_tensor_address(name, pointers[name])
                out_shape = tuple(context.get_tensor_shape(output_name))
                out_type = trt.nptype(engine.get_tensor_dtype(output_name))
                cuda.to_device(pointers[input_name], np.ascontiguousarray(x, np.float32))
                if not context.execute_async_v3(0):
                    raise DeviceCheckError("TensorRT execution failed")
            else:
                names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
                index = {n: i for i, n in enumerate(names)}
                context.set_binding_shape(index[input_name], tuple(x.shape))
                for name in names:
                    shape = tuple(context.get_binding_shape(index[name]))
                    dtype = trt.nptype(engine.get_binding_dtype(index[name]))
                    pointers[name] = cuda.malloc(int(np.prod(shape)) * np.dtype(dtype).itemsize)
                out_shape = tuple(context.get_binding_shape(index[output_name]))
                out_type = trt.nptype(engine.get_binding_dtype(index[output_name]))
                cuda.to_device(pointers[input_name], np.ascontiguousarray(x, np.float32))
                if not context.execute_v2([pointers[n] for n in names]):
                    raise DeviceCheckError("TensorRT execution failed")
            cuda.sync()
            host = np.empty(out_shape, dtype=out_type)
            cuda.to_host(host, pointers[output_name])
            outputs.append(host.astype(np.float32))
        finally:
            for ptr in pointers.values():
                cuda.free(ptr)
    return outputs


# --- the check --------------------------------------------------------------------------

def compare_objects(expected, got, tolerance, pre_cluster, iou=0.9):
    # type: (List[NDArray[Any]], List[NDArray[Any]], float, float, float) -> Dict[str, Any]
    """Agreement of the device's objects with the expected ones over all images."""
    matched = missing = extra = 0
    diff = 0.0
    for ref, new in zip(expected, got):
        m, mi, ex, d = match_boxes(xyxy(ref), ref[:, 5], ref[:, 0], xyxy(new), new[:, 5],
                                   new[:, 0], iou=iou, borderline=pre_cluster + tolerance)
        matched, missing, extra, diff = matched + m, missing + mi, extra + ex, max(diff, d)
    total = matched + missing + extra
    return {"matched": matched, "missing": missing, "extra": extra,
            "agreement": 1.0 if total == 0 else matched / float(total),
            "max_score_diff": diff}


def main(argv=None):
    # type: (Optional[Sequence[str]]) -> int
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=os.path.dirname(os.path.abspath(__file__)),
                        help="bundle folder (default: this script's folder)")
    parser.add_argument("--engine", help="TensorRT engine (default: manifest.json's)")
    parser.add_argument("--trtexec-output", nargs="+", metavar="JSON",
                        help="trtexec --exportOutput files, one per reference input, in order")
    parser.add_argument("--min-agreement", type=float, default=0.9)
    parser.add_argument("--skip-files", action="store_true", help="do not check checksums")
    args = parser.parse_args(argv)
    folder = args.bundle
    failures = []  # type: List[str]
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
        files = manifest["files"]
        precision = manifest["target"]["precision"]
        if not isinstance(files, dict):
            raise TypeError("'files' must map paths to sha256")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"FAIL: {os.path.join(folder, MANIFEST)}: unreadable manifest ({exc})")
        return 1
    if not args.skip_files:
        missing, changed = check_files(folder, files)
        for label, items in (("missing", missing), ("changed", changed)):
            if items:
                failures.append("files {}: {}".format(label, ", ".join(items)))
        record = manifest.get("parser", {}).get("library", "") + LIBRARY_RECORD_SUFFIX
        if os.path.isfile(os.path.join(folder, record)):
            failures.extend(check_build_record(folder, record, files))
        key = os.environ.get(SIGNING_KEY_ENV)
        sig = manifest.get(SIGNATURE_FIELD)
        if key or sig:
            ok = (key and isinstance(sig, dict) and sig.get("alg") == "hmac-sha256"
                  and hmac.compare_digest(str(sig.get("value")),
                                          hmac_signature(manifest, key.encode())))
            if not ok:
                failures.append("signature: manifest.json is unsigned, signed with another key"
                                f" or altered (set {SIGNING_KEY_ENV} to the signing key)")
    try:
        ref, inputs = load_device_reference(folder)
        engine = args.engine or os.path.join(folder, manifest["engine"]["file"])
        in_name, out_name = ref["input"]["name"], ref["output"]["name"]
        if args.trtexec_output:
            if len(args.trtexec_output) != len(inputs):
                raise DeviceCheckError(f"{len(args.trtexec_output)} trtexec outputs for "
                                       f"{len(inputs)} reference inputs")
            outputs = [read_trtexec_output(p, out_name) for p in args.trtexec_output]
            backend = "trtexec output files"
        elif not os.path.isfile(engine):
            raise DeviceCheckError(f"{engine} not found; run ./build_engine.sh first")
        else:
            try:
                import tensorrt  # noqa: F401
                outputs = run_tensorrt(engine, inputs, in_name, out_name)
                backend = "TensorRT Python API"
            except ImportError:
                work = tempfile.mkdtemp(prefix="detforge-verify-")
                try:
                    outputs = run_trtexec(engine, inputs, in_name, out_name, work)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                backend = "trtexec"
    except DeviceCheckError as exc:
        failures.append(f"engine: {exc}")
        outputs, backend = [], ""
    if outputs:
        h, w = ref["input"]["shape"][1:]
        thr = ref["thresholds"]
        got = [nvinfer_objects(o.reshape(-1, 6), w, h, thr) for o in outputs]
        want = [np.asarray(i["objects"], np.float32).reshape(-1, 6) for i in ref["images"]]
        tol = SCORE_TOLERANCE.get(precision, 0.05)
        cmp = compare_objects(want, got, tol, float(thr["pre_cluster"]))
        line = ("box agreement {:.3f} (need >= {}): {} matched, {} missing, {} extra at IoU >= "
                "0.9; max score difference {:.4f}; {} images via {}".format(
                    cmp["agreement"], args.min_agreement, cmp["matched"], cmp["missing"],
                    cmp["extra"], cmp["max_score_diff"], len(outputs), backend))
        print(("[ok] " if cmp["agreement"] >= args.min_agreement else "[FAIL] ") + line)
        if cmp["agreement"] < args.min_agreement:
            failures.append(line)
    for f in failures:
        print("[FAIL] " + f)
    print("PASS" if not failures else "FAIL")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
