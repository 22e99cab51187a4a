"""Plugin registries: rankers, variants, quantizers and datasets, found by key.

A registry is filled from two doors, and the project's own built-ins use the first one too:

    entry points   a package declares `[project.entry-points."qarm_bench.rankers"] mlp = "mypkg.rankers:MLP"`
                   (groups qarm_bench.rankers, qarm_bench.variants, qarm_bench.quantizers, qarm_bench.datasets);
                   qarm-bench's pyproject.toml declares DLRM, DIN, SIM, every variant, the quantizers and the
                   dataset loaders that way. An entry point is loaded only when its key is used, so listing the
                   keys (config validation) imports nothing heavy.
    decorator      code in the user's own tree: `@RANKERS.register("mlp")` above a factory, or
                   `VARIANTS.add(Variant(...))`; such a module must be imported before the config is loaded
                   (the Python API: import it, then `benchmark.run(...)`). Worker processes import the same
                   modules again (`plugin_modules`).

An unknown key is a ConfigError naming the setting, the registered keys and the closest one ("did you mean").
"""

from __future__ import annotations

import difflib
import functools
import importlib
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, Generic, TypeVar

from benchmark.core.errors import ConfigError

T = TypeVar("T")
PROJECT = "qarm-bench"  # the distribution whose entry points declare the built-ins


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest known name, or ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(setting: str, kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """The error for an unknown key: the setting, the registered keys, the closest one."""
    known = sorted(known)
    return ConfigError(f"{setting}: unknown {kind} {name!r}{did_you_mean(name, known)} "
                       f"(registered: {', '.join(known) or 'none'})")


@functools.cache
def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


class Registry(Generic[T]):
    """Objects of one kind by key. kind: "ranker", ...; group: the entry-point group; setting: the config key
    that names them (for error messages). The layer that uses a registry checks the objects' type
    (benchmark.config.variants.get_variant, ...)."""

    def __init__(self, kind: str, group: str, setting: str) -> None:
        self.kind, self.group, self.setting = kind, group, setting
        self._objects: dict[str, T] = {}
        self._modules: dict[str, str] = {}  # key -> module of a decorator registration

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@REGISTRY.register("key")` registers what it decorates under "key"."""
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj
        return deco

    def add(self, name: str, obj: T) -> T:
        """Register `obj` under `name` (a key an installed entry point also declares is refused)."""
        if not name or not isinstance(name, str):
            raise ConfigError(f"{self.group}: a {self.kind} key must be a non-empty string, got {name!r}")
        if name in _entry_points(self.group) and _entry_points(self.group)[name].load() is not obj:
            raise ConfigError(f"{self.group}: {self.kind} {name!r} is already declared by an installed package's "
                              "entry point; choose another key")
        if name in self._objects and self._objects[name] is not obj:
            raise ConfigError(f"{self.group}: {self.kind} {name!r} is registered twice")
        self._objects[name] = obj
        if name not in _entry_points(self.group):
            self._modules[name] = _registering_module()
        return obj

    def remove(self, name: str) -> None:
        """Forget a decorator registration (or a loaded entry point's object: it loads again on next use)."""
        self._objects.pop(name, None)
        self._modules.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every key: the entry points' (nothing is imported) and the decorator registrations'."""
        return tuple(dict.fromkeys([*_entry_points(self.group), *self._objects]))

    def __contains__(self, name: object) -> bool:
        return name in self._objects or name in _entry_points(self.group)

    def require(self, name: str, setting: str | None = None) -> None:
        """A ConfigError unless `name` is registered (nothing is loaded)."""
        if name not in self:
            if not _entry_points(self.group):
                raise ConfigError(f"{setting or self.setting}: no {self.kind} is registered at all: the entry points "
                                  f"of {PROJECT} are not installed (run `make setup` or `pip install -e .`)")
            raise unknown(setting or self.setting, self.kind, name, self.names())

    def get(self, name: str, setting: str | None = None) -> T:
        """The object registered under `name`, loading its entry point on first use."""
        if name not in self._objects:
            self.require(name, setting)
            self._objects[name] = _entry_points(self.group)[name].load()
        return self._objects[name]

    def get_as(self, name: str, cls: type, setting: str | None = None) -> Any:
        """`get(name)`, checked to be a `cls` whose `.name` is `name` (what each layer's spec type promises)."""
        obj = self.get(name, setting)
        if not isinstance(obj, cls) or getattr(obj, "name", None) != name:
            raise ConfigError(f"{setting or self.setting}: the {self.group} entry {name!r} is {obj!r}, not a "
                              f"{cls.__name__} named {name!r}")
        return obj

    def plugin_modules(self) -> tuple[str, ...]:
        """Modules that registered a key by decorator (a spawned worker imports them again)."""
        return tuple(sorted(set(self._modules.values())))


def _registering_module() -> str:
    """The module whose code called register/add (the first frame outside this module)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame is not None else ""


def refresh() -> None:
    """Read the installed entry points again (after installing a plugin package, or changing sys.path)."""
    _entry_points.cache_clear()


def import_plugins(modules: Iterable[str]) -> None:
    """Import modules that register plugins by decorator (in a spawned worker: the parent's)."""
    for m in modules:
        if m not in ("__main__", "__mp_main__"):
            importlib.import_module(m)


RANKERS: Registry[Any] = Registry("ranker", "qarm_bench.rankers", "suite.models")
VARIANTS: Registry[Any] = Registry("variant", "qarm_bench.variants", "suite.variants")
QUANTIZERS: Registry[Any] = Registry("quantizer", "qarm_bench.quantizers", "quantize.quantizer")
DATASETS: Registry[Any] = Registry("dataset", "qarm_bench.datasets", "data.dataset")
REGISTRIES = (RANKERS, VARIANTS, QUANTIZERS, DATASETS)


def plugin_modules() -> tuple[str, ...]:
    """Every module that registered a plugin by decorator, in any registry."""
    return tuple(sorted({m for r in REGISTRIES for m in r.plugin_modules()}))
