"""Seams between stages: layering, declared dependencies, missing extras, bad model files."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from detforge.cli import app

SRC = Path(__file__).resolve().parents[1] / "src" / "detforge"
ROOT = SRC.parents[1]

# stage -> stages it must not import (STYLE.md 1: runtime must not import train, ...)
FORBIDDEN = {"runtime": ("train",), "export": ("train",), "serve": ("train",),
             "evaluate": ("train",), "bench": ("train",), "core": ("data", "train", "runtime",
                                                                   "export", "evaluate"),
             "integrations": ("train", "runtime", "export")}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_layering(stage: str) -> None:
    bad = [f"{p.relative_to(SRC)} imports {m}" for p in sorted((SRC / stage).rglob("*.py"))
           for m in _imports(p) for other in FORBIDDEN[stage]
           if m == f"detforge.{other}" or m.startswith(f"detforge.{other}.")]
    assert bad == []


def test_train_offline_is_the_integration_module() -> None:
    from detforge.integrations import ultralytics
    from detforge.train import offline

    assert offline.import_ultralytics is ultralytics.import_ultralytics


def _third_party(path: Path) -> set[str]:
    return {m.split(".")[0] for m in _imports(path) if not m.startswith(("detforge", "."))}


def test_modules_imported_at_top_level_of_the_core_install_are_declared() -> None:
    """Every package a core module imports when the module loads is a core dependency."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower().replace("-", "_")
             for d in declared}
    dist_of = {"cv2": "opencv_python_headless", "PIL": "pillow", "yaml": "pyyaml",
               "faster_coco_eval": "faster_coco_eval"}
    stdlib = set(sys.stdlib_module_names)
    for path in [*(SRC / "data").rglob("*.py"), *(SRC / "core").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top:
            mods = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in getattr(node, "names", [])]
            for m in mods:
                root = m.split(".")[0]
                if root in stdlib or root in ("detforge", "__future__", "numpy"):
                    continue
                assert dist_of.get(root, root).lower() in names, f"{path.name} imports {m}"
    assert "defusedxml" in names


def test_export_of_a_photo_is_a_one_line_error(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = CliRunner().invoke(app, ["export", str(photo), "--out", str(tmp_path / "m.onnx")])
    assert out.exit_code == 1, out.output
    assert out.output.startswith("ExportError: ") and "not Ultralytics weights" in out.output
    assert len(out.output.strip().splitlines()) == 1


BLOCK_ULTRALYTICS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "ultralytics" or name.startswith("ultralytics."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from detforge.cli import main
main()
"""


def test_export_without_ultralytics_names_the_extra(tmp_path: Path) -> None:
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"not read: the import fails first")
    env = {**os.environ, "DETFORGE_HOME": str(tmp_path / "home"),
           "PYTHONPATH": f"{SRC.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", BLOCK_ULTRALYTICS, "export", str(weights),
                           "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("MissingExtraError: ultralytics is not installed")
    assert "pip install 'detforge[train]'" in proc.stderr and "Traceback" not in proc.stderr
