"""The bundle manifest: one validated model, read and written here only.

``manifest.json`` records the target, the model and its lineage, the engine to build, the
parser, the thresholds, the source the DeepStream configs are set for, the sha256 of every
file, the files the device itself makes (and how ``deploy verify`` checks each), and
optionally a signature. A malformed manifest gives one line naming the field.

Signing covers the manifest as sorted, compact JSON without its ``signature`` field
(:func:`detforge.deploy.verify_on_device.canonical_manifest`), so the sha256 it lists for
every file are covered too: swapping the model and editing its checksum breaks it.

* ``hmac-sha256`` with a shared secret from ``$DETFORGE_SIGNING_KEY`` (stdlib; the on-device
  script checks it too);
* ``ed25519`` with a private key file (PEM), checked against a public key the verifier
  trusts (``cryptography``, extra ``sign``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError

from detforge.core.atomic import atomic_write_json
from detforge.core.config import StrictModel
from detforge.core.errors import ConfigError, MissingExtraError
from detforge.deploy.verify_on_device import (
    SIGNATURE_FIELD,
    SIGNING_KEY_ENV,
    canonical_manifest,
    hmac_signature,
)

__all__ = ["BUNDLE_FORMAT", "MANIFEST", "SIGNING_KEY_ENV", "BundleManifest", "DeviceFile",
           "ManifestError", "SignatureError", "env_signing_key", "read_manifest",
           "sign_manifest", "verify_signature", "write_manifest"]

BUNDLE_FORMAT = "detforge-bundle/2"
MANIFEST = "manifest.json"


class ManifestError(ConfigError):
    """manifest.json is missing, not JSON, or a field is wrong."""


class SignatureError(ConfigError):
    """A manifest signature cannot be made or does not verify."""


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{value[:80]!r} is not a hex sha256")
    return value


def _relative(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ValueError(f"{value!r} must be a path inside the bundle (relative, no '..')")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]
RelPath = Annotated[str, AfterValidator(_relative)]


class TargetInfo(StrictModel):
    name: str
    title: str
    sm: str
    compute_capability: str
    precision: Literal["fp32", "fp16", "int8"]
    batch: int = Field(ge=1)
    tensorrt: str
    deepstream: str
    jetpack: str | None
    expected_ips: tuple[float, float]


class ModelInfo(StrictModel):
    file: RelPath
    sha256: Sha256
    meta: dict[str, Any]
    pad_fill: bool = False
    """The model fills nvinfer's black letterbox bands with the training grey."""


class EngineInfo(StrictModel):
    file: RelPath
    build_script: RelPath
    command: list[str]
    batch: tuple[int, int, int]


class TritonInfo(StrictModel):
    name: str
    plan_model: str | None
    plan_config: RelPath | None
    """The plan model's config.pbtxt as shipped; build_engine.sh installs a copy."""


class ParserInfo(StrictModel):
    source_dir: RelPath
    library: RelPath
    function: str


class SourceInfo(StrictModel):
    size: tuple[int, int]
    uri: str


class Thresholds(StrictModel):
    conf: float = Field(ge=0, le=1)
    iou: float = Field(ge=0, le=1)
    max_det: int = Field(ge=1)


class DeviceFile(StrictModel):
    """A file the device makes, and how verify decides whether to trust it.

    Attributes:
        path: Bundle-relative path (fnmatch wildcards allowed).
        check: ``engine`` (its sidecar names the bundle's model sha256), ``sidecar``
            (read with the engine), ``library`` (a built file: the ``.sha256`` record
            beside it, written by the build, matches it and names only the bundle's own
            sources), ``record`` (read with the library), ``copy`` (same bytes as ``of``).
        of: For ``copy``: the bundle file it must equal.
    """

    path: str
    check: Literal["engine", "sidecar", "library", "record", "copy"]
    of: RelPath | None = None


class Signature(StrictModel):
    alg: Literal["hmac-sha256", "ed25519"]
    value: str
    key_id: str | None = None


class BundleManifest(StrictModel):
    """Everything a device and ``deploy verify`` need to know about one target folder."""

    format: Literal["detforge-bundle/2"]
    created: str
    target: TargetInfo
    model: ModelInfo
    engine: EngineInfo
    triton: TritonInfo
    parser: ParserInfo
    thresholds: Thresholds
    source: SourceInfo
    lineage: dict[str, Any]
    fidelity: list[dict[str, Any]] | None
    device_files: list[DeviceFile]
    editable: list[RelPath] = Field(default_factory=list)
    """Files a user adapts on site (sources, sinks): verify checks their meaning, not bytes."""
    notes: list[str] = Field(default_factory=list)
    files: dict[RelPath, Sha256]
    signature: Signature | None = None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"


def read_manifest(folder: Path) -> tuple[BundleManifest, dict[str, Any]]:
    """The manifest of a bundle folder, validated, and the raw JSON (for its signature).

    Raises:
        ManifestError: Missing, not JSON, another format, or a wrong field; one line that
            names the field and says to rebuild the bundle.
    """
    path = folder / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest.json is missing; this is not a bundle folder "
                            f"written by `detforge deploy bundle` (pass DIR/<target>)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path}: manifest.json is not readable JSON ({exc}); rebuild the "
                            f"bundle with `detforge deploy bundle`") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: manifest.json must hold a JSON object, not "
                            f"{type(raw).__name__}; rebuild the bundle")
    if raw.get("format") != BUNDLE_FORMAT:
        raise ManifestError(f"{path}: format is {raw.get('format')!r}, not {BUNDLE_FORMAT!r}; "
                            f"rebuild the bundle with this detforge")
    try:
        return BundleManifest.model_validate(raw), raw
    except ValidationError as exc:
        raise ManifestError(f"{path}: field {_first_error(exc)}; rebuild the bundle with "
                            f"`detforge deploy bundle`") from None


def write_manifest(folder: Path, manifest: BundleManifest) -> None:
    """Write ``manifest.json`` atomically."""
    atomic_write_json(folder / MANIFEST, manifest.model_dump(mode="json"))


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise MissingExtraError("ed25519 signing needs the cryptography package: "
                                "pip install 'detforge[sign]'") from None
    return serialization


def _key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def sign_manifest(manifest: BundleManifest, *, hmac_key: str | None = None,
                  private_key: Path | None = None) -> BundleManifest:
    """The manifest with a signature over everything else in it.

    Args:
        manifest: The manifest (its ``signature`` is replaced).
        hmac_key: Shared secret for HMAC-SHA256.
        private_key: PEM file of an Ed25519 private key (PKCS#8, unencrypted).

    Raises:
        SignatureError: Neither or both keys given, or the key file is not Ed25519.
        MissingExtraError: ``cryptography`` is not installed (Ed25519).
    """
    if (hmac_key is None) == (private_key is None):
        raise SignatureError("sign with either an HMAC key ($DETFORGE_SIGNING_KEY) or an "
                             "Ed25519 private key (--sign-key FILE), not both or neither")
    body = manifest.model_dump(mode="json")
    if private_key is None:
        if not hmac_key:
            raise SignatureError(f"${SIGNING_KEY_ENV} is empty; set it to the shared secret")
        sig = Signature(alg="hmac-sha256", value=hmac_signature(body, hmac_key.encode()))
    else:
        serialization = _ed25519()
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SignatureError(f"--sign-key {private_key}: not a readable unencrypted PEM "
                                 f"private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"--sign-key {private_key}: an {type(key).__name__}, not an "
                                 f"Ed25519 key; make one with `openssl genpkey -algorithm "
                                 f"ed25519 -out key.pem`")
        raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        value = base64.b64encode(key.sign(canonical_manifest(body))).decode()
        sig = Signature(alg="ed25519", value=value, key_id=_key_id(raw))
    return manifest.model_copy(update={"signature": sig})


def verify_signature(raw: dict[str, Any], *, hmac_key: str | None = None,
                     public_key: Path | None = None) -> str:
    """Check the signature of a manifest as read from disk.

    A signature is required when a key is given: a verifier that holds a key does not
    accept an unsigned manifest (or one could strip the signature). A signed manifest
    with no key to check it with fails too.

    Args:
        raw: The manifest JSON as loaded (not re-serialised).
        hmac_key: The shared secret (``$DETFORGE_SIGNING_KEY``).
        public_key: PEM file of the trusted Ed25519 public key.

    Returns:
        What was verified, in words; "" when the manifest is unsigned and no key is given.

    Raises:
        SignatureError: Missing, wrong or unverifiable signature; the message says which.
    """
    sig = raw.get(SIGNATURE_FIELD)
    if sig is None:
        if hmac_key or public_key:
            raise SignatureError("manifest.json is not signed, but a key to check it was given;"
                                 " rebuild the bundle with `detforge deploy bundle --sign`")
        return ""
    alg = sig.get("alg") if isinstance(sig, dict) else None
    if alg == "hmac-sha256":
        if not hmac_key:
            raise SignatureError(f"manifest.json is signed (HMAC); set ${SIGNING_KEY_ENV} to "
                                 f"the signing key to verify it")
        if not hmac.compare_digest(str(sig.get("value")), hmac_signature(raw, hmac_key.encode())):
            raise SignatureError("manifest.json does not match its HMAC signature: it was "
                                 "altered after signing, or signed with another key")
        return "HMAC-SHA256 signature verified"
    if alg == "ed25519":
        if public_key is None:
            raise SignatureError("manifest.json is signed (Ed25519); pass --public-key FILE "
                                 "with the trusted public key to verify it")
        serialization = _ed25519()
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = serialization.load_pem_public_key(public_key.read_bytes())
        except (OSError, ValueError) as exc:
            raise SignatureError(f"--public-key {public_key}: not a PEM public key ({exc})") \
                from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(f"--public-key {public_key}: not an Ed25519 key")
        try:
            key.verify(base64.b64decode(str(sig.get("value"))), canonical_manifest(raw))
        except (InvalidSignature, ValueError):
            raise SignatureError("manifest.json does not match its Ed25519 signature: it was "
                                 "altered after signing, or signed with another key") from None
        return "Ed25519 signature verified"
    raise SignatureError(f"manifest.json has a signature of unknown kind {alg!r}")


def env_signing_key() -> str | None:
    """``$DETFORGE_SIGNING_KEY``, or None when unset."""
    return os.environ.get(SIGNING_KEY_ENV)
