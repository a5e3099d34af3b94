"""Typed artefacts: one reader and writer, one-line errors naming the field, no package cycle."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import detforge
from detforge.core.artefacts import (
    TARGETS,
    EngineSidecar,
    ModelMeta,
    Target,
    read_artefact,
    read_engine_sidecar,
    write_engine_sidecar,
)
from detforge.core.errors import ConfigError, EngineMismatchError

GOOD = {"engine": "m.engine", "precision": "fp16", "compute_capability": "8.7",
        "tensorrt_version": "10.3.0", "batch": {"min": 1, "opt": 8, "max": 8}}


def test_sidecar_round_trip_and_unknown_keys(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    sidecar = EngineSidecar.model_validate({**GOOD, "meta": {"classes": ["a"]}})
    side = write_engine_sidecar(engine, sidecar)
    assert side.name == "m.engine.json" and read_engine_sidecar(engine) == sidecar
    # a newer writer's extra key and an older writer's legacy keys are ignored
    side.write_text(json.dumps({**GOOD, "min_batch": 1, "source_onnx": "m.onnx",
                                "future_field": {"x": 1}}))
    assert read_engine_sidecar(engine).batch.max == 8


@pytest.mark.parametrize(("text", "expect"), [
    ("[]", "must be a JSON object, found a JSON list"),
    ('"x"', "found a JSON string"),
    ("{}", "missing fields 'engine', 'precision', 'compute_capability', "
           "'tensorrt_version', 'batch'"),
    (json.dumps({**GOOD, "precision": "int4"}), "field 'precision'"),
    (json.dumps({**GOOD, "onnx_sha256": "abc"}), "field 'onnx_sha256'"),
    (json.dumps({**GOOD, "batch": {"min": 0, "opt": 1, "max": 1}}), "field 'batch.min'"),
    ("{nope", "not JSON"),
], ids=["list", "string", "empty", "precision", "sha", "batch", "broken"])
def test_malformed_sidecar_is_one_line_naming_the_field(tmp_path: Path, text: str,
                                                        expect: str) -> None:
    (tmp_path / "m.engine.json").write_text(text)
    with pytest.raises(EngineMismatchError) as err:
        read_engine_sidecar(tmp_path / "m.engine", error=EngineMismatchError)
    msg = str(err.value)
    assert expect in msg and "\n" not in msg and "engine build" in msg
    assert "m.engine.json" in msg


def test_read_artefact_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing.json: no thing; make one"):
        read_artefact(tmp_path / "nothing.json", ModelMeta, what="thing", fix="make one")


def test_target_table_is_validated() -> None:
    row = TARGETS["orin-nx"].model_dump()
    with pytest.raises(ValidationError, match="precision"):
        Target.model_validate({**TARGETS["jetson-nano"].model_dump(), "precision": "int8"})
    with pytest.raises(ValidationError, match="JetPack"):
        Target.model_validate({**row, "jetpack": None})
    with pytest.raises(ValidationError, match="tensorrt"):
        Target.model_validate({**row, "tensorrt": "10.3"})
    with pytest.raises(ValidationError):
        TARGETS["t4"].batch = 3  # type: ignore[misc]  # frozen


def test_target_facts() -> None:
    assert (TARGETS["rtx-50"].deepstream, TARGETS["rtx-50"].tensorrt) == ("8.0", "10.9.0")
    assert TARGETS["orin-nx-8gb"].dla_cores == 1 and TARGETS["orin-nx"].dla_cores == 2
    assert TARGETS["orin-nano"].dla_cores == 0


def test_model_meta_has_one_home() -> None:
    from detforge.runtime import metadata

    assert metadata.ModelMeta is ModelMeta
    from detforge.deploy import targets

    assert targets.TARGETS is TARGETS


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("stage", ["export", "core"])
def test_no_import_of_deploy(stage: str) -> None:
    """export and core never import deploy (deploy imports export): no package cycle."""
    root = Path(detforge.__file__).parent / stage
    offenders = {p.name: sorted(m for m in _imports(p) if m.startswith("detforge.deploy"))
                 for p in root.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
