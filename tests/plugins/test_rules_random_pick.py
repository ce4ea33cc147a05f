"""Unit tests for the ``random`` router rule."""

from __future__ import annotations

import random

import pytest

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import random_pick

PROVIDERS = [ProviderInfo(name, "openai") for name in ("a", "b", "c", "d")]


def _ctx(make_ctx, **settings):
    return make_ctx(providers=PROVIDERS, plugin=random_pick, settings=settings)


def test_seed_makes_the_pick_reproducible(make_ctx) -> None:
    names = ["a", "b", "c", "d"]
    for seed in range(20):
        expected = random.Random(seed).choice(names)
        assert random_pick.route(_ctx(make_ctx, providers=names, seed=seed)) == Route(expected)


def test_every_provider_gets_picked(make_ctx, monkeypatch) -> None:
    monkeypatch.setattr(random_pick, "_rng", random.Random(1234))
    picks = {random_pick.route(_ctx(make_ctx, providers=["a", "b", "c"])).provider for _ in range(200)}
    assert picks == {"a", "b", "c"}


def test_empty_providers_means_all(make_ctx, monkeypatch) -> None:
    monkeypatch.setattr(random_pick, "_rng", random.Random(99))
    picks = {random_pick.route(_ctx(make_ctx)).provider for _ in range(200)}
    assert picks == {"a", "b", "c", "d"}


def test_not_loaded_providers_are_never_picked(make_ctx) -> None:
    for seed in range(30):
        assert random_pick.route(_ctx(make_ctx, providers=["gone", "b", "missing"], seed=seed)) == Route("b")
    assert random_pick.route(_ctx(make_ctx, providers=["gone"], seed=1)) is None


def test_candidates_carry_a_model(make_ctx) -> None:
    candidates = [{"provider": "a", "model": "m-a"}, {"provider": "gone", "model": "x"}, {"provider": "c"}]
    seen = set()
    for seed in range(40):
        seen.add(random_pick.route(_ctx(make_ctx, candidates=candidates, seed=seed)))
    assert seen == {Route("a", "m-a"), Route("c", None)}


def test_candidates_with_seed_match_random_choice(make_ctx) -> None:
    candidates = [{"provider": "a", "model": "1"}, {"provider": "b", "model": "2"}, {"provider": "c", "model": "3"}]
    expected = random.Random(7).choice([Route("a", "1"), Route("b", "2"), Route("c", "3")])
    assert random_pick.route(_ctx(make_ctx, candidates=candidates, seed=7)) == expected


def test_candidates_all_unavailable_pass(make_ctx) -> None:
    assert random_pick.route(_ctx(make_ctx, candidates=[{"provider": "gone"}], seed=1)) is None


def test_rewrite_model_applies_to_provider_picks(make_ctx) -> None:
    assert random_pick.route(_ctx(make_ctx, providers=["d"], rewrite_model="x")) == Route("d", "x")


@pytest.mark.parametrize("candidates", [["a"], [{"model": "x"}], [{"provider": "a", "model": 3}], "a"])
def test_bad_candidates_raise(make_ctx, candidates) -> None:
    with pytest.raises(ValueError, match="candidates"):
        random_pick.route(_ctx(make_ctx, candidates=candidates))
