"""Which files of a bundle ``deploy verify`` can trust, and why.

Every file the manifest lists must exist as a regular file with its sha256 (a file listed
as ``editable`` may differ: its meaning is checked instead). Every other file must be one
the device makes, each checked its own way (:class:`~detforge.deploy.manifest.DeviceFile`):

* the engine: its sidecar (written by build_engine.sh or ``engine build``) must name the
  bundle's model by sha256, and the engine's own sha256 when it records one;
* a built library or Triton plan: the ``.sha256`` record written by the build must match
  it, and list only the bundle's own sources with their manifest sha256;
* an installed copy (the Triton plan config): byte for byte the shipped file.

Symbolic links are reported (a link to a folder or a loop can pull in files the manifest
never saw), and the manifest's signature is checked when one is present or a key is given.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

from detforge.deploy import verify_on_device as shared
from detforge.deploy.manifest import MANIFEST, BundleManifest, DeviceFile, verify_signature

__all__ = ["Finding", "check_integrity", "engine_sidecar", "symlinks"]

Finding = tuple[str, bool, str]
"""(check name, passed, detail)."""


def symlinks(folder: Path) -> list[str]:
    """Every symbolic link under ``folder``, with what it is (never followed)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            if not path.is_symlink():
                continue
            rel = path.relative_to(folder).as_posix()
            try:
                kind = "folder" if path.resolve(strict=True).is_dir() else "file"
                found.append(f"{rel} -> {os.readlink(path)} (symlink to a {kind})")
            except RuntimeError:
                found.append(f"{rel} -> {os.readlink(path)} (symlink loop)")
            except OSError as exc:
                what = "symlink loop" if exc.errno == 40 else "dangling symlink"
                found.append(f"{rel} -> {os.readlink(path)} ({what})")
    return found


def engine_sidecar(engine: Path) -> dict[str, Any] | None:
    """The engine's sidecar JSON object, or None when missing or malformed."""
    from detforge.export.tensorrt import manifest_path

    try:
        data = json.loads(manifest_path(engine).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _engine_problem(folder: Path, rel: str, manifest: BundleManifest) -> str | None:
    from detforge.export.tensorrt import manifest_path

    engine = folder / rel
    side = engine_sidecar(engine)
    if side is None:
        return (f"{rel} has no readable sidecar {manifest_path(Path(rel)).as_posix()}, so "
                f"nothing ties it to this model; rebuild it with ./build_engine.sh")
    onnx_sha = side.get("source_onnx_sha256") or side.get("onnx_sha256")
    if onnx_sha != manifest.model.sha256:
        return (f"{rel} was built from another model (sidecar names sha256 "
                f"{str(onnx_sha)[:12]}..., the bundle's {manifest.model.file} is "
                f"{manifest.model.sha256[:12]}...); rebuild it with ./build_engine.sh")
    own = side.get("engine_sha256") or side.get("sha256")
    if own and own != shared.sha256_of(str(engine)):
        return f"{rel} differs from the sha256 its sidecar recorded; rebuild it"
    return None


def _device_file(folder: Path, rel: str, rule: DeviceFile, manifest: BundleManifest,
                 sources: dict[str, str]) -> str | None:
    """What is wrong with a device-made file, or None when it can be trusted."""
    if rule.check == "engine":
        return _engine_problem(folder, rel, manifest)
    if rule.check == "sidecar":
        return None  # read with its engine
    if rule.check == "library":
        record = f"{rel}{shared.LIBRARY_RECORD_SUFFIX}"
        if not (folder / record).is_file():
            return f"{rel} has no {record} (written by its build); rebuild it"
        problems = shared.check_build_record(str(folder), record, sources)
        return "; ".join(problems) or None
    if rule.check == "record":
        built = rel[: -len(shared.LIBRARY_RECORD_SUFFIX)]
        if (folder / built).is_file():
            return None  # checked with what it records
        try:
            shared.read_record(str(folder / rel))
        except (OSError, shared.DeviceCheckError) as exc:
            return str(exc)
        return None
    if rule.of is None or not (folder / rule.of).is_file():
        return f"{rel}: the file it copies ({rule.of}) is missing"
    same = shared.sha256_of(str(folder / rel)) == shared.sha256_of(str(folder / rule.of))
    return None if same else f"{rel} differs from {rule.of}, which it should copy"


def check_integrity(folder: Path, manifest: BundleManifest, raw: dict[str, Any], *,
                    hmac_key: str | None = None,
                    public_key: Path | None = None) -> tuple[list[Finding], list[str]]:
    """Signature, checksums, device-made files and symlinks.

    Returns:
        Findings (name, passed, detail) and notes.
    """
    from detforge.deploy.manifest import SignatureError

    found: list[Finding] = []
    notes: list[str] = []
    try:
        what = verify_signature(raw, hmac_key=hmac_key, public_key=public_key)
        if what:
            found.append(("signature", True, what))
    except SignatureError as exc:
        found.append(("signature", False, str(exc)))
    links = symlinks(folder)
    if links:
        found.append(("symlinks", False, f"{'; '.join(links)}; a bundle holds regular files "
                      f"only: replace links with the files (cp -L) or remove them"))
    missing: list[str] = []
    changed: list[str] = []
    edited: list[str] = []
    for rel, want in sorted(manifest.files.items()):
        path = folder / rel
        if path.is_symlink() or not path.is_file():
            missing.append(rel)
        elif shared.sha256_of(str(path)) != want:
            (edited if rel in manifest.editable else changed).append(rel)
    if edited:
        notes.append(f"{', '.join(edited)} edited on site (allowed; its settings are checked "
                     f"below)")
    extra: list[str] = []
    untrusted: list[str] = []
    rules = manifest.device_files
    for rel in _regular_files(folder):
        if rel in manifest.files or rel == MANIFEST:
            continue
        rule = next((r for r in rules if fnmatch.fnmatchcase(rel, r.path)), None)
        if rule is None:
            extra.append(rel)
            continue
        problem = _device_file(folder, rel, rule, manifest, manifest.files)
        if problem:
            untrusted.append(problem)
    for label, items, what in (
            ("missing", missing, "listed in manifest.json but absent or not a regular file"),
            ("changed", changed, "sha256 differs from manifest.json"),
            ("extra", extra, "not in manifest.json, and no file the device makes")):
        if items:
            found.append((f"files {label}", False, f"{', '.join(items)} ({what}); re-copy the "
                          f"bundle or rebuild it with `detforge deploy bundle`"))
    if untrusted:
        found.append(("device-built files", False, "; ".join(untrusted)))
    if not any(not ok for _, ok, _ in found):
        made = sum(1 for rel in _regular_files(folder)
                   if rel not in manifest.files and rel != MANIFEST)
        found.append(("checksums", True, f"{len(manifest.files)} files match manifest.json"
                      + (f"; {made} built on the device, each traced to the bundle's sources"
                         if made else "")))
    return found, notes


def _regular_files(folder: Path) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                out.append(path.relative_to(folder).as_posix())
    return sorted(out)
