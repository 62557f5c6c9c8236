"""The key-value store of a handler's project, named as Spin's key-value store in Python style (``open_default()``,
``get``, ``set``, ``delete``, ``exists``, ``get_keys``, ``get_json``, ``set_json``), over ``wasi:keyvalue`` (store,
atomics), plus wasmsock's ``kv`` extras (entries with revisions, conditional writes, time to live, listing by
prefix, usage)::

    from wasmsock import kv

    store = kv.open_default()
    store.set("greeting", "hello")
    visits = store.increment("visits", 1)

An absent value is ``None``; values are ``bytes``; a refused call raises :class:`KvError`.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Optional, TypeVar, Union

from componentize_py_types import Err
from wit_world.imports import atomics as _atomics
from wit_world.imports import kv as _wit
from wit_world.imports import wasi_keyvalue_store as _wasi
from wit_world.imports.kv import Entry, KeysPage, Usage

__all__ = [
    "Cas",
    "Entry",
    "KeysPage",
    "KvError",
    "Store",
    "Usage",
    "open",
    "open_default",
]

_T = TypeVar("_T")

# The only store a handler opens: its project's.
_DEFAULT_STORE = "default"

# How many keys `Store.list` returns without a `limit`.
_DEFAULT_LIST_LIMIT = 100

# The kinds the host writes at the start of a `wasi:keyvalue` `other` text.
_TEXT_KINDS = ("invalid", "limit", "unavailable")

_Value = Union[str, bytes, bytearray, memoryview]


class KvError(Exception):
    """Why a store call did not happen.

    ``kind`` is ``"no-such-store"``, ``"access-denied"``, ``"invalid"``, ``"limit"``, ``"conflict"``,
    ``"unavailable"``, ``"json"`` or ``"other"``; ``detail`` is the host's text; for a conflict, ``revision`` is the
    key's current revision (``None``: the key is absent). ``str(err)`` is ``kind: detail``, as in the Rust and
    JavaScript SDKs.
    """

    def __init__(self, kind: str, detail: str = "", revision: Optional[int] = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.revision = revision


def _error(case: object) -> KvError:
    """A WIT error case of either interface as a :class:`KvError`."""
    if isinstance(case, _wasi.Error_NoSuchStore):
        return KvError("no-such-store")
    if isinstance(case, _wasi.Error_AccessDenied):
        return KvError("access-denied")
    if isinstance(case, _wasi.Error_Other):
        for kind in _TEXT_KINDS:
            if case.value.startswith(f"{kind}: "):
                return KvError(kind, case.value[len(kind) + 2 :])
        return KvError("other", case.value)
    if isinstance(case, _wit.Error_Conflict):
        revision = case.value
        shown = "none (absent)" if revision is None else str(revision)
        return KvError("conflict", f"the key's revision is {shown}", revision)
    if isinstance(case, _atomics.CasError_StoreError):
        return _error(case.value)
    kinds = {_wit.Error_Invalid: "invalid", _wit.Error_Limit: "limit", _wit.Error_Unavailable: "unavailable"}
    return KvError(kinds.get(type(case), "other"), str(getattr(case, "value", "")))


def _call(fn: Callable[[], _T]) -> _T:
    """Runs a WIT call whose result may be an error, raising the error as a :class:`KvError`."""
    try:
        return fn()
    except Err as err:
        raise _error(err.value) from None


def _bytes(value: _Value) -> bytes:
    """A value to store: ``str`` as its UTF-8 bytes, binary data as it is."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a value is str or bytes, not {type(value).__name__}")


def _condition(condition: Union[str, int, None]) -> _wit.Condition:
    """A ``put`` condition: ``"always"`` (or ``None``), ``"absent"``, or a revision number."""
    if condition is None or condition == "always":
        return _wit.Condition_Always()
    if condition == "absent":
        return _wit.Condition_Absent()
    if isinstance(condition, int) and not isinstance(condition, bool):
        return _wit.Condition_Revision(condition)
    raise KvError("invalid", f"a condition is 'always', 'absent' or a revision, not {condition!r}")


class Cas:
    """A key's value as read at one moment (:meth:`Store.cas`), to be replaced only if the key has not been written
    since."""

    def __init__(self, handle: _atomics.Cas) -> None:
        self._handle = handle

    def current(self) -> Optional[bytes]:
        """The value read; ``None`` when the key was absent."""
        return _call(self._handle.current)

    def swap(self, value: _Value) -> bool:
        """Writes ``value`` if the key has not been written since it was read: ``True``; ``False`` when it has (read
        it again with :meth:`Store.cas` and retry). The handle is used up either way."""
        data = _bytes(value)
        try:
            _atomics.swap(self._handle, data)
            return True
        except Err as err:
            if isinstance(err.value, _atomics.CasError_CasFailed):
                return False
            raise _error(err.value) from None


class Store:
    """An open key-value store: the handler's project store. Every handler of the project sees the same keys; no
    other project's handler can reach them."""

    def __init__(self, bucket: _wasi.Bucket) -> None:
        self._bucket = bucket

    def get(self, key: str) -> Optional[bytes]:
        """The value of ``key``; ``None`` when it is absent (or expired)."""
        return _call(lambda: self._bucket.get(key))

    def get_text(self, key: str) -> Optional[str]:
        """The value of ``key`` decoded as UTF-8 (a malformed sequence becomes U+FFFD); ``None`` when it is absent."""
        value = self.get(key)
        return None if value is None else value.decode("utf-8", errors="replace")

    def set(self, key: str, value: _Value) -> None:
        """Sets ``key`` to ``value`` (``str`` as UTF-8), replacing any value and clearing any time to live."""
        data = _bytes(value)
        _call(lambda: self._bucket.set(key, data))

    def delete(self, key: str) -> None:
        """Deletes ``key``; deleting an absent key is not an error."""
        _call(lambda: self._bucket.delete(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        return _call(lambda: self._bucket.exists(key))

    def get_keys(self) -> List[str]:
        """Every key of the store, in byte order, read a page at a time. :meth:`list` reads one page of the keys
        with a prefix."""
        keys: List[str] = []
        cursor: Optional[str] = None
        while True:
            page = _call(lambda: self._bucket.list_keys(cursor))
            keys.extend(page.keys)
            if page.cursor is None:
                return keys
            cursor = page.cursor

    def get_json(self, key: str) -> Any:
        """The value of ``key`` parsed as JSON; ``None`` when it is absent. A value that is not JSON raises a
        ``json`` :class:`KvError`."""
        text = self.get_text(key)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as err:
            raise KvError("json", str(err)) from None

    def set_json(self, key: str, value: Any) -> None:
        """Sets ``key`` to ``value``'s JSON (compact, UTF-8 as it is)."""
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as err:
            raise KvError("json", str(err)) from None
        self.set(key, text)

    def increment(self, key: str, delta: int = 1) -> int:
        """Adds ``delta`` to the decimal number stored at ``key`` (0 when absent), atomically; the new value."""
        return _call(lambda: _atomics.increment(self._bucket, key, delta))

    def cas(self, key: str) -> Cas:
        """Reads ``key`` now, for a :meth:`Cas.swap` that writes only if the key has not changed since."""
        return Cas(_call(lambda: _atomics.Cas.new(self._bucket, key)))

    def get_entry(self, key: str) -> Optional[Entry]:
        """The value of ``key`` with its ``revision`` and ``expires_in_ms`` (``None`` without a time to live);
        ``None`` when the key is absent or expired."""
        return _call(lambda: _wit.get_entry(key))

    def put(
        self,
        key: str,
        value: _Value,
        condition: Union[str, int, None] = "always",
        ttl_seconds: Optional[int] = None,
    ) -> int:
        """Writes ``value`` at ``key`` when ``condition`` holds (``"always"``; ``"absent"``; or a revision number),
        with ``ttl_seconds`` to live if given; returns the new revision. A condition that does not hold raises a
        ``conflict`` :class:`KvError` whose ``revision`` is the key's current one."""
        options = _wit.PutOptions(_condition(condition), ttl_seconds)
        data = _bytes(value)
        return _call(lambda: _wit.put(key, data, options))

    def delete_if(self, key: str, revision: int) -> None:
        """Deletes ``key`` only when its revision is ``revision``; a ``conflict`` :class:`KvError` otherwise."""
        _call(lambda: _wit.delete_if(key, revision))

    def increment_with_ttl(self, key: str, delta: int, ttl_seconds: Optional[int]) -> int:
        """:meth:`increment`, giving the key ``ttl_seconds`` to live when this call creates it (a counter per time
        window, for rate limits)."""
        return _call(lambda: _wit.increment_with_ttl(key, delta, ttl_seconds))

    def list(self, prefix: str = "", after: Optional[str] = None, limit: int = _DEFAULT_LIST_LIMIT) -> KeysPage:
        """One page of the keys starting with ``prefix``, in byte order (``keys``, and ``next``: pass it as
        ``after`` for the following page, ``None`` on the last). ``limit`` is 1 to 1000."""
        return _call(lambda: _wit.list_keys(prefix, after, limit))

    def usage(self) -> Usage:
        """How much of its quotas the project's store uses (``keys``, ``bytes``, ``max_keys``, ``max_bytes``,
        ``max_value_bytes``)."""
        return _call(_wit.get_usage)


def open_default() -> Store:
    """Opens the project's store."""
    return open(_DEFAULT_STORE)


def open(label: str) -> Store:  # noqa: A001  (Spin's name)
    """Opens the store named ``label``; only ``"default"`` exists (any other name raises ``no-such-store``)."""
    return Store(_call(lambda: _wasi.open(label)))
