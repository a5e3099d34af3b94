"""The rules deepstream-app and nvinfer apply to a bundle's configs, with their sources.

DeepStream does not run here, so what it does with each key is encoded from its own
sources (the ``sources/`` folder every DeepStream install ships: gst-nvinfer, nvdsinfer,
apps-common; cited from DeepStream 6.2, mirrored at github.com/hiennguyen9874/
deepstream-sources) and its documentation. :func:`check_configs` reads the configs as
they are in the bundle (a user may have edited deepstream_app_config.txt) and lists every
rule they break; ``deploy verify`` fails on any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detforge.core.errors import ConfigError
from detforge.deploy.deepstream import CLUSTER_MODES
from detforge.deploy.dsconfig import APP_CONFIG, KeyFile, Pipeline, read_keyfile, read_pipeline
from detforge.deploy.manifest import BundleManifest
from detforge.runtime.metadata import ModelMeta

__all__ = ["RULES", "Rule", "Violation", "check_configs"]

_DS = "DeepStream 6.2 sources/"
_NVINFER = _DS + "gst-plugins/gst-nvinfer/"
_APP = _DS + "apps/apps-common/src/deepstream_config_file_parser.c"
_DS_ROOT = "/opt/nvidia/deepstream/"


@dataclass(frozen=True)
class Rule:
    """One consumer rule: what DeepStream does, and where that is written."""

    id: str
    consumer: str
    rule: str
    source: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("relative-paths", "nvinfer, deepstream-app",
         "A relative path resolves against the folder of the config that names it; an "
         "absolute one is used as is. Bundle files must be named relatively (the bundle "
         "moves); only DeepStream's own install may be absolute.",
         _NVINFER + "gstnvinfer_property_parser.cpp get_absolute_file_path; "
         + _APP + " get_absolute_file_path and file:// uri handling"),
    Rule("parser-shipped", "nvinfer",
         "custom-lib-path is dlopen()ed and parse-bbox-func-name looked up in it; a missing "
         "library or symbol stops the pipeline.",
         _DS + "includes/nvdsinfer_custom_impl.h (custom parsing function)"),
    Rule("streammux-aspect", "nvstreammux",
         "The muxer scales every source to width x height; enable-padding=1 keeps the aspect "
         "ratio with black bands, 0 stretches, and nvinfer's maintain-aspect-ratio cannot "
         "undo a stretch.",
         "DeepStream plugin guide, Gst-nvstreammux (width, height, enable-padding)"),
    Rule("live-source", "nvstreammux",
         "live-source=1 for live sources (RTSP, cameras): the muxer then times batches by "
         "the clock instead of waiting for every stream.",
         "DeepStream plugin guide, Gst-nvstreammux (live-source); " + _APP),
    Rule("batch-size", "nvstreammux, nvinfer",
         "nvinfer runs batches of its batch-size; the muxer's batch-size should equal it, "
         "and the engine must accept it.",
         _APP + " (streammux batch-size); " + _NVINFER + "gstnvinfer_property_parser.cpp"),
    Rule("letterbox", "nvinfer",
         "maintain-aspect-ratio=1 scales keeping the aspect ratio; symmetric-padding=1 "
         "centres the picture (otherwise padding is right and bottom); padding is black.",
         _NVINFER + "gstnvinfer.cpp get_converted_buffer"),
    Rule("normalisation", "nvinfer",
         "The network input is net-scale-factor * (x - offsets[c]) on 0-255 pixels in "
         "model-color-format order (0 RGB, 1 BGR).",
         "DeepStream plugin guide, Gst-nvinfer (net-scale-factor, offsets, model-color-format)"),
    Rule("infer-dims", "nvinfer", "infer-dims is C;H;W of the network input.",
         _NVINFER + "gstnvinfer_property_parser.cpp (infer-dims)"),
    Rule("clustering", "nvinfer",
         "After the parser, objects below pre-cluster-threshold or with a class id >= "
         "num-detected-classes are dropped; cluster-mode=2 runs NMS per class "
         "(nms-iou-threshold) and keeps topk per class; cluster-mode=4 clusters nothing and "
         "keeps the topk best per class (fillUnclusteredOutput). The layout decides: NMS for "
         "raw/deepstream rows, none for end2end (NMS in the graph) and rtdetr (none needed).",
         _DS + "libs/nvdsinfer/nvdsinfer_context_impl_output_parsing.cpp"),
    Rule("crop-to-frame", "nvinfer",
         "A box mapped back to the frame that leaves it at the top or bottom is dropped "
         "unless crop-objects-to-roi-boundary=1, which clips it.",
         _NVINFER + "gstnvinfer_meta_utils.cpp attach_metadata_detector"),
    Rule("scaling-filter", "nvinfer",
         "scaling-filter defaults to NvBufSurfTransformInter_Default, nearest neighbour on "
         "GPU and VIC; 1 is bilinear, as the workstation resizes.",
         _DS + "includes/nvbufsurftransform.h; " + _NVINFER + "gstnvinfer.cpp"),
    Rule("model-files", "nvinfer",
         "model-engine-file is loaded when it exists (else nvinfer builds its own from "
         "onnx-file, dropping a Q/DQ INT8 model to FP16); labelfile-path has one class per "
         "line, num-detected-classes of them.",
         _NVINFER + "gstnvinfer_property_parser.cpp"),
)}


@dataclass(frozen=True)
class Violation:
    """A rule a config breaks, with what is wrong and the fix."""

    rule: Rule
    message: str

    def __str__(self) -> str:
        return f"{self.rule.id}: {self.message}"


def _path_value(folder: Path, config: Path, key: str, value: str) -> str | None:
    """What is wrong with a path value, or None."""
    if value.startswith("/"):
        if value.startswith(_DS_ROOT):
            return None
        return (f"{config.name}: {key}={value} is absolute outside DeepStream's install; name "
                f"the bundle file relative to {config.name}")
    target = (config.parent / value).resolve()
    if not target.is_relative_to(folder.resolve()):
        return f"{config.name}: {key}={value} leaves the bundle folder"
    return None


def _paths(folder: Path, pipe: Pipeline) -> list[str]:
    problems = []
    for key in ("onnx-file", "model-engine-file", "labelfile-path", "custom-lib-path",
                "int8-calib-file", "mean-file"):
        value = pipe.infer.get("property", key)
        if value:
            problems.append(_path_value(folder, pipe.infer.path, key, value.strip()))
    return [p for p in problems if p] + _app_paths(folder, pipe.app)


def _app_paths(folder: Path, app: KeyFile) -> list[str]:
    problems = []
    for group, values in app.groups.items():
        for key, value in values.items():
            v = value.strip()
            if key == "uri" and v.startswith("file://"):
                problems.append(_path_value(folder, app.path, f"[{group}] uri", v[7:]))
            elif key in ("config-file", "ll-lib-file", "ll-config-file", "labelfile-path",
                         "model-engine-file"):
                problems.append(_path_value(folder, app.path, f"[{group}] {key}", v))
    return [p for p in problems if p]


def _parser(folder: Path, pipe: Pipeline, manifest: BundleManifest) -> list[str]:
    lib = (pipe.infer.get("property", "custom-lib-path") or "").strip()
    func = (pipe.infer.get("property", "parse-bbox-func-name") or "").strip()
    src = folder / manifest.parser.source_dir
    if lib != manifest.parser.library:
        return [f"custom-lib-path={lib or '(unset)'} is not the bundle's parser "
                f"{manifest.parser.library}; set it back"]
    makefile, cpp = src / "Makefile", sorted(src.glob("*.cpp"))
    if not makefile.is_file() or not cpp:
        return [f"{manifest.parser.source_dir}/ (parser source and Makefile) is missing, so "
                f"{lib} cannot be built; re-copy the bundle"]
    exported = any(re.search(rf'extern\s+"C"\s+bool\s+{re.escape(func)}\s*\(',
                             p.read_text(encoding="utf-8", errors="replace")) for p in cpp)
    if not func or not exported:
        return [f"parse-bbox-func-name={func or '(unset)'} is not exported by the shipped "
                f"parser; set it to {manifest.parser.function}"]
    return []


def _streammux(pipe: Pipeline, manifest: BundleManifest) -> list[str]:
    sw, sh = manifest.source.size
    mw, mh = pipe.mux_size
    if mw < 1 or mh < 1:
        return [f"streammux width={mw} height={mh}; set them to the source size {sw}x{sh}"]
    if pipe.mux_padding or abs(mw / mh - sw / sh) <= 0.01 * (sw / sh):
        return []
    return [f"streammux {mw}x{mh} with enable-padding=0 stretches {sw}x{sh} sources "
            f"(aspect {sw / sh:.2f} -> {mw / mh:.2f}) before nvinfer, whose "
            f"maintain-aspect-ratio cannot undo it; set width={sw} height={sh} "
            f"(or enable-padding=1)"]


def _live(pipe: Pipeline) -> list[str]:
    live = [g for g, v in pipe.app.groups.items() if g.startswith("source")
            and v.get("enable", "1").strip() != "0"
            and (v.get("uri", "").strip().startswith(("rtsp://", "rtsps://"))
                 or v.get("type", "").strip() in ("1", "4", "5"))]
    if live and not pipe.live_source:
        return [f"[{live[0]}] is a live source but streammux live-source=0; set live-source=1"]
    return []


def _nvinfer(pipe: Pipeline, manifest: BundleManifest, meta: ModelMeta) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    h, w = meta.imgsz
    if pipe.net_size != (w, h):
        out.append(("infer-dims", f"infer-dims is {pipe.net_size[1]}x{pipe.net_size[0]} (HxW), "
                                  f"the model takes {h}x{w}; set infer-dims=3;{h};{w}"))
    lb = meta.letterbox
    if pipe.maintain_aspect == lb.scale_fill or (pipe.maintain_aspect and
                                                 pipe.symmetric != lb.center):
        trained = "a stretch" if lb.scale_fill else "a centred" if lb.center else "a corner"
        out.append(("letterbox", f"maintain-aspect-ratio={int(pipe.maintain_aspect)} "
                                 f"symmetric-padding={int(pipe.symmetric)} but the model was "
                                 f"trained with {trained} letterbox"))
    norm = meta.normalize
    want_scale = norm.scale / norm.std[0]
    want_off = tuple(m / norm.scale for m in norm.mean)
    if not _close(pipe.scale, want_scale) or not all(
            _close(a, b, 1e-6) for a, b in zip(pipe.offsets, want_off, strict=True)):
        have = ";".join(f"{o:g}" for o in pipe.offsets)
        need = ";".join(f"{o:g}" for o in want_off)
        out.append(("normalisation", f"net-scale-factor={pipe.scale:g} offsets={have}, the "
                                     f"model needs {want_scale:g} and {need}"))
    if pipe.bgr != (meta.color == "BGR"):
        out.append(("normalisation", f"model-color-format={int(pipe.bgr)} but the model takes "
                                     f"{meta.color}"))
    batch = pipe.infer.integer("property", "batch-size", 1)
    if pipe.mux_batch != batch or batch > manifest.engine.batch[2]:
        out.append(("batch-size", f"streammux batch-size={pipe.mux_batch}, nvinfer batch-size="
                                  f"{batch}, engine batch <= {manifest.engine.batch[2]}; set "
                                  f"both to {manifest.target.batch}"))
    t = manifest.thresholds
    mode = CLUSTER_MODES.get(meta.layout, 2)
    if pipe.cluster_mode != mode or pipe.num_classes != len(meta.classes):
        out.append(("clustering", f"cluster-mode={pipe.cluster_mode} num-detected-classes="
                                  f"{pipe.num_classes}; the bundle's {meta.layout} model needs "
                                  f"cluster-mode={mode} and {len(meta.classes)} classes"))
    if (not _close(pipe.pre_cluster, t.conf) or pipe.topk != t.max_det
            or (mode == 2 and not _close(pipe.nms_iou, t.iou))):
        out.append(("clustering", f"pre-cluster-threshold={pipe.pre_cluster:g} nms-iou-threshold"
                                  f"={pipe.nms_iou:g} topk={pipe.topk} differ from the reference "
                                  f"({t.conf:g}, {t.iou:g}, {t.max_det})"))
    if not pipe.crop_to_frame:
        out.append(("crop-to-frame", "crop-objects-to-roi-boundary is off: boxes touching the "
                                     "frame's top or bottom edge are dropped; set it to 1"))
    if pipe.scaling_filter != 1:
        out.append(("scaling-filter", f"scaling-filter={pipe.scaling_filter} is not bilinear "
                                      f"(1), which the workstation uses; set scaling-filter=1"))
    engine = (pipe.infer.get("property", "model-engine-file") or "").strip()
    if PurePosixPath(engine).name != manifest.engine.file:
        out.append(("model-files", f"model-engine-file={engine} is not the engine "
                                   f"build_engine.sh makes ({manifest.engine.file})"))
    return out


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def check_configs(folder: Path, manifest: BundleManifest,
                  meta: ModelMeta) -> tuple[Pipeline | None, list[Violation]]:
    """Read the bundle's DeepStream configs and list the rules they break.

    Returns:
        The pipeline (None when the configs cannot be read) and the violations.
    """
    try:
        pipe = read_pipeline(folder)
    except ConfigError as exc:
        found = []
        try:
            app = read_keyfile(folder / APP_CONFIG)
            found = [Violation(RULES["relative-paths"], m) for m in _app_paths(folder, app)]
        except ConfigError:
            pass
        return None, found or [Violation(RULES["model-files"], str(exc))]
    found = [Violation(RULES["relative-paths"], m) for m in _paths(folder, pipe)]
    found += [Violation(RULES["parser-shipped"], m) for m in _parser(folder, pipe, manifest)]
    found += [Violation(RULES["streammux-aspect"], m) for m in _streammux(pipe, manifest)]
    found += [Violation(RULES["live-source"], m) for m in _live(pipe)]
    found += [Violation(RULES[r], m) for r, m in _nvinfer(pipe, manifest, meta)]
    return pipe, found
