"""Selection strategies: given the scored candidates, which K to label next.

=====================  ===============  ==================================================
strategy               needs            picks
=====================  ===============  ==================================================
``random``             nothing          a seeded random sample (the baseline)
``entropy``            model scores     the K highest image entropies
``margin``             model scores     the K highest margin uncertainties
``least-confidence``   model scores     the K highest least-confidence values
``disagreement``       two predictions  the K largest disagreements (second model or
                                        mirror image)
``diversity``          embeddings       k-center greedy: the K images that best cover the
                                        pool, labelled images counting as covered
``hybrid``             scores +         the ``factor * K`` most uncertain, then k-center
                       embeddings       greedy down to K (uncertain *and* unlike each other)
=====================  ===============  ==================================================

Formulas: :mod:`detforge.active.uncertainty`; k-center: :mod:`detforge.active.diversity`.
Ties keep pool order (sorted keys), so every strategy is deterministic; ``random`` depends
on its seed only. Candidates are already free of near duplicates (:mod:`detforge.active.pool`).
A strategy is registered once by name, and a lookup of an unknown name lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detforge.active.diversity import k_center_greedy
from detforge.active.uncertainty import check_method
from detforge.core.errors import ConfigError

__all__ = ["STRATEGIES", "Candidates", "Picks", "Strategy", "StrategyOptions", "get_strategy",
           "register_strategy"]

F64 = NDArray[np.float64]


@dataclass
class Candidates:
    """What a strategy chooses from: one row per candidate image.

    Attributes:
        count: Number of candidates N.
        uncertainty: ``{method: [N]}`` image uncertainties, or empty when not scored.
        disagreement: ``[N]`` disagreements, or None.
        embeddings: ``[N, D]`` L2-normalised embeddings, or None.
        labelled: ``[M, D]`` embeddings of labelled images (k-center's initial centres).
    """

    count: int
    uncertainty: dict[str, F64]
    disagreement: F64 | None = None
    embeddings: NDArray[np.float32] | None = None
    labelled: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class StrategyOptions:
    """Knobs shared by strategies.

    Attributes:
        uncertainty: The measure ``hybrid`` ranks by.
        hybrid_factor: ``hybrid`` keeps the ``factor * K`` most uncertain before k-center.
        seed: Seed of ``random``.
    """

    uncertainty: str = "entropy"
    hybrid_factor: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Picks:
    """Chosen candidate rows in order of choice, with the value each was chosen for.

    Attributes:
        rows: Candidate rows, best first.
        values: The strategy's value per pick (uncertainty, disagreement, k-center
            distance), or None for ``random``.
    """

    rows: list[int]
    values: list[float | None]


Chooser = Callable[[Candidates, int, StrategyOptions], Picks]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy.

    Attributes:
        name: Its name on the command line.
        needs: What scoring must provide: ``uncertainty``, ``disagreement``, ``embedding``.
        choose: ``(candidates, k, options) -> Picks``.
        help: One line for ``--help`` and reports.
    """

    name: str
    needs: frozenset[str]
    choose: Chooser
    help: str


STRATEGIES: dict[str, Strategy] = {}
"""Registered strategies by name."""


def register_strategy(strategy: Strategy) -> None:
    """Add a strategy to :data:`STRATEGIES`.

    Raises:
        ConfigError: The name is taken.
    """
    if strategy.name in STRATEGIES:
        raise ConfigError(f"strategy {strategy.name!r} is already registered; choose another "
                          "name")
    STRATEGIES[strategy.name] = strategy


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``.

    Raises:
        ConfigError: Unknown name; the message lists the valid ones.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name]


def _check_k(c: Candidates, k: int) -> None:
    if k < 1:
        raise ConfigError(f"the budget must be at least 1, got {k}")
    if k > c.count:
        raise ConfigError(f"budget {k} is larger than the {c.count} selectable images")


def _top(values: F64, k: int) -> Picks:
    order = np.argsort(-np.asarray(values, np.float64), kind="stable")[:k]
    return Picks([int(i) for i in order], [float(values[i]) for i in order])


def _random(c: Candidates, k: int, o: StrategyOptions) -> Picks:
    _check_k(c, k)
    rows = np.random.default_rng(o.seed).permutation(c.count)[:k]
    return Picks([int(i) for i in rows], [None] * k)


def _ranked_by(method: str) -> Chooser:
    def choose(c: Candidates, k: int, o: StrategyOptions) -> Picks:
        _check_k(c, k)
        if method not in c.uncertainty:
            raise ConfigError(f"strategy {method!r} needs uncertainty scores; none were given")
        return _top(c.uncertainty[method], k)

    return choose


def _disagreement(c: Candidates, k: int, o: StrategyOptions) -> Picks:
    _check_k(c, k)
    if c.disagreement is None:
        raise ConfigError("strategy 'disagreement' needs a second prediction per image: pass "
                          "--second-model M2 or --tta")
    return _top(c.disagreement, k)


def _embeddings(c: Candidates, name: str) -> NDArray[np.float32]:
    if c.embeddings is None:
        raise ConfigError(f"strategy {name!r} needs image embeddings; none were given")
    return c.embeddings


def _diversity(c: Candidates, k: int, o: StrategyOptions) -> Picks:
    _check_k(c, k)
    rows, dist = k_center_greedy(_embeddings(c, "diversity"), k, labelled=c.labelled)
    return Picks(rows, [None if np.isinf(d) else d for d in dist])


def _hybrid(c: Candidates, k: int, o: StrategyOptions) -> Picks:
    _check_k(c, k)
    check_method(o.uncertainty)
    if o.hybrid_factor < 1:
        raise ConfigError(f"hybrid factor must be at least 1, got {o.hybrid_factor}")
    emb = _embeddings(c, "hybrid")
    if o.uncertainty not in c.uncertainty:
        raise ConfigError("strategy 'hybrid' needs uncertainty scores; none were given")
    values = c.uncertainty[o.uncertainty]
    top = _top(values, min(c.count, o.hybrid_factor * k)).rows
    eligible = np.zeros(c.count, bool)
    eligible[top] = True
    rows, _ = k_center_greedy(emb, k, labelled=c.labelled, eligible=eligible, first=top[0])
    return Picks(rows, [float(values[r]) for r in rows])


for _s in (
    Strategy("random", frozenset(), _random, "a seeded random sample (the baseline)"),
    Strategy("entropy", frozenset({"uncertainty"}), _ranked_by("entropy"),
             "highest image entropy of the class-or-background hypotheses"),
    Strategy("margin", frozenset({"uncertainty"}), _ranked_by("margin"),
             "smallest margin between the two likeliest hypotheses"),
    Strategy("least-confidence", frozenset({"uncertainty"}), _ranked_by("least-confidence"),
             "least confident likeliest hypothesis"),
    Strategy("disagreement", frozenset({"disagreement"}), _disagreement,
             "largest disagreement between two models or the image and its mirror"),
    Strategy("diversity", frozenset({"embedding"}), _diversity,
             "k-center greedy over embeddings (covers the pool)"),
    Strategy("hybrid", frozenset({"uncertainty", "embedding"}), _hybrid,
             "most uncertain first, then k-center greedy among them"),
):
    register_strategy(_s)
