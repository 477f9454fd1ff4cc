"""Post-training methods on the two-mode mixture, by name.

Every module of this package is imported on first lookup, so a module that defines a
``@register``-ed :class:`~forgetlab.methods.base.Method` subclass is available by its name
without further edits. See :mod:`forgetlab.methods.base` for the interface and
:mod:`forgetlab.vocabulary` for the table of names and knobs shared with the language model.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from forgetlab.methods.base import Method, registered
from forgetlab.vocabulary import canonical_name


def _discover() -> dict[str, type[Method]]:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    return registered()


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(_discover())


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (or an alias of it, :mod:`forgetlab.vocabulary`);
    ValueError listing the allowed names."""
    name = canonical_name(name)
    methods = registered()
    if name not in methods:  # scan the package only for a name not registered yet
        methods = _discover()
    if name not in methods:
        raise ValueError(f"unknown method '{name}'; allowed: {', '.join(sorted(methods))}")
    return methods[name]


def make_method(name: str, **knobs: Any) -> Method:
    """An instance of method ``name`` with validated ``knobs`` (unknown knobs raise)."""
    return get_method(name)(**knobs)


__all__ = ["Method", "get_method", "list_methods", "make_method"]
