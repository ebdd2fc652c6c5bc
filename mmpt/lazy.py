"""Lazy public names for packages: `import mmpt.x` stays cheap and a name's module loads on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, api: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """(`__all__`, module `__getattr__`) for `package`; `api` maps a name to "module" or "module:attr"."""

    def __getattr__(name: str) -> Any:
        target = api.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr or name)

    return list(api), __getattr__
