"""The recipes: each is an initialisation and stages whose shares of the budget add up to one."""

from __future__ import annotations

import pytest

from hyena_lite.distill.recipes import RECIPES, STAGES


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_spends_its_whole_budget_on_known_stages(name):
    recipe = RECIPES[name]
    assert recipe["init"] in ("teacher", "fresh", "random")
    assert sum(share for _, share, _ in recipe["stages"]) == pytest.approx(1.0)
    assert all(stage in STAGES for stage, _, _ in recipe["stages"])
