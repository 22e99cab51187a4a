"""House style, checked like torchrec's linter does: every public class and function of the libraries (qarm,
recsys_models) has a docstring; every tensor argument's shape is stated (in the function's, its class's or its
module's docstring: `codes: (N, L)`, `query (B, D)`); and an nn.Module constructor takes at most 5 arguments
besides the parts injected into it (arguments typed as an nn.Module), the rest grouped in a config dataclass."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
import typing
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

LIBRARIES = ("qarm", "recsys_models")
MAX_MODULE_ARGS = 5


def _modules() -> Iterator[types.ModuleType]:
    for lib in LIBRARIES:
        pkg = importlib.import_module(lib)
        yield pkg
        for info in pkgutil.walk_packages(pkg.__path__, f"{lib}."):
            yield importlib.import_module(info.name)


MODULES = list(_modules())


def _public(module: types.ModuleType) -> Iterator[tuple[str, object, object | None]]:
    """(qualified name, object, owning class) of the public functions, classes and methods defined in `module`."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj, None
        elif inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj, None
            for mname, member in vars(obj).items():
                if inspect.isfunction(member) and (not mname.startswith("_") or mname == "__init__"):
                    yield f"{module.__name__}.{name}.{mname}", member, obj


def _hints(fn: object) -> dict[str, object]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation naming a type only imported for type checking
        return {}


def _is(tp: object, kind: type) -> bool:
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return any(isinstance(a, type) and issubclass(a, kind) for a in args)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_names_have_docstrings(module: types.ModuleType) -> None:
    assert (module.__doc__ or "").strip(), f"{module.__name__}: module docstring"
    missing = [name for name, obj, owner in _public(module)
               if not (obj.__doc__ or "").strip() and not (owner is not None and name.endswith((".__init__", ".forward")))]
    assert not missing, f"public names without a docstring: {missing}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_tensor_arguments_state_their_shapes(module: types.ModuleType) -> None:
    missing = []
    for name, obj, owner in _public(module):
        if not inspect.isfunction(obj):
            continue
        docs = " ".join(d or "" for d in (obj.__doc__, getattr(owner, "__doc__", None), module.__doc__))
        for arg, tp in _hints(obj).items():
            if arg == "return" or not (_is(tp, torch.Tensor) or _is(tp, np.ndarray)):
                continue
            # the argument named, then within a few characters a parenthesised shape: `codes: (N, L)`
            if not re.search(rf"\b{re.escape(arg)}\b[^()]{{0,40}}(\(\s*[A-Za-z0-9_.]|scalar)", docs, re.IGNORECASE):
                missing.append(f"{name}({arg})")
    assert not missing, f"tensor arguments whose shape no docstring states: {missing}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_module_constructors_take_few_arguments(module: types.ModuleType) -> None:
    too_many = []
    for name, obj, _ in _public(module):
        if not (inspect.isclass(obj) and issubclass(obj, nn.Module)) or "__init__" not in vars(obj):
            continue
        hints = _hints(obj.__init__)
        params = [p for p in inspect.signature(obj.__init__).parameters.values() if p.name != "self"]
        plain = [p.name for p in params if not _is(hints.get(p.name), nn.Module)]
        if len(plain) > MAX_MODULE_ARGS:
            too_many.append(f"{name}: {plain}")
    assert not too_many, f"nn.Module constructors with more than {MAX_MODULE_ARGS} non-module arguments: {too_many}"
