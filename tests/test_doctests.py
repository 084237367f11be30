"""Run the docstring examples of every module of the package (they are documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tess_ffi


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(tess_ffi.__path__, "tess_ffi."):
        names.append(info.name)
    for pkg in ("tess_ffi.shared", "tess_ffi.services"):
        module = importlib.import_module(pkg)
        names += [i.name for i in pkgutil.walk_packages(module.__path__, f"{pkg}.")]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest failure(s) in {name}"
