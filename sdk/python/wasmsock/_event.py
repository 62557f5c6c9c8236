"""The current event, asked of the host once per event (the WIT ``events.get-current``) and kept until the next: the
SDK's ``get_method``, ``get_message``, ``get_binary_message``, ``get_error``, ``timers.get_event``, ``get_timer`` and
``get_alarm`` answer from it, where each used to be a host call of its own. ``build.py``'s entry calls
``event_starts()`` before every event."""

from __future__ import annotations

from typing import Any, Optional

from wit_world.imports import events as _events
from wit_world.imports.timers import EventKind
from wit_world.imports.websockets import Method

_current: Optional[_events.Event] = None

# Timers and alarms are ``onmessage`` to ``get_method`` (the WIT's ``get-method`` predates them).
_METHODS = {
    EventKind.ONOPEN: Method.ONOPEN,
    EventKind.ONMESSAGE: Method.ONMESSAGE,
    EventKind.ONERROR: Method.ONERROR,
    EventKind.ONCLOSE: Method.ONCLOSE,
    EventKind.ONTIMER: Method.ONMESSAGE,
    EventKind.ONALARM: Method.ONMESSAGE,
}


def event_starts() -> None:
    """Forgets the last event: the next question asks the host again."""
    global _current
    _current = None


def current() -> _events.Event:
    """The current event (its ``kind`` and ``data``)."""
    global _current
    if _current is None:
        _current = _events.get_current()
    return _current


def data(variant: type) -> Any:
    """What came with the current event when it is of ``variant`` (e.g. ``EventData_Text``); ``None`` otherwise."""
    value = current().data
    return value.value if isinstance(value, variant) else None


def method() -> Method:
    """The Dirigible method of the current event."""
    return _METHODS[current().kind]


Text = _events.EventData_Text
Binary = _events.EventData_Binary
Error = _events.EventData_Error
Timer = _events.EventData_Timer
Alarm = _events.EventData_Alarm
