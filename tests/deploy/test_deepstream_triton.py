"""DeepStream and Triton configs: parsed back and compared with the model metadata."""

from __future__ import annotations

import configparser
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from detforge.core.errors import ConfigError
from detforge.deploy import deepstream, triton
from detforge.deploy.bundle import bundle_model
from detforge.deploy.targets import TARGETS
from detforge.export.engine_plan import engine_file_name
from detforge.runtime.metadata import LetterboxSpec, ModelMeta, NormalizeSpec, read_onnx_meta
from detforge.testing import tiny_onnx_model

CLASSES = ("car", "person", "bike")
IMGSZ = (64, 96)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle per target of a tiny raw-layout model (FP16 where INT8 lacks data)."""
    root = tmp_path_factory.mktemp("ds-triton")
    model = tiny_onnx_model(root / "tiny.onnx", classes=CLASSES, imgsz=IMGSZ)
    bundle_model(model, targets=list(TARGETS), out=root / "out", conf=0.3, iou=0.5,
                 max_det=100, reference_images=1)
    return root / "out"


def _ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    assert parser.read(path) == [str(path)]
    return parser


def _manifest(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return data


@pytest.mark.parametrize("target", list(TARGETS), ids=list(TARGETS))
def test_nvinfer_values_equal_metadata(bundles: Path, target: str) -> None:
    folder = bundles / target
    manifest = _manifest(folder)
    meta = read_onnx_meta(folder / manifest["model"]["file"])
    prop = _ini(folder / "config_infer_primary.txt")["property"]
    attrs = _ini(folder / "config_infer_primary.txt")["class-attrs-all"]
    t = manifest["target"]
    assert meta.layout == "deepstream" and meta.classes == CLASSES
    assert float(prop["net-scale-factor"]) == meta.normalize.scale / meta.normalize.std[0]
    assert "offsets" not in prop  # zero mean
    assert prop["model-color-format"] == "0"  # RGB
    assert (folder / prop["onnx-file"]).is_file()
    assert prop["model-engine-file"] == engine_file_name(t["batch"], t["precision"])
    assert prop["model-engine-file"] == manifest["engine"]["file"]
    labels = (folder / prop["labelfile-path"]).read_text().splitlines()
    assert tuple(labels) == meta.classes
    assert int(prop["batch-size"]) == t["batch"] == TARGETS[target].batch
    assert int(prop["network-mode"]) == {"fp32": 0, "int8": 1, "fp16": 2}[t["precision"]]
    assert int(prop["num-detected-classes"]) == len(meta.classes)
    assert prop["cluster-mode"] == "2"  # NMS for the deepstream layout
    assert prop["maintain-aspect-ratio"] == "1" and prop["symmetric-padding"] == "1"
    assert prop["infer-dims"] == f"3;{meta.imgsz[0]};{meta.imgsz[1]}"
    assert prop["parse-bbox-func-name"] == "NvDsInferParseCustomDetforge"
    lib = folder / prop["custom-lib-path"]  # what the shipped Makefile builds
    assert (lib.parent / "Makefile").is_file() and lib.name in (lib.parent / "Makefile").read_text()
    assert "engine-create-func-name" not in prop
    assert prop["scaling-filter"] == "1" and prop["crop-objects-to-roi-boundary"] == "1"
    for key in ("interval", "network-type"):
        assert prop[key] == "0"
    assert prop["gie-unique-id"] == "1" and prop["process-mode"] == "1"
    assert float(attrs["pre-cluster-threshold"]) == manifest["thresholds"]["conf"] == 0.3
    assert float(attrs["nms-iou-threshold"]) == manifest["thresholds"]["iou"] == 0.5
    assert int(attrs["topk"]) == manifest["thresholds"]["max_det"] == 100


@pytest.mark.parametrize(("update", "key", "value"), [
    ({"letterbox": LetterboxSpec(center=False)}, "symmetric-padding", "0"),
    ({"letterbox": LetterboxSpec(scale_fill=True)}, "maintain-aspect-ratio", "0"),
    ({"color": "BGR"}, "model-color-format", "1"),
    ({"layout": "end2end"}, "cluster-mode", "4"),
    ({"layout": "raw"}, "cluster-mode", "2"),
    ({"normalize": NormalizeSpec(scale=1 / 255, std=(0.5, 0.5, 0.5))}, "net-scale-factor",
     str(2 / 255)),
    ({"normalize": NormalizeSpec(mean=(0.5, 0.25, 0.0))}, "offsets", "127.5;63.75;0"),
    ({"imgsz": (384, 640)}, "infer-dims", "3;384;640"),
], ids=["corner-pad", "stretch", "bgr", "end2end", "raw", "std", "mean", "rect"])
def test_nvinfer_derivation(update: dict[str, Any], key: str, value: str) -> None:
    meta = ModelMeta(classes=("a", "b"), imgsz=(64, 64)).model_copy(update=update)
    opts = deepstream.InferOptions("m.onnx", "e.engine", "labels.txt", 1, "fp16", 0.25, 0.45, 300)
    assert deepstream.nvinfer_config(meta, opts)["property"][key] == value


@pytest.mark.parametrize(("update", "precision", "match"), [
    ({"layout": "rtdetr-normalized"}, "fp16", "rtdetr-normalized"),
    ({"normalize": NormalizeSpec(std=(0.2, 0.3, 0.4))}, "fp16", "std"),
    ({}, "bf16", "unknown precision"),
], ids=["rtdetr", "per-channel-std", "precision"])
def test_nvinfer_refuses(update: dict[str, Any], precision: str, match: str) -> None:
    meta = ModelMeta(classes=("a",)).model_copy(update=update)
    opts = deepstream.InferOptions("m.onnx", "e.engine", "l.txt", 1, precision, 0.25, 0.45, 300)
    with pytest.raises(ConfigError, match=match):
        deepstream.nvinfer_config(meta, opts)


@pytest.mark.parametrize("target", ["orin-nano", "t4", "a100"], ids=str)
def test_app_config_sections(bundles: Path, target: str) -> None:
    folder = bundles / target
    app = _ini(folder / "deepstream_app_config.txt")
    batch = _manifest(folder)["target"]["batch"]
    assert {"application", "tiled-display", "source0", "sink0", "osd", "streammux",
            "primary-gie", "tracker"} <= set(app.sections())
    mux = app["streammux"]
    assert (int(mux["width"]), int(mux["height"])) == (1920, 1080)  # the source, not the model
    assert mux["enable-padding"] == "1"
    assert int(mux["batch-size"]) == batch == int(app["source0"]["num-sources"])
    tiles = app["tiled-display"]
    assert int(tiles["rows"]) * int(tiles["columns"]) >= batch
    assert int(mux["batched-push-timeout"]) == 40000 and mux["live-source"] == "0"
    assert app["source0"]["uri"].startswith("file:///")
    assert (folder / app["primary-gie"]["config-file"]).is_file()
    assert app["tracker"]["ll-lib-file"].endswith("libnvds_nvmultiobjecttracker.so")
    assert int(app["tracker"]["tracker-width"]) % 32 == 0


def test_app_config_source_size_and_live() -> None:
    meta = ModelMeta(classes=("a",), imgsz=(384, 640))
    app = deepstream.app_config(meta, batch=2, source_size=(1280, 720), fps=30,
                                uri="rtsp://cam/1")
    assert app["streammux"]["width"] == "1280" and app["streammux"]["height"] == "720"
    assert app["streammux"]["live-source"] == "1" and app["source0"]["type"] == "4"
    assert app["streammux"]["batched-push-timeout"] == "33333"
    assert app["source0"]["uri"] == "rtsp://cam/1"
    for bad in ({"batch": 0}, {"batch": 1, "source_size": (0, 720)},
                {"batch": 1, "uri": "http://cam/1"}):
        with pytest.raises(ConfigError):
            deepstream.app_config(meta, **bad)  # type: ignore[arg-type]


def _pbtxt(path: Path) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("target", list(TARGETS), ids=list(TARGETS))
def test_triton_configs_parse(bundles: Path, target: str) -> None:
    folder = bundles / target
    manifest = _manifest(folder)
    name = manifest["triton"]["name"]
    batch = manifest["target"]["batch"]
    cfg = _pbtxt(folder / "model_repository" / name / "config.pbtxt")
    assert cfg.name == name and cfg.platform == "onnxruntime_onnx"
    trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt"
    assert trt.parameters["precision_mode"] == manifest["target"]["precision"].upper()
    assert trt.parameters["trt_profile_max_shapes"] == f"input:{batch}x3x{IMGSZ[0]}x{IMGSZ[1]}"
    assert (folder / "model_repository" / name / "1" / "model.onnx").is_file()
    assert cfg.max_batch_size == batch
    assert cfg.input[0].name == "input" and list(cfg.input[0].dims) == [3, *IMGSZ]
    assert cfg.output[0].name == "output" and list(cfg.output[0].dims) == [-1, 6]
    assert all(1 < b <= batch for b in cfg.dynamic_batching.preferred_batch_size)
    assert cfg.instance_group[0].count == 1
    # Triton refuses to start on a model folder without a version folder: none is shipped
    for model_dir in (folder / "model_repository").iterdir():
        assert [v for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit()], model_dir
    plan_model = manifest["triton"]["plan_model"]
    assert not (folder / "model_repository" / plan_model).exists()
    plan = _pbtxt(folder / manifest["triton"]["plan_config"])
    assert plan.platform == "tensorrt_plan" and plan.name == plan_model
    assert not plan.default_model_filename  # an unlisted GPU must not load another's plan
    assert plan.max_batch_size == max(t.batch for t in TARGETS.values())
    ccs = {"{}.{}".format(*t.compute_capability) for t in TARGETS.values()}
    assert set(plan.cc_model_filenames) == ccs
    mine = plan.cc_model_filenames[manifest["target"]["compute_capability"]]
    script = (folder / "build_engine.sh").read_text()
    if mine.startswith(f"{target}_"):  # this target's plan: its build script installs it
        assert f"model_repository/{plan.name}/1/{mine}" in script
        assert f"cp triton/{plan.name}/config.pbtxt model_repository/{plan.name}/" in script
        if batch < plan.max_batch_size:  # built again up to Triton's max_batch_size
            assert f"--maxShapes=input:{plan.max_batch_size}x3x" in script
        paths = {d["path"] for d in manifest["device_files"]}
        assert f"model_repository/{plan.name}/1/{mine}" in paths


@pytest.mark.parametrize(("entries", "ctx"), [
    ([triton.PlanEntry("8.7", "a.plan", "orin-nano"), triton.PlanEntry("7.5", "b.plan", "t4")],
     contextlib.nullcontext()),
    ([triton.PlanEntry("8.6", "a.plan", "a10"), triton.PlanEntry("8.6", "b.plan", "a2")],
     pytest.raises(ConfigError, match="listed twice")),
    ([], pytest.raises(ConfigError, match="at least one")),
], ids=["two", "duplicate-cc", "none"])
def test_plan_config_entries(tmp_path: Path, entries: list[triton.PlanEntry],
                             ctx: contextlib.AbstractContextManager[Any]) -> None:
    model = tiny_onnx_model(tmp_path / "m.onnx")
    with ctx:
        path = tmp_path / "config.pbtxt"
        path.write_text(triton.plan_config("m_trt", model, entries, max_batch=4))
        cfg = _pbtxt(path)
        assert dict(cfg.cc_model_filenames) == {e.compute_capability: e.filename
                                                for e in entries}
        assert not cfg.default_model_filename


def test_triton_fixed_batch_model(tmp_path: Path) -> None:
    model = tiny_onnx_model(tmp_path / "m.onnx", dynamic_batch=False)
    path = tmp_path / "config.pbtxt"
    path.write_text(triton.onnx_config("fixed", model, max_batch=8, precision="int8"))
    cfg = _pbtxt(path)
    assert cfg.max_batch_size == 0
    assert list(cfg.input[0].dims) == [1, 3, 64, 64]
    assert not cfg.HasField("dynamic_batching")
    trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.parameters["precision_mode"] == "INT8"
    assert "trt_profile_min_shapes" not in trt.parameters  # a fixed shape needs no profile
    with pytest.raises(ConfigError, match="unknown precision"):
        triton.onnx_config("fixed", model, max_batch=8, precision="bf16")


@pytest.mark.parametrize(("max_batch", "sizes"), [(1, []), (2, [2]), (8, [2, 4, 8]),
                                                  (12, [2, 4, 8, 12])], ids=str)
def test_preferred_batch_sizes(max_batch: int, sizes: list[int]) -> None:
    assert triton.preferred_batch_sizes(max_batch) == sizes


def test_triton_bad_name(tmp_path: Path) -> None:
    model = tiny_onnx_model(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="model name"):
        triton.onnx_config("bad name", model, max_batch=1)


def _replace(file: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / file
        text = path.read_text()
        assert old in text, (file, old)
        path.write_text(text.replace(old, new, 1))
    return edit


INFER, APP = "config_infer_primary.txt", "deepstream_app_config.txt"


@pytest.mark.parametrize(("edit", "rule", "words"), [
    (_replace(INFER, "scaling-filter=1", "scaling-filter=0"), "scaling-filter", "not bilinear"),
    (_replace(INFER, "crop-objects-to-roi-boundary=1", "crop-objects-to-roi-boundary=0"),
     "crop-to-frame", "are dropped"),
    (_replace(INFER, "symmetric-padding=1", "symmetric-padding=0"), "letterbox", "centred"),
    (_replace(INFER, "maintain-aspect-ratio=1", "maintain-aspect-ratio=0"), "letterbox", ""),
    (_replace(INFER, "net-scale-factor=", "net-scale-factor=1\n#"), "normalisation",
     "net-scale-factor=1"),
    (_replace(INFER, "model-color-format=0", "model-color-format=1"), "normalisation", "RGB"),
    (_replace(INFER, "infer-dims=3;64;96", "infer-dims=3;64;64"), "infer-dims", "64x96"),
    (_replace(INFER, "cluster-mode=2", "cluster-mode=4"), "clustering", "cluster-mode=4"),
    (_replace(INFER, "pre-cluster-threshold=0.3", "pre-cluster-threshold=0.6"), "clustering",
     "differ from the reference"),
    (_replace(INFER, "model-engine-file=", "model-engine-file=other_"), "model-files",
     "is not the engine"),
    (_replace(INFER, "custom-lib-path=", "custom-lib-path=/usr/lib/"),
     "relative-paths,parser-shipped", "custom-lib-path=/usr/lib/"),
    (_replace(INFER, "parse-bbox-func-name=NvDsInferParseCustomDetforge",
              "parse-bbox-func-name=NvDsInferParseYolo"), "parser-shipped", "not exported"),
    (_replace(INFER, "labelfile-path=labels.txt", "labelfile-path=../../labels.txt"),
     "relative-paths", "leaves the bundle folder"),
    (_replace(APP, "enable-padding=1", "enable-padding=0\n#"), "", ""),  # same aspect: fine
    (_replace(APP, "width=1920\nheight=1080\nenable-padding=1",
              "width=96\nheight=64\nenable-padding=0"), "streammux-aspect", "stretches"),
    (_replace(APP, "live-source=0", "live-source=0\n#"), "", ""),
    (_replace(APP, "type=3", "type=4"), "live-source", "live-source=1"),
], ids=["scaling-filter", "crop", "corner-padding", "stretch-in-nvinfer", "scale", "bgr",
        "infer-dims", "cluster-mode", "threshold", "engine-name", "absolute-lib",
        "parse-function", "path-escape", "padding-off-same-aspect", "streammux-stretch",
        "noop", "rtsp-type-not-live"])
def test_config_rules(bundles: Path, tmp_path: Path, edit: Callable[[Path], None], rule: str,
                      words: str) -> None:
    import shutil

    from detforge.deploy.ds_rules import check_configs
    from detforge.deploy.manifest import read_manifest

    folder = Path(shutil.copytree(bundles / "t4", tmp_path / "t4"))
    manifest, _ = read_manifest(folder)
    meta = ModelMeta.model_validate(manifest.model.meta)
    assert check_configs(folder, manifest, meta)[1] == []  # as shipped
    edit(folder)
    found = check_configs(folder, manifest, meta)[1]
    assert [v.rule.id for v in found] == (rule.split(",") if rule else []), [str(v) for v in found]
    assert all(words in str(v) for v in found)
    assert all(v.rule.source for v in found)  # every rule cites where DeepStream does it
