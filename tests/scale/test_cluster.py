"""The local cluster stays on loopback; Ray is imported only for ``--ray``."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.cli.ray_option import complete_ray
from detforge.core.errors import MissingExtraError


def test_local_cluster_listens_on_loopback_only(ray_cluster: object) -> None:
    psutil = pytest.importorskip("psutil")
    import ray

    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    ray_processes = psutil.Process().children(recursive=True)  # GCS, raylet, workers
    listening = [c.laddr for p in ray_processes for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening  # the check below looked at something
    for addr in listening:
        ip = ipaddress.ip_address(addr.ip)
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        assert (mapped or ip).is_loopback, f"{addr} listens beyond loopback"


def test_detforge_and_local_predict_do_not_import_ray(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from typer.testing import CliRunner\n"
        "import detforge\n"
        "from detforge.cli import app\n"
        "from detforge.testing import random_image, tiny_onnx_model, write_image\n"
        f"root = Path({str(tmp_path)!r})\n"
        "model = tiny_onnx_model(root / 'm.onnx')\n"
        "write_image(root / 'a.jpg', random_image(32, 32))\n"
        "r = CliRunner().invoke(app, ['predict', str(model), str(root / 'a.jpg'), '--out',\n"
        "                             str(root / 'o.jsonl'), '--no-progress'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('detforge.scale')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip() == "[]"


def test_missing_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detforge.testing import random_image, tiny_onnx_model, write_image

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    model = tiny_onnx_model(tmp_path / "m.onnx")
    write_image(tmp_path / "a.jpg", random_image(32, 32))
    result = CliRunner().invoke(app, ["predict", str(model), str(tmp_path / "a.jpg"), "--out",
                                      str(tmp_path / "o.jsonl"), "--ray"])
    assert result.exit_code == MissingExtraError.exit_code
    assert "MissingExtraError" in result.output
    assert "pip install 'detforge[scale]'" in result.output
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["m", "s", "--ray"], ["m", "s", "--ray", "local"]),
    (["m", "s", "--ray", "--out", "o"], ["m", "s", "--ray", "local", "--out", "o"]),
    (["--ray", "m.onnx", "s"], ["--ray", "local", "m.onnx", "s"]),
    (["m", "s", "--ray", "auto"], ["m", "s", "--ray", "auto"]),
    (["m", "s", "--ray", "10.0.0.5:6379"], ["m", "s", "--ray", "10.0.0.5:6379"]),
    (["m", "s", "--ray", "ray://head:10001"], ["m", "s", "--ray", "ray://head:10001"]),
    (["m", "s", "--ray=head:6379"], ["m", "s", "--ray=head:6379"]),
    (["m", "--", "--ray"], ["m", "--", "--ray"]),
], ids=["last", "before-option", "before-arguments", "auto", "host-port", "client",
        "equals", "after-double-dash"])
def test_bare_ray_means_local(args: list[str], expected: list[str]) -> None:
    assert complete_ray(args) == expected
