"""The configuration of a handler's project (``wasi:config/store``), named as Spin's variables: values the operator
sets per project, read by name::

    from wasmsock import variables

    upstream = variables.get("upstream-url") or "ws://127.0.0.1:9000"
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple, TypeVar

from componentize_py_types import Err
from wit_world.imports import wasi_config_store as _wit

__all__ = ["ConfigError", "get", "get_all"]

_T = TypeVar("_T")


class ConfigError(Exception):
    """Why the configuration could not be read: ``kind`` is ``"upstream"`` or ``"io"``, ``detail`` the host's text."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def _call(fn: Callable[[], _T]) -> _T:
    """Runs a WIT call whose result may be an error, raising the error as a :class:`ConfigError`."""
    try:
        return fn()
    except Err as err:
        kind = "upstream" if isinstance(err.value, _wit.Error_Upstream) else "io"
        raise ConfigError(kind, str(getattr(err.value, "value", ""))) from None


def get(name: str) -> Optional[str]:
    """The value of the configuration ``name``; ``None`` when the project has no such value. Within one event the
    answers do not change, even if the operator changes the configuration meanwhile."""
    return _call(lambda: _wit.get(name))


def get_all() -> List[Tuple[str, str]]:
    """Every configuration value of the project, as ``(name, value)`` in name order."""
    return _call(_wit.get_all)
