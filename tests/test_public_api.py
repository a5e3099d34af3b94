from __future__ import annotations

import inspect
import subprocess
import sys

import detforge


def test_all_matches_exports() -> None:
    # Subpackages show up as attributes once anything imported them; they are not exports.
    public = {n for n in dir(detforge)
              if not n.startswith("_") and not inspect.ismodule(getattr(detforge, n))}
    assert set(detforge.__all__) - {"__version__"} == public


def test_import_does_not_import_torch() -> None:
    code = "import sys, detforge, detforge.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
