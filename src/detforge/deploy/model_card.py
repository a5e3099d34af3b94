"""Model cards: what a registered model version is and where it came from.

A card is built from the model file (checksum, size), its metadata (ONNX: the detforge
``metadata_props``; ``.pt``: the ``run.json`` of the training run that wrote it) and,
optionally, a deployment bundle (each target's ``manifest.json``: target, precision and
the sha256 of every file). :func:`card_markdown` renders it for the registry.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from detforge.core.errors import DetforgeError

__all__ = ["ModelCard", "RegistryError", "card_markdown", "collect_card", "key_metrics"]


class RegistryError(DetforgeError):
    """A registered model, version, alias or the files given to register are wrong."""

    exit_code = 2


_KEY_METRICS = ("mAP50-95", "map50_95", "map", "mAP50", "map50", "precision", "recall")
_MODEL_SUFFIXES = (".onnx", ".pt")


@dataclass(frozen=True)
class ModelCard:
    """What a registered version is and where it came from.

    Attributes:
        name: Registered model name.
        model_file: The file registered (absolute path at registration time).
        format: ``onnx`` or ``pt``.
        sha256: Checksum of the model file.
        size_bytes: Size of the model file.
        classes: Class names, when known.
        imgsz: Network input (height, width), when known.
        layout: ONNX output layout, when known.
        precision: ``fp32``, ``fp16`` or ``int8``, when known.
        dataset_version: Content hash of the training dataset, when known.
        training_run: The training run (detforge run id or MLflow run id), when known.
        metrics: Validation metrics recorded with the model.
        targets: Deployment targets of the bundle.
        bundle: Per target: ``precision``, ``manifest_sha256``, ``files`` (path -> sha256),
            ``model_sha256`` (the bundle's ONNX) and ``fidelity`` (hops, as the manifest has
            them).
        bundle_dirs: The bundle target folders logged with the model (not serialised).
        version: The registered version (None before registration).
        mlflow_run_id: The MLflow run holding the artifacts.
        source: Artifact URI of the model file in the store.
    """

    name: str
    model_file: str
    format: str
    sha256: str
    size_bytes: int
    classes: tuple[str, ...] | None = None
    imgsz: tuple[int, int] | None = None
    layout: str | None = None
    precision: str | None = None
    dataset_version: str | None = None
    training_run: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    bundle: dict[str, dict[str, Any]] = field(default_factory=dict)
    bundle_dirs: tuple[Path, ...] = ()
    version: int | None = None
    mlflow_run_id: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without ``bundle_dirs``)."""
        out = asdict(self)
        out.pop("bundle_dirs")
        return out

    def numeric_metrics(self) -> dict[str, float]:
        """Scalar metrics, nested keys joined with ``.``, names made MLflow-safe."""
        return {re.sub(r"[^\w\-./ ]", "_", k): v for k, v in _flat_numbers(self.metrics).items()}

    def tags(self) -> dict[str, str]:
        """Searchable MLflow version tags (the full card is stored separately)."""
        tags = {"detforge.format": self.format, "detforge.sha256": self.sha256,
                "dataset_version": str(self.dataset_version),
                "training_run": str(self.training_run),
                "targets": ",".join(self.targets)}
        if self.precision:
            tags["precision"] = self.precision
        tags.update({f"metric.{k}": f"{v:.6g}" for k, v in self.numeric_metrics().items()})
        for target, info in self.bundle.items():
            tags[f"bundle.{target}.manifest_sha256"] = str(info.get("manifest_sha256"))
        return tags

    def with_version(self, version: int, *, run_id: str, source: str) -> ModelCard:
        """A copy with the registration fields filled in."""
        return replace(self, version=version, mlflow_run_id=run_id, source=source)


def _flat_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_flat_numbers(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool) \
            and math.isfinite(float(data)):
        out[prefix[:-1]] = float(data)
    return out


def key_metrics(metrics: dict[str, Any], limit: int = 3) -> dict[str, float]:
    """The few metrics worth a column: mAP50-95, mAP50, precision, recall, else the first ones.

    Args:
        metrics: A card's metrics (nested dicts allowed).
        limit: Most metrics returned.

    Returns:
        Name -> value, best-known names first.
    """
    flat = _flat_numbers(metrics)
    ranked = sorted(flat, key=lambda k: (_KEY_METRICS.index(k) if k in _KEY_METRICS
                                         else len(_KEY_METRICS) + ("map" not in k.lower())))
    return {k: flat[k] for k in ranked[:limit]}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pt_lineage(weights: Path) -> dict[str, Any]:
    """Classes, dataset version, run and metrics from the training run that wrote ``weights``."""
    from detforge.export.onnx_export import lineage_for

    lineage = lineage_for(weights)
    return {"dataset_version": lineage["dataset_version"], "training_run": lineage["run_id"],
            "metrics": lineage["metrics"] or {}, "classes": lineage["classes"]}


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _onnx_lineage(model: Path) -> dict[str, Any]:
    from detforge.runtime.metadata import read_onnx_meta

    meta = read_onnx_meta(model)
    return {"classes": meta.classes, "imgsz": meta.imgsz, "layout": meta.layout,
            "precision": meta.precision, "dataset_version": meta.dataset_version,
            "training_run": meta.run_id, "metrics": dict(meta.metrics or {})}


def _bundle_manifests(bundle: Path) -> list[Path]:
    """``bundle/manifest.json``, else ``bundle/*/manifest.json`` (a multi-target bundle)."""
    if not bundle.is_dir():
        raise RegistryError(f"--bundle {bundle}: no such folder. Pass the folder written by "
                            "`detforge deploy bundle` (or one of its target folders)")
    if (bundle / "manifest.json").is_file():
        return [bundle / "manifest.json"]
    found = sorted(bundle.glob("*/manifest.json"))
    if not found:
        raise RegistryError(f"--bundle {bundle}: no manifest.json in it or in its sub-folders. "
                            "Write the bundle with `detforge deploy bundle MODEL --target T`")
    return found


def _read_manifest(path: Path) -> dict[str, Any]:
    """Target, precision and file checksums of one bundle manifest, read defensively."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path}: not readable JSON ({exc}). Rebuild the bundle with "
                            "`detforge deploy bundle`") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: a bundle manifest must be a JSON object, got "
                            f"{type(data).__name__}. Rebuild the bundle with `detforge deploy "
                            "bundle`")
    target = data.get("target")
    spec = _as_dict(target)
    files = data.get("files")
    files = {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}
    precision = data.get("precision") or spec.get("precision")
    model = _as_dict(data.get("model"))
    hops = data.get("fidelity")
    named = spec.get("name") if spec else target
    return {"target": str(named) if named else path.parent.name,
            "precision": str(precision) if precision else None,
            "manifest_sha256": _sha256(path), "files": files,
            "model_sha256": model.get("sha256"),
            "fidelity": [h for h in hops if isinstance(h, dict)] if isinstance(hops, list)
            else [],
            "lineage": _as_dict(data.get("lineage"))}


def collect_card(model: str | Path, *, name: str, bundle: str | Path | None = None) -> ModelCard:
    """Build the card of ``model`` from its metadata, its training run and its bundle.

    ONNX files give classes, input, layout, precision and lineage from their detforge
    metadata; ``.pt`` weights from the ``run.json`` of the run that wrote them. A bundle
    adds its targets, each target manifest's checksums and fidelity hops, and the lineage
    its manifest records where the model file has none.

    Args:
        model: ``.onnx`` or ``.pt`` file.
        name: Registered model name.
        bundle: Bundle target folder, or a folder of target folders.

    Returns:
        The card (not yet registered: ``version`` is None).

    Raises:
        RegistryError: The file is missing or not ONNX / .pt, or the bundle has no manifest.
        BackendError: An ONNX file is unreadable or carries no metadata.

    Example:
        >>> card = collect_card("best.onnx", name="ppe")  # doctest: +SKIP
        >>> card.classes  # doctest: +SKIP
        ('helmet', 'vest')
    """
    model = Path(model)
    if not model.is_file():
        raise RegistryError(f"{model}: no such model file. Pass an exported .onnx or the .pt "
                            "weights of a training run (runs/<name>/v<N>/weights/best.pt)")
    kind = model.suffix.lower()
    if kind not in _MODEL_SUFFIXES:
        raise RegistryError(f"{model}: cannot register a {kind or 'suffix-less'} file; register "
                            f"an ONNX model or PyTorch weights ({', '.join(_MODEL_SUFFIXES)}); "
                            "export one with `detforge export`")
    info = _onnx_lineage(model) if kind == ".onnx" else _pt_lineage(model)
    folder = Path(bundle) if bundle is not None else None
    bundles = [_read_manifest(p) for p in _bundle_manifests(folder)] if folder else []
    for b in bundles:  # lineage the model file lacks, from the bundle made of it
        lineage = b.pop("lineage")
        for key, src in (("dataset_version", "dataset_version"), ("training_run", "run_id"),
                         ("metrics", "metrics")):
            if not info.get(key) and lineage.get(src):
                info[key] = lineage[src]
    return ModelCard(
        name=name, model_file=str(model.resolve()), format=kind[1:], sha256=_sha256(model),
        size_bytes=model.stat().st_size, classes=info.get("classes"), imgsz=info.get("imgsz"),
        layout=info.get("layout"), precision=info.get("precision"),
        dataset_version=info.get("dataset_version"), training_run=info.get("training_run"),
        metrics=info.get("metrics") or {}, targets=tuple(b["target"] for b in bundles),
        bundle={b.pop("target"): b for b in bundles},
        bundle_dirs=tuple(p.parent for p in _bundle_manifests(folder)) if folder else ())


def card_markdown(card: ModelCard) -> str:
    """The card as Markdown (the MLflow version description).

    Args:
        card: The card.

    Returns:
        Markdown text: identity, lineage, metrics, targets and bundle checksums.
    """
    title = f"# {card.name}" + (f" v{card.version}" if card.version is not None else "")
    classes = (f"{len(card.classes)}: {', '.join(card.classes)}" if card.classes else "unknown")
    rows = [("model", f"`{Path(card.model_file).name}` ({card.format}, "
                      f"{card.size_bytes / 1e6:.2f} MB)"),
            ("sha256", f"`{card.sha256}`"), ("classes", classes),
            ("input", f"{card.imgsz[0]}x{card.imgsz[1]} (HxW)" if card.imgsz else "unknown"),
            ("layout / precision", f"{card.layout or 'unknown'} / {card.precision or 'unknown'}"),
            ("dataset version", f"`{card.dataset_version}`" if card.dataset_version else "unknown"),
            ("training run", f"`{card.training_run}`" if card.training_run else "unknown"),
            ("registered from", f"`{card.model_file}`")]
    if card.mlflow_run_id:
        rows.append(("MLflow run", f"`{card.mlflow_run_id}`"))
    lines = [title, "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "## Metrics", ""]
    flat = _flat_numbers(card.metrics)
    if flat:
        lines += ["| metric | value |", "|---|---|",
                  *(f"| {k} | {v:.4f} |" for k, v in flat.items())]
    else:
        lines.append("No metrics were recorded with this model.")
    lines += ["", "## Targets", ""]
    if not card.bundle:
        lines.append("No deployment bundle was registered with this version.")
    for target, info in card.bundle.items():
        model_sha = info.get("model_sha256")
        same = " (the registered file)" if model_sha == card.sha256 else ""
        lines += [f"### {target}", "",
                  f"precision {info.get('precision') or 'unknown'}; manifest.json sha256 "
                  f"`{info.get('manifest_sha256')}`; bundle model sha256 "
                  f"`{model_sha or 'unknown'}`{same}", ""]
        for hop in info.get("fidelity") or []:
            scalars = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in hop.items() if isinstance(v, (str, int, float, bool))]
            lines.append(f"- fidelity: {', '.join(scalars)}")
        lines += ["", "| file | sha256 |", "|---|---|",
                  *(f"| `{f}` | `{h}` |" for f, h in sorted(info.get("files", {}).items())), ""]
    return "\n".join(lines).rstrip() + "\n"
