"""k-center greedy, near-duplicate grouping and the strategy registry's contract."""

from __future__ import annotations

import numpy as np
import pytest

from detforge.active.diversity import (
    duplicate_groups,
    k_center_greedy,
    near_duplicates_of,
    normalise_rows,
    phash_vectors,
)
from detforge.active.strategies import (
    STRATEGIES,
    Candidates,
    Strategy,
    StrategyOptions,
    get_strategy,
    register_strategy,
)
from detforge.core.errors import ConfigError


def test_k_center_covers_clusters_before_repeating_one() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    pts = np.concatenate([c + rng.normal(0, 0.1, (25, 2)) for c in centres]).astype(np.float32)
    rows, dist = k_center_greedy(pts, 4)
    assert sorted(r // 25 for r in rows) == [0, 1, 2, 3]  # one pick per cluster
    assert np.isinf(dist[0]) and all(d > 5 for d in dist[1:])


def test_k_center_starts_from_labelled_centres_and_respects_eligibility() -> None:
    pts = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 0.0], [9.0, 0.0]], np.float32)
    rows, _ = k_center_greedy(pts, 1, labelled=np.array([[9.0, 0.0]], np.float32))
    assert rows == [0]  # the point farthest from what is labelled
    rows, _ = k_center_greedy(pts, 2, eligible=np.array([True, True, False, False]), first=0)
    assert rows == [0, 1]
    with pytest.raises(ConfigError, match="cannot pick 3"):
        k_center_greedy(pts, 3, eligible=np.array([True, True, False, False]))


def test_phash_vectors_turn_hamming_into_euclidean_distance() -> None:
    v = phash_vectors([0, 0b1011, 2**64 - 1])
    d = ((v[:, None] - v[None]) ** 2).sum(-1) * 16
    np.testing.assert_allclose(d[0], [0, 3, 64])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(normalise_rows(np.array([[3.0, 4.0]])), axis=1),
                               1.0)


def test_duplicate_groups_join_exact_and_near_copies() -> None:
    hashes = [0, 0b111, 2**40 - 1, 0xFF << 56, 2**40 - 1]
    digests = ["a", "b", "c", "d", "e"]
    assert duplicate_groups(hashes, digests).tolist() == [0, 0, 2, 3, 2]
    assert duplicate_groups(hashes, digests, max_bits=2).tolist() == [0, 1, 2, 3, 2]
    assert duplicate_groups([5, 2**60], ["same", "same"]).tolist() == [0, 0]  # equal bytes


def test_near_duplicates_of_labelled_images() -> None:
    pool = [0, 2**50 - 1, 0b11]
    labelled = [2**50 - 1 - 1, 0xFF << 56]
    assert near_duplicates_of(pool, labelled) == {1: 0}
    assert near_duplicates_of(pool, []) == {}


def _candidates(n: int = 12) -> Candidates:
    rng = np.random.default_rng(1)
    unc = {m: rng.random(n) for m in ("entropy", "margin", "least-confidence")}
    emb = normalise_rows(rng.normal(size=(n, 8)))
    return Candidates(n, unc, rng.random(n), emb, normalise_rows(rng.normal(size=(3, 8))))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_picks_k_distinct_rows_deterministically(name: str) -> None:
    strategy = get_strategy(name)
    c = _candidates()
    picks = strategy.choose(c, 5, StrategyOptions())
    again = strategy.choose(c, 5, StrategyOptions())
    assert len(picks.rows) == len(set(picks.rows)) == 5
    assert all(0 <= r < c.count for r in picks.rows)
    assert picks.rows == again.rows
    with pytest.raises(ConfigError, match="larger than the 12 selectable"):
        strategy.choose(c, 13, StrategyOptions())


@pytest.mark.parametrize("name", ["entropy", "margin", "least-confidence", "disagreement"])
def test_ranking_strategies_take_the_highest_values(name: str) -> None:
    c = _candidates()
    values = c.disagreement if name == "disagreement" else c.uncertainty[name]
    assert values is not None
    picks = get_strategy(name).choose(c, 4, StrategyOptions())
    assert picks.rows == np.argsort(-values)[:4].tolist()


def test_hybrid_stays_inside_the_most_uncertain_and_random_follows_its_seed() -> None:
    c = _candidates(30)
    picks = get_strategy("hybrid").choose(c, 4, StrategyOptions(hybrid_factor=2))
    top8 = set(np.argsort(-c.uncertainty["entropy"])[:8].tolist())
    assert set(picks.rows) <= top8
    r0 = get_strategy("random").choose(c, 5, StrategyOptions(seed=0)).rows
    r1 = get_strategy("random").choose(c, 5, StrategyOptions(seed=1)).rows
    assert r0 != r1


def test_missing_inputs_and_registry_errors() -> None:
    bare = Candidates(5, {})
    with pytest.raises(ConfigError, match="--second-model M2 or --tta"):
        get_strategy("disagreement").choose(bare, 2, StrategyOptions())
    with pytest.raises(ConfigError, match="needs image embeddings"):
        get_strategy("diversity").choose(bare, 2, StrategyOptions())
    with pytest.raises(ConfigError, match=r"choose one of \['disagreement', 'diversity'"):
        get_strategy("bald")
    with pytest.raises(ConfigError, match="already registered"):
        register_strategy(Strategy("random", frozenset(), STRATEGIES["random"].choose, ""))
