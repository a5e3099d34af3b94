"""``active simulate``: option checks, the summary, and one tiny real round trip with resume."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.active.simulate import simulate, summarise
from detforge.cli import app
from detforge.core.errors import ConfigError
from detforge.data.synth import synthesize

from .conftest import last_line


def _row(strategy: str, seed: int, labelled: int, value: float) -> dict[str, Any]:
    return {"strategy": strategy, "seed": seed, "round": labelled // 10 - 1,
            "labelled": labelled, "map50_95": value}


def test_summary_means_spreads_and_gain_over_random() -> None:
    rows = [_row("random", 0, 10, 0.1), _row("random", 1, 10, 0.3),
            _row("random", 0, 20, 0.2), _row("random", 1, 20, 0.4),
            _row("entropy", 0, 10, 0.1), _row("entropy", 1, 10, 0.3),
            _row("entropy", 0, 20, 0.5), _row("entropy", 1, 20, 0.5)]
    s = summarise(rows)
    ent = {p["labelled"]: p for p in s["curves"]["entropy"]}
    assert ent[20]["mean"] == pytest.approx(0.5) and ent[20]["std"] == 0.0
    rnd = {p["labelled"]: p for p in s["curves"]["random"]}
    assert rnd[20]["std"] == pytest.approx(0.1414213, rel=1e-5)  # sample std over seeds
    assert s["best"] == "entropy"
    assert s["best_vs_random"] == [{"labelled": 20, "best": "entropy", "best_mean": 0.5,
                                    "best_std": 0.0, "random_mean": pytest.approx(0.3),
                                    "random_std": pytest.approx(0.1414213, rel=1e-5),
                                    "gain": pytest.approx(0.2)}]


def test_best_is_one_strategy_for_the_whole_curve() -> None:
    rows = [_row("random", 0, 10, 0.1), _row("a", 0, 10, 0.1), _row("b", 0, 10, 0.1),
            _row("random", 0, 20, 0.3), _row("a", 0, 20, 0.4), _row("b", 0, 20, 0.2),
            _row("random", 0, 30, 0.5), _row("a", 0, 30, 0.45), _row("b", 0, 30, 0.6)]
    s = summarise(rows)   # a: mean 0.425 after round 0, b: 0.4 -> a, even where b is ahead
    assert s["best"] == "a"
    assert [(v["labelled"], round(v["gain"], 3)) for v in s["best_vs_random"]] == \
        [(20, 0.1), (30, -0.05)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "ds"
    synthesize(path, images=24, classes=2, seed=4, size=(64, 64), splits=(0.75, 0.25))
    return path


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"strategies": ["entropy", "bald"]}, "unknown strategy 'bald'"),
    ({"strategies": ["random", "random"]}, "distinct strategies"),
    ({"rounds": 0}, "at least 1"),
    ({"rounds": 4, "budget": 5}, r"5 initial \+ 4 rounds x 5 = 25 images needed.*has 18"),
], ids=["unknown-strategy", "repeated", "zero-rounds", "pool-too-small"])
def test_bad_options_are_refused_before_any_training(tiny: Path, tmp_path: Path,
                                                     kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        simulate(tiny, out=tmp_path / "sim", **kwargs)
    assert not (tmp_path / "sim").exists()


class _Strict(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images += 1
            assert dict(attrs)["src"].startswith("data:image/png;base64,")  # nothing fetched
        elif tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open.pop() == tag


@pytest.mark.slow
@pytest.mark.train
def test_one_tiny_round_writes_table_plot_resumes_and_fine_tunes(tiny: Path,
                                                                 tmp_path: Path) -> None:
    """Round trip of the CLI on 24 images; rounds start from the weights given (``--model
    base.pt``), which a learning rate of ~0 leaves as they are."""
    torch = pytest.importorskip("torch")
    from detforge.testing import seeded_yolo11n
    from detforge.train.offline import import_ultralytics

    yolo = seeded_yolo11n(64, 64)
    first = yolo.model.model[0].conv.weight
    with torch.no_grad():
        first.add_(0.05)  # unlike any fresh initialisation
    base = tmp_path / "base.pt"
    yolo.save(str(base))
    expected = first.detach().clone()
    out = tmp_path / "sim"
    frozen = ["optim.optimizer=SGD", "optim.lr0=1e-9", "optim.warmup_epochs=0",
              "optim.weight_decay=0"]
    options = ["--rounds", "1", "--budget", "4", "--strategies", "entropy", "--epochs", "1",
               "--imgsz", "64", "--batch", "4", "--model", str(base)]
    sets = [a for o in frozen for a in ("--set", o)]
    first_run = CliRunner().invoke(app, ["active", "simulate", str(tiny), "--out", str(out),
                                         *options, *sets])
    assert first_run.exit_code == 0, first_run.output[-3000:]
    doc = json.loads((out / "simulation.json").read_text())
    assert [(r["strategy"], r["round"], r["labelled"]) for r in doc["rows"]] == \
        [("entropy", 0, 4), ("entropy", 1, 8)]
    assert all(0.0 <= r["map50_95"] <= 1.0 for r in doc["rows"])
    added = json.loads((out / "seed0" / "entropy" / "round1" / "result.json").read_text())
    assert len(added["added"]) == 4 and len(set(added["labelled_files"])) == 8
    round0 = json.loads((out / "seed0" / "round0" / "result.json").read_text())
    tuned = import_ultralytics().YOLO(str(out / "seed0" / "round0" / round0["weights"]))
    torch.testing.assert_close(tuned.model.model[0].conv.weight.float(), expected.float(),
                               atol=2e-3, rtol=0)
    page = _Strict()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.images == 1 and not page.open
    again = simulate(tiny, out=out, rounds=1, budget=4, strategies=["entropy"], epochs=1,
                     imgsz=64, batch=4, model=str(base), overrides=frozen, progress=False)
    assert again.resumed == 2 and again.rows == doc["rows"]         # nothing retrained
    with pytest.raises(ConfigError, match=r"other options \(\['epochs'\]\)"):
        simulate(tiny, out=out, rounds=1, budget=4, strategies=["entropy"], epochs=2,
                 imgsz=64, batch=4, model=str(base), overrides=frozen, progress=False)
    bad = CliRunner().invoke(app, ["active", "simulate", str(tiny), "--out", str(out),
                                   *options, "--epochs", "3"])
    assert bad.exit_code == 2 and last_line(bad.output).startswith("ConfigError: ")
