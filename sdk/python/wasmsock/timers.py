"""Timers on the current connection and alarms of the project (the WIT ``timers`` interface). A handler that arms
either asks :func:`get_event` first: ``websockets.get_method()`` predates them and calls their events messages
(without one)::

    from wasmsock import timers, websockets

    def on_event():
        event = timers.get_event()
        if event == "onopen":
            timers.set_timer(1000, b"1")
        elif event == "ontimer":
            websockets.send(f"tick {timers.get_timer().payload.decode()}")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, TypeVar, Union

from componentize_py_types import Err
from wit_world.imports import timers as _wit

__all__ = ["Alarm", "FiredAlarm", "FiredTimer", "TimerError", "cancel_alarm", "cancel_timer", "get_alarm",
           "get_event", "get_lifecycle", "get_timer", "is_on_alarm", "is_on_timer", "list_alarms", "set_alarm", "set_timer"]

_T = TypeVar("_T")

_KINDS = {
    _wit.EventKind.ONOPEN: "onopen",
    _wit.EventKind.ONMESSAGE: "onmessage",
    _wit.EventKind.ONERROR: "onerror",
    _wit.EventKind.ONCLOSE: "onclose",
    _wit.EventKind.ONTIMER: "ontimer",
    _wit.EventKind.ONALARM: "onalarm",
}


class TimerError(Exception):
    """Why a timer or an alarm was not set: ``kind`` is ``closed``, ``invalid``, ``limit``, ``conflict`` or
    ``unavailable`` (the store), ``detail`` the host's text."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def _call(fn: Callable[[], _T]) -> _T:
    """Runs a WIT call whose result may be an error, raising it as a :class:`TimerError`."""
    try:
        return fn()
    except Err as err:
        name = type(err.value).__name__.split("_", 1)[-1]
        kind = "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")
        value = getattr(err.value, "value", "")
        raise TimerError(kind, "" if value is None else str(value)) from None


@dataclass
class FiredTimer:
    """The timer of an ``ontimer`` event."""

    id: int
    payload: bytes


@dataclass
class FiredAlarm:
    """The alarm of an ``onalarm`` event."""

    name: str
    payload: bytes


@dataclass
class Alarm:
    """An alarm of the project, as :func:`list_alarms` shows it."""

    name: str
    handler: str
    due_in_ms: int
    payload: bytes


def get_event() -> str:
    """The kind of the event: ``"onopen"``, ``"onmessage"``, ``"onerror"``, ``"onclose"``, ``"ontimer"`` or
    ``"onalarm"``."""
    return _KINDS[_wit.get_event()]


_LIFECYCLES = {
    _wit.Lifecycle.PER_EVENT: "per-event",
    _wit.Lifecycle.PER_CONNECTION: "per-connection",
    _wit.Lifecycle.SHARED: "shared",
}


def get_lifecycle() -> str:
    """How long the instance running the event lives: ``"per-event"`` (nothing in it reaches a later event),
    ``"per-connection"`` (this connection's later events) or ``"shared"`` (every connection's)."""
    return _LIFECYCLES[_wit.get_lifecycle()]


def is_on_timer() -> bool:
    """Whether the event is a timer of the current connection firing."""
    return _wit.get_event() == _wit.EventKind.ONTIMER


def is_on_alarm() -> bool:
    """Whether the event is an alarm of the project firing (there is no current connection)."""
    return _wit.get_event() == _wit.EventKind.ONALARM


def _payload(payload: Union[str, bytes, None]) -> bytes:
    if payload is None:
        return b""
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def set_timer(delay_ms: int, payload: Union[str, bytes, None] = None) -> int:
    """Arms a timer on the current connection: an ``ontimer`` event carrying ``payload`` (at most 4 KiB) after
    ``delay_ms`` (1 ms to a day), in order with its other events and never after its close. Fires once. Returns its
    id."""
    return _call(lambda: _wit.set_timer(delay_ms, _payload(payload)))


def cancel_timer(timer_id: int) -> bool:
    """Cancels timer ``timer_id`` of the current connection; whether it was still armed."""
    return _wit.cancel_timer(timer_id)


def get_timer() -> Optional[FiredTimer]:
    """The timer of an ``ontimer`` event; ``None`` for other events."""
    fired = _wit.get_timer()
    return None if fired is None else FiredTimer(fired.id, bytes(fired.payload))


def set_alarm(name: str, delay_ms: int, payload: Union[str, bytes, None] = None) -> None:
    """Sets the project's alarm ``name``: an ``onalarm`` event of this handler carrying ``payload`` after ``delay_ms``
    (1 ms to 366 days), kept in the project's store across restarts and deploys, fired once on one host. Setting a
    name again replaces its alarm."""
    _call(lambda: _wit.set_alarm(name, delay_ms, _payload(payload)))


def cancel_alarm(name: str) -> bool:
    """Cancels the project's alarm ``name``; whether it was set."""
    return _call(lambda: _wit.cancel_alarm(name))


def list_alarms() -> List[Alarm]:
    """The project's alarms, soonest first."""
    alarms = _call(_wit.list_alarms)
    return [Alarm(a.name, a.handler, a.due_in_ms, bytes(a.payload)) for a in alarms]


def get_alarm() -> Optional[FiredAlarm]:
    """The alarm of an ``onalarm`` event; ``None`` for other events."""
    fired = _wit.get_alarm()
    return None if fired is None else FiredAlarm(fired.name, bytes(fired.payload))
