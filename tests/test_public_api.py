"""`from scratchllm import X` works for every advertised name and gives the object its module defines."""

from __future__ import annotations

import importlib

import pytest

import scratchllm


@pytest.mark.parametrize("name", scratchllm.__all__)
def test_every_public_name_resolves_to_its_module_object(name):
    module = importlib.import_module(scratchllm._EXPORTS[name])
    assert getattr(scratchllm, name) is getattr(module, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        scratchllm.no_such_thing  # noqa: B018
