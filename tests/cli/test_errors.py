from __future__ import annotations

import typer
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import DatasetError

runner = CliRunner()


@app.command("_raise-for-test", hidden=True)
def _raise_for_test() -> None:
    raise DatasetError("broken box, drop it", path="labels/a.txt", line=3)


def test_detforge_error_is_one_line_and_exit_code() -> None:
    result = runner.invoke(app, ["_raise-for-test"])
    assert result.exit_code == 2
    assert "DatasetError: labels/a.txt:3: broken box, drop it" in result.output
    assert "Traceback" not in result.output


def test_help_lists_data_group() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "data" in result.output
    assert isinstance(app, typer.Typer)
