"""The typed manifest, its signature, and what verify trusts: malformed fields give one line,
a swapped model with an edited sha256 fails once signing is on, symlinks are reported."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.deploy.bundle import bundle_model
from detforge.deploy.manifest import (
    SIGNING_KEY_ENV,
    ManifestError,
    SignatureError,
    read_manifest,
    verify_signature,
)
from detforge.deploy.verify import verify_bundle
from detforge.export.engine_plan import sha256_file
from detforge.testing import tiny_onnx_model

TARGET = "t4"
KEY = "a shared secret for the fleet"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsigned, an HMAC-signed and an Ed25519-signed bundle, and another model."""
    root = tmp_path_factory.mktemp("manifest")
    model = tiny_onnx_model(root / "tiny.onnx", classes=("a", "b"), imgsz=(64, 96))
    bundle_model(model, targets=[TARGET], out=root / "plain", reference_images=2)
    os.environ[SIGNING_KEY_ENV] = KEY
    try:
        bundle_model(model, targets=[TARGET], out=root / "hmac", reference_images=2, sign=True)
    finally:
        del os.environ[SIGNING_KEY_ENV]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    (root / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (root / "pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    bundle_model(model, targets=[TARGET], out=root / "ed", reference_images=2,
                 sign_key=root / "key.pem")
    other = tiny_onnx_model(root / "other.onnx", classes=("b", "a"), imgsz=(64, 96))
    bundle_model(other, targets=[TARGET], out=root / "other", reference_images=1)
    return root


def _copy(made: Path, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made / kind / TARGET, tmp_path / kind))


def _edit(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return change


@pytest.mark.parametrize(("change", "field"), [
    (_set("target", KeyError), "field target: Field required"),
    (_set("files", ["model.onnx"]), "field files: Input should be a valid dictionary"),
    (lambda d: d["files"].__setitem__("model.onnx", 5),
     "field files.model.onnx: Input should be a valid string"),
    (_set("model.sha256", "abc"), "field model.sha256: Value error, 'abc' is not a hex sha256"),
    (_set("model.file", "/etc/passwd"), "field model.file: Value error, '/etc/passwd' must be"),
    (_set("target.batch", 0), "field target.batch: Input should be greater than or equal to 1"),
    (_set("surprise", 1), "field surprise: Extra inputs are not permitted"),
    (_set("format", "detforge-bundle/9"), "format is 'detforge-bundle/9'"),
], ids=["no-target", "files-list", "files-value", "bad-sha", "absolute-path", "batch-0",
        "unknown-key", "format"])
def test_malformed_manifest_is_one_line(made: Path, tmp_path: Path,
                                        change: Callable[[dict[str, Any]], None],
                                        field: str) -> None:
    folder = _copy(made, "plain", tmp_path)
    _edit(folder, change)
    with pytest.raises(ManifestError) as err:
        read_manifest(folder)
    assert field in str(err.value) and "\n" not in str(err.value)
    result = CliRunner().invoke(app, ["deploy", "verify", str(folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("FAIL: manifest: ") and field in last


def test_manifest_not_json_or_not_object(made: Path, tmp_path: Path) -> None:
    folder = _copy(made, "plain", tmp_path)
    for text, match in (("[1, 2]", "must hold a JSON object"), ("{", "not readable JSON")):
        (folder / "manifest.json").write_text(text)
        with pytest.raises(ManifestError, match=match):
            read_manifest(folder)


def _swap_model(folder: Path, made: Path) -> None:
    """The attack signing stops: another model, and its sha256 written into the manifest."""
    shutil.copyfile(made / "other" / TARGET / "model.onnx", folder / "model.onnx")
    sha = sha256_file(folder / "model.onnx")
    _edit(folder, lambda d: (d["files"].__setitem__("model.onnx", sha),
                             d["model"].__setitem__("sha256", sha)))


@pytest.mark.parametrize(("kind", "kwargs", "passes", "reason"), [
    ("hmac", {"hmac_key": KEY}, True, ""),
    ("hmac", {"hmac_key": "another key"}, False, "signed with another key"),
    ("hmac", {"hmac_key": ""}, False, "set $DETFORGE_SIGNING_KEY"),
    ("plain", {"hmac_key": KEY}, False, "is not signed, but a key"),
    ("ed", {"public_key": "pub.pem"}, True, ""),
    ("ed", {}, False, "pass --public-key"),
    ("plain", {}, True, ""),
], ids=["hmac", "hmac-wrong-key", "hmac-no-key", "unsigned-with-key", "ed25519",
        "ed25519-no-key", "unsigned"])
def test_signature(made: Path, tmp_path: Path, kind: str, kwargs: dict[str, Any],
                   passes: bool, reason: str) -> None:
    folder = _copy(made, kind, tmp_path)
    if "public_key" in kwargs:
        kwargs = {"public_key": made / kwargs["public_key"]}
    report = verify_bundle(folder, speed_seconds=0.05, **kwargs)
    assert report.passed == passes, report.reasons
    if reason:
        assert any(r.startswith("signature: ") and reason in r for r in report.reasons)


@pytest.mark.parametrize(("kind", "kwargs"), [
    ("hmac", {"hmac_key": KEY}), ("ed", {"public_key": "pub.pem"})], ids=["hmac", "ed25519"])
def test_signed_bundle_catches_swapped_model(made: Path, tmp_path: Path, kind: str,
                                             kwargs: dict[str, Any]) -> None:
    folder = _copy(made, kind, tmp_path)
    _swap_model(folder, made)
    if "public_key" in kwargs:
        kwargs = {"public_key": made / kwargs["public_key"]}
    report = verify_bundle(folder, speed_seconds=0.05, **kwargs)
    assert not report.passed
    assert "altered after signing" in report.reasons[0]
    plain = _copy(made, "plain", tmp_path / "p")
    _swap_model(plain, made)  # unsigned: the checksums alone cannot tell
    assert not any(r.startswith(("files", "signature")) for r in
                   verify_bundle(plain, speed_seconds=0.05).reasons)


def test_signature_survives_reformatting(made: Path) -> None:
    raw = json.loads((made / "hmac" / TARGET / "manifest.json").read_text())
    again = json.loads(json.dumps(raw, indent=None, sort_keys=True))
    assert verify_signature(again, hmac_key=KEY) == "HMAC-SHA256 signature verified"
    with pytest.raises(SignatureError):
        verify_signature({**raw, "notes": ["added later"]}, hmac_key=KEY)


def test_cli_signs_from_environment(made: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    args = ["deploy", "bundle", str(made / "tiny.onnx"), "--target", TARGET, "--out",
            str(tmp_path), "--reference-images", "1", "--sign"]
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "DETFORGE_SIGNING_KEY" in result.output
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["deploy", "verify", str(tmp_path / TARGET),
                                 "--speed-seconds", "0.05"])
    assert result.exit_code == 0 and "[ok] signature: HMAC-SHA256" in result.output


@pytest.mark.parametrize(("plant", "what"), [
    (lambda f: (f / "shared").symlink_to(f / "reference", target_is_directory=True),
     "shared -> "),
    (lambda f: (f / "loop").symlink_to(f / "loop"), "(symlink loop)"),
    (lambda f: (f / "reference" / "more.png").symlink_to("/etc/hostname"),
     "symlink to a file"),
], ids=["folder-link", "loop", "file-link"])
def test_symlinks_are_reported(made: Path, tmp_path: Path, plant: Callable[[Path], None],
                               what: str) -> None:
    folder = _copy(made, "plain", tmp_path)
    plant(folder)
    report = verify_bundle(folder, speed_seconds=0.05)
    assert not report.passed
    assert any(r.startswith("symlinks: ") and what in r for r in report.reasons), report.reasons


def test_listed_file_replaced_by_symlink(made: Path, tmp_path: Path) -> None:
    folder = _copy(made, "plain", tmp_path)
    (folder / "labels.txt").rename(tmp_path / "labels.txt")
    (folder / "labels.txt").symlink_to(tmp_path / "labels.txt")  # same bytes, outside
    reasons = verify_bundle(folder, speed_seconds=0.05).reasons
    assert any("files missing: labels.txt" in r for r in reasons)


def test_parser_library_must_match_its_record(made: Path, tmp_path: Path) -> None:
    """The library the device built is trusted through the record its Makefile wrote."""
    import subprocess

    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    folder = _copy(made, "plain", tmp_path)
    ds = tmp_path / "ds" / "sources" / "includes"
    ds.mkdir(parents=True)
    from detforge.deploy import parser

    for name in ("nvdsinfer.h", "nvdsinfer_custom_impl.h"):
        shutil.copyfile(Path(parser.__file__).parent / "host" / name, ds / name)
    subprocess.run(["make", "-C", str(folder / parser.PARSER_DIR),
                    f"NVDS_ROOT={tmp_path / 'ds'}"], check=True, capture_output=True)
    report = verify_bundle(folder, speed_seconds=0.05)
    assert report.passed, report.reasons
    assert "1 built on the device" in report.checks[0].detail or \
        "2 built on the device" in report.checks[0].detail
    lib = folder / parser.CUSTOM_LIB
    lib.write_bytes(lib.read_bytes() + b"\0")  # swapped after the build
    reasons = verify_bundle(folder, speed_seconds=0.05).reasons
    assert any("differs from" in r and parser.LIBRARY in r for r in reasons), reasons
