from __future__ import annotations

from pathlib import Path

import pytest

from detforge.train.tracking import flatten_params, resolve_tracking_uri


@pytest.mark.parametrize(
    ("uri", "env", "expect"),
    [("http://mlflow:5000", "sqlite:///env.db", "http://mlflow:5000"),
     (None, "sqlite:///env.db", "sqlite:///env.db"),
     (None, None, "local")],
    ids=["flag-wins", "env", "default-local-sqlite"],
)
def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 uri: str | None, env: str | None, expect: str) -> None:
    if env is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    got = resolve_tracking_uri(uri, tmp_path)
    if expect == "local":
        assert got == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    else:
        assert got == expect


def test_flatten_params() -> None:
    assert flatten_params({"a": 1, "b": {"c": [1, 2], "d": {"e": None}}}) == \
        {"a": "1", "b.c": "[1, 2]", "b.d.e": "None"}
