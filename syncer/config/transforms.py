"""Route transforms named ``module:function``: imported once, when the configuration is read."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from syncer.errors import ConfigError


@functools.cache  # imported once per process
def import_transform(spec: str) -> Callable[[dict[str, Any]], Any]:
    """The callable ``module:function`` names; ``ConfigError`` saying why it cannot be had."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ConfigError(f'{spec!r} is not of the form "module:function"')
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever the user module raises at import
        raise ConfigError(f"{spec!r} cannot be imported: {type(error).__name__}: {error}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"{spec!r}: module {module_name!r} has no callable {function_name!r}")
    return function  # type: ignore[no-any-return]
