"""`scratchllm quickstart` flags reach quickstart(): --fixed-recipe trains the preset as it is, its absence leaves
the preset's own recipe mode (the budget-aware recipe by default)."""

from __future__ import annotations

import pytest

import scratchllm.quickstart
from scratchllm.cli import main


@pytest.mark.parametrize(("flags", "recipe"), [([], None), (["--fixed-recipe"], "fixed")])
def test_fixed_recipe_flag_reaches_quickstart(flags, recipe, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(scratchllm.quickstart, "quickstart", lambda **kw: calls.append(kw))
    assert main(["quickstart", "--out", str(tmp_path / "run"), "--minutes", "2", *flags]) == 0
    assert calls == [{"corpus": "shakespeare", "minutes": 2.0, "out_dir": str(tmp_path / "run"),
                      "preset": "speedrun-5min", "recipe": recipe}]
