"""``build_engine.sh``: the bash script that builds a plan on its target with ``trtexec``.

The script runs on the device (JetPack 4-6, a DeepStream or TensorRT container), where
detforge itself may not install, so it needs bash, sed and trtexec only:

* every path is relative to the script's own folder (it ``cd``s there first) or absolute,
  so it runs from any working directory and ``engine build --out`` / ``--timing-cache``
  may point anywhere;
* the ``trtexec`` options are those of the target's TensorRT version
  (:func:`detforge.export.engine_plan.trtexec_command`);
* after the build it writes ``ENGINE.json`` (:class:`~detforge.core.artefacts.EngineSidecar`)
  from what ``trtexec`` reports -- its ``TensorRT version:``, ``Selected Device:`` and
  ``Compute Capability:`` lines -- falling back to ``python3 -c 'import tensorrt'`` and
  ``nvidia-smi``, with ``sha256sum`` of the ONNX and the engine; the manifest's static part
  is embedded as JSON written by the same model the Python builder uses, so
  ``engine inspect`` and ``deploy verify`` accept the engine and never rebuild it.
"""

from __future__ import annotations

import json
import shlex

from detforge.export.engine_plan import EnginePlan, plan_sidecar, script_ref, trtexec_command
from detforge.export.trt_compat import rules_for

__all__ = ["render_script"]

_DYNAMIC = {"gpu_name": "@GPU_NAME@", "compute_capability": "@CC@",
            "tensorrt_version": "@TRT_VERSION@", "cuda_version": "@CUDA_VERSION@",
            "onnx_sha256": "@ONNX_SHA@", "engine_sha256": "@ENGINE_SHA@",
            "built_at": "@BUILT_AT@"}
_SHELL_VAR = {"gpu_name": "GPU_NAME", "compute_capability": "CC",
              "tensorrt_version": "TRT_VERSION", "cuda_version": "CUDA_VERSION",
              "onnx_sha256": "ONNX_SHA", "engine_sha256": "ENGINE_SHA",
              "built_at": "BUILT_AT"}
_SERIES_GLOB = {"8.2": "8.2.*", "8.5": "8.4.*|8.5.*", "8.6": "8.6.*", "10": "10.*", "11": "11.*"}
_DELIM = "DETFORGE_ENGINE_MANIFEST"


def _manifest_template(plan: EnginePlan) -> str:
    """The manifest as JSON with ``"@NAME@"`` where the device fills in a value."""
    sidecar = plan_sidecar(plan, gpu_name=None, compute_capability="0.0",
                           tensorrt_version="0.0.0", cuda_version=None, builder="trtexec",
                           onnx_sha256=None)
    data = json.loads(sidecar.model_dump_json())
    data.update(_DYNAMIC)
    return json.dumps(data, indent=2, ensure_ascii=True)


def render_script(plan: EnginePlan) -> str:
    """The build script for ``plan``; it lives in the engine's folder.

    Example:
        >>> text = render_script(plan)  # doctest: +SKIP
        >>> text.startswith("#!/usr/bin/env bash")  # doctest: +SKIP
        True
    """
    t, rules = plan.target, rules_for(plan.tensorrt)
    folder = plan.engine.parent
    engine, onnx = script_ref(plan.engine, folder), script_ref(plan.onnx, folder)
    args = " ".join(shlex.quote(a) for a in trtexec_command(plan)[1:])
    dla = f", DLA core {plan.dla_core} (GPU fallback)" if plan.dla_core is not None else ""
    seds = " \\\n    ".join(
        f"-e \"/^  \\\"{key}\\\": /s#\\\"{marker}\\\"#$(json \"${_SHELL_VAR[key]}\")#\""
        for key, marker in _DYNAMIC.items())
    return f"""#!/usr/bin/env bash
# Build {plan.engine.name} for {t.title} ({t.sm}): {plan.precision}, batch \
{plan.batch[0]}-{plan.batch[2]} (opt {plan.batch[1]}){dla}.
# Written for TensorRT {plan.tensorrt} (trtexec options: {rules.source("trtexec")}).
# Run it on the target itself: a plan runs only on the GPU architecture and TensorRT version
# it was built with. It writes {plan.engine.name}.json beside the engine (GPU, TensorRT,
# precision, batch, source ONNX), which `detforge engine inspect` and `deploy verify` read.
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
if [ ! -x "$TRTEXEC" ]; then
  echo "trtexec not found; install TensorRT or set TRTEXEC=/path/to/trtexec" >&2
  exit 2
fi
ENGINE={shlex.quote(engine)}
ONNX={shlex.quote(onnx)}
LOG="$(mktemp "${{TMPDIR:-/tmp}}/detforge-trtexec.XXXXXX")"
trap 'rm -f "$LOG" "$ENGINE.json.tmp"' EXIT
"$TRTEXEC" {args} 2>&1 | tee "$LOG" || {{
  echo "trtexec failed (its messages are above); no engine built" >&2
  exit 1
}}
if [ ! -s "$ENGINE" ]; then
  echo "trtexec reported success but wrote no $ENGINE" >&2
  exit 1
fi
first() {{ sed -n "s/$1/\\1/p" "$LOG" | sed -n 1p; }}
clean() {{ printf '%s' "$1" | tr -cd 'A-Za-z0-9 ._()/+-'; }}
json() {{ if [ -n "$1" ]; then printf '"%s"' "$1"; else printf 'null'; fi; }}
TRT_VERSION="$(first '.*TensorRT version: *\\([0-9][0-9.]*[0-9]\\).*')"
GPU_NAME="$(first '.*Selected Device: *\\(.*\\)$')"
CC="$(first '.*Compute Capability: *\\([0-9][0-9]*\\.[0-9][0-9]*\\).*')"
if [ -z "$TRT_VERSION" ] && command -v python3 >/dev/null 2>&1; then
  TRT_VERSION="$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  [ -n "$GPU_NAME" ] || GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader \\
    2>/dev/null | sed -n 1p || true)"
  [ -n "$CC" ] || CC="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader \\
    2>/dev/null | sed -n 1p || true)"
fi
NVCC_RELEASE='s/.*release \\([0-9][0-9]*\\.[0-9][0-9]*\\).*/\\1/p'
CUDA_VERSION="$({{ nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version \\
  2>/dev/null || true; }} | sed -n "$NVCC_RELEASE" | sed -n 1p)"
sha() {{ {{ sha256sum "$1" 2>/dev/null || true; }} | cut -d' ' -f1 | tr -cd '0-9a-f'; }}
ONNX_SHA="$(sha "$ONNX")"; ENGINE_SHA="$(sha "$ENGINE")"
TRT_VERSION="$(clean "$TRT_VERSION")"; GPU_NAME="$(clean "$GPU_NAME")"; CC="$(clean "$CC")"
CUDA_VERSION="$(clean "$CUDA_VERSION")"
printf '%s' "$ONNX_SHA" | grep -Eq '^[0-9a-f]{{64}}$' || ONNX_SHA=""
printf '%s' "$ENGINE_SHA" | grep -Eq '^[0-9a-f]{{64}}$' || ENGINE_SHA=""
BUILT_AT="$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
if ! printf '%s' "$TRT_VERSION" | grep -Eq '^[0-9]+(\\.[0-9]+)+$' \\
    || ! printf '%s' "$CC" | grep -Eq '^[0-9]+\\.[0-9]+$'; then
  echo "built $ENGINE, but trtexec, python3 and nvidia-smi did not tell the TensorRT version" \\
       "('$TRT_VERSION') and compute capability ('$CC'); no manifest written, so" \\
       "detforge will not load this engine" >&2
  exit 1
fi
case "$TRT_VERSION" in
  {_SERIES_GLOB[rules.series]}) ;;
  *) echo "warning: written for TensorRT {plan.tensorrt}, built with $TRT_VERSION: check the" \\
          "options above" >&2 ;;
esac
sed {seds} \\
  > "$ENGINE.json.tmp" <<'{_DELIM}'
{_manifest_template(plan)}
{_DELIM}
mv -f "$ENGINE.json.tmp" "$ENGINE.json"
echo "built $ENGINE with TensorRT $TRT_VERSION on $GPU_NAME (sm $CC); manifest $ENGINE.json"
"""
