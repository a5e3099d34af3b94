"""Registry state under concurrency and on bad stores: two processes promoting at once lose
no update; a store that is not an MLflow SQLite database is refused in one line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.deploy.registry import PREVIOUS, PRODUCTION, open_registry

from .conftest import copy_store

ROUNDS = 20
WAIT_S = 300.0  # an upper bound only

RACER = """
import json, sys, time
from pathlib import Path
from detforge.deploy.registry import open_registry

uri, me, order, ready, go, out = sys.argv[1:7]
reg = open_registry(uri)
reg.list_models()  # warm: imports and the database connection
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.005)
done = []
for version in json.loads(order):
    p = reg.promote("racy", version, to="production")
    done.append([p.replaced, p.version, p.previous])
Path(out).write_text(json.dumps(done))
"""


def test_two_processes_promoting_at_once_lose_no_update(tmp_path: Path,
                                                        mlflow_db_template: Path) -> None:
    uri = copy_store(mlflow_db_template, tmp_path)
    reg = open_registry(uri)
    reg.client.create_registered_model("racy")
    for i in range(3):  # promotion reads aliases and tags only: bare versions will do
        reg.client.create_model_version("racy", source=str(tmp_path / f"v{i + 1}"))
    reg.promote("racy", 1, to="production")
    orders = {"a": [2, 3] * (ROUNDS // 2), "b": [3, 1] * (ROUNDS // 2)}
    go = tmp_path / "go"
    procs = {me: subprocess.Popen([sys.executable, "-c", RACER, uri, me, json.dumps(order),
                                   str(tmp_path / f"ready.{me}"), str(go),
                                   str(tmp_path / f"out.{me}.json")])
             for me, order in orders.items()}
    deadline = time.monotonic() + WAIT_S
    while not all((tmp_path / f"ready.{me}").exists() for me in procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values())
        time.sleep(0.01)
    go.touch()  # both start promoting at the same moment
    for p in procs.values():
        assert p.wait(WAIT_S) == 0
    results = [tuple(r) for me in procs
               for r in json.loads((tmp_path / f"out.{me}.json").read_text())]
    model_now = reg.client.get_registered_model("racy")
    history = [int(v) for v in model_now.tags["detforge.production_history"].split(",")]
    # Serialised, the moves form one chain: each one replaced what the one before set.
    moves = sorted((r[0], r[1]) for r in results if r[0] != r[1])
    chain = sorted(zip(history[:-1], history[1:], strict=True))
    assert history[0] == 1 and len(history) == len(moves) + 1
    assert moves == chain
    assert int(model_now.aliases[PRODUCTION]) == history[-1]
    assert int(model_now.aliases[PREVIOUS]) == history[-2]
    for replaced, version, previous in results:  # what each caller was told
        if replaced != version:
            assert previous == replaced


runner = CliRunner()


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database at all\n" * 10)


def _other_app(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER, taken TEXT)")


def _corrupt(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER)")
        conn.executemany("INSERT INTO runs VALUES (?)", [(i,) for i in range(5000)])
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # smash a page, keep the header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "message"), [
    (_garbage, "not a SQLite database"),
    (_other_app, "a SQLite database of another application (tables: photos)"),
    (_corrupt, "corrupt"),
], ids=["not-sqlite", "other-app", "corrupt"])
@pytest.mark.parametrize("command", [["list"], ["promote", "m", "1", "--to", "production"],
                                     ["show", "m"]], ids=["list", "promote", "show"])
def test_a_bad_store_is_one_line(tmp_path: Path, make: object, message: str,
                                 command: list[str]) -> None:
    db = tmp_path / "mlflow.db"
    make(db)  # type: ignore[operator]
    before = db.read_bytes()
    result = runner.invoke(app, ["registry", *command, "--tracking-uri", f"sqlite:///{db}"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"RegistryError: {db}: "), result.output
    assert message in lines[0]
    assert db.read_bytes() == before  # MLflow never touched it
