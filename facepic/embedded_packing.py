"""WiredTiger's key and value packing, without parsing the format at each call.

WiredTiger's Python API (which SecantusDB, the embedded default's server, stores through)
packs every key and value it sets, and unpacks every one it reads, with
``wiredtiger.packing``: pure Python that parses the format string again at each call through
two generators. A quarter of the embedded server's CPU writing a photo's documents went there
(``cProfile`` of its command thread on ``bench/embedded.py``'s writes: ``pack`` 0.72 of
2.86 s). SecantusDB uses a handful of formats (``u``, ``q``, ``SS``, ``SSS``, ``SSq``, ``SSu``,
``SSSu``); a format made only of ``S``, ``u`` and the integer conversions without counts is
parsed once into a plan, and its values packed by the same rules: ``S`` a string's UTF-8
bytes up to any NUL, then a NUL; ``u`` the bytes themselves, their length packed before them
unless they come last; an integer WiredTiger's variable-length int (``pack_int``, the small
ones kept as met). Any other format, or a value of another type than those rules
expect, goes to WiredTiger's own functions, whose results and errors are then the answer.
``tests/test_embedded_packing.py`` checks both ways give the same bytes and values.

Applied by ``facepic.embedded`` to the server it starts; a WiredTiger whose module lacks
these names is left as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_INTEGERS = frozenset("hHiIlLqQr")
_STRING, _LAST_BYTES, _SIZED_BYTES, _INTEGER = "S", "u", "U", "i"
_SMALL = range(-8256, 8256)  # WiredTiger packs these in one or two bytes


@functools.lru_cache(maxsize=256)
def _plan(fmt: str) -> tuple[str, ...] | None:
    """The conversions of ``fmt`` in order (``u`` as ``U`` where its length is packed before
    it), or None where ``fmt`` holds anything else (counts, pads, bytes, bits, fixed strings,
    another byte order) or nothing."""
    body = fmt[1:] if fmt.startswith(".") else fmt
    if not body:
        return None
    plan: list[str] = []
    for offset, char in enumerate(body):
        if char == "S":
            plan.append(_STRING)
        elif char == "u":
            plan.append(_LAST_BYTES if offset == len(body) - 1 else _SIZED_BYTES)
        elif char in _INTEGERS:
            plan.append(_INTEGER)
        else:
            return None
    return tuple(plan)


def planned(
    pack: Callable[..., bytes],
    unpack: Callable[[str, Any], Any],
    pack_int: Callable[[int], bytes],
    unpack_int: Callable[[Any], tuple[int, Any]],
) -> tuple[Callable[..., Any], Callable[[str, Any], Any]]:
    """``pack`` and ``unpack`` (WiredTiger's) with the planned formats done here."""
    small: dict[int, bytes] = {}  # packed small integers (lengths, counters), filled as met

    def integer(value: int) -> bytes:
        packed = small.get(value)
        if packed is None:
            packed = pack_int(value)
            if value in _SMALL:
                small[value] = packed
        return packed

    def fast_pack(fmt: str, *values: Any) -> Any:
        plan = _plan(fmt) if type(fmt) is str else None
        if plan is None or len(values) != len(plan):
            return pack(fmt, *values)
        out: list[bytes] = []
        for kind, value in zip(plan, values):
            if kind == _INTEGER:
                if type(value) is not int:
                    return pack(fmt, *values)
                out.append(integer(value))
            elif kind == _STRING:
                if type(value) is not str:
                    return pack(fmt, *values)
                if "\0" in value:
                    value = value[: value.find("\0")]
                out.append(value.encode())
                out.append(b"\0")
            else:
                if type(value) is not bytes:
                    return pack(fmt, *values)
                if kind == _SIZED_BYTES:
                    out.append(integer(len(value)))
                out.append(value)
        return b"".join(out)

    def fast_unpack(fmt: str, data: Any) -> Any:
        plan = _plan(fmt) if type(fmt) is str else None
        if plan is None or type(data) is not bytes:
            return unpack(fmt, data)
        result: list[Any] = []
        for kind in plan:
            if kind == _INTEGER:
                value, data = unpack_int(data)
                result.append(value)
            elif kind == _STRING:
                end = data.find(b"\0")
                result.append(data[:end].decode())
                data = data[end + 1 :]
            elif kind == _LAST_BYTES:
                result.append(data)
                data = b""
            else:
                size, data = unpack_int(data)
                result.append(data[:size])
                data = data[size:]
        return result

    return fast_pack, fast_unpack


def apply() -> bool:
    """``plan_formats`` on the cursor module WiredTiger loaded (a top-level ``swig_wiredtiger``,
    which ``wiredtiger`` names as its attribute); False where there is none."""
    try:
        import wiredtiger
    except ImportError:
        return False
    module = getattr(wiredtiger, "swig_wiredtiger", None)
    return module is not None and plan_formats(module)


def plan_formats(module: Any) -> bool:
    """Give WiredTiger's cursor module (``wiredtiger.swig_wiredtiger``) the planned ``pack``
    and ``unpack``; whether it could (the names found, now or by an earlier call)."""
    if getattr(module, "_facepic_planned", False):
        return True
    try:
        from wiredtiger.intpacking import pack_int, unpack_int
    except ImportError:  # pragma: no cover - a WiredTiger laid out otherwise
        return False
    pack, unpack = getattr(module, "pack", None), getattr(module, "unpack", None)
    if not callable(pack) or not callable(unpack):
        return False
    module.pack, module.unpack = planned(pack, unpack, pack_int, unpack_int)
    module._facepic_planned = True
    return True
