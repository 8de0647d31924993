"""Turning user payloads and results into JSON text PostgreSQL's jsonb accepts.

JSON only, never pickle. Everything that jsonb would reject, or that would
change meaning on the way (NaN, non-string keys), is refused here, before any
SQL runs, with a message that names the problem.
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
import math
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from jobqueue._errors import InvalidJobError

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

_max_payload_bytes = DEFAULT_MAX_PAYLOAD_BYTES

# Deep enough for any real payload, shallow enough that json and PostgreSQL never hit their own limits.
MAX_NESTING_DEPTH = 1000


def set_max_payload_bytes(limit: int) -> None:
    """Set the size limit for encoded payloads (default 1 MiB). Applies process-wide."""
    global _max_payload_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise InvalidJobError(f"max payload size must be a positive int, got {limit!r}")
    _max_payload_bytes = limit


def max_payload_bytes() -> int:
    """The current size limit for encoded payloads, in bytes."""
    return _max_payload_bytes


# Exact types that are plain JSON values already (to_json_value returns them as they are).
_PLAIN_JSON_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})


def to_json_value(value: Any, what: str = "payload") -> Any:
    """Convert pydantic models and dataclass instances to plain JSON values."""
    if type(value) in _PLAIN_JSON_TYPES:
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return to_jsonable_python(value)
        except Exception as exc:
            raise InvalidJobError(f"{what} is not JSON-serialisable: {exc}") from exc
    return value


def _is_flat_and_clean(value: Any) -> bool:
    """True for the common payload: a dict of str keys to scalars, without NUL characters.
    Such a value needs no walk (json.dumps still rejects NaN and infinity)."""
    if type(value) is not dict:
        return False
    for key, item in value.items():
        if type(key) is not str or "\x00" in key:
            return False
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return False
        elif kind is not int and kind is not float and kind is not bool and item is not None:
            return False
    return True


_INT64_BOUND = 1 << 63
# Upper bounds of the JSON length of a scalar: an int below 2**63 (sign and 19 digits), a
# float's repr, true/false/null. A str of n ASCII characters takes at most 6n + 2 (\u00XX).
_MAX_SCALAR_JSON = 24


def _valid_without_encoding(value: Any) -> bool:
    """True when ``value`` certainly encodes without error and within the size limit, judged
    without encoding it: a dict of ASCII str keys to ASCII strs, bools, None, finite floats
    and ints below 2**63, no NUL character, and an upper bound of its JSON length within the
    limit. False means "encode to know", never "invalid"."""
    if type(value) is not dict:
        return False
    bound = 2
    for key, item in value.items():
        if type(key) is not str or not key.isascii() or "\x00" in key:
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii() or "\x00" in item:
                return False
            bound += 6 * (len(key) + len(item)) + 8
        elif kind is int:
            if not -_INT64_BOUND < item < _INT64_BOUND:
                return False
            bound += 6 * len(key) + _MAX_SCALAR_JSON + 4
        elif kind is float:
            if not math.isfinite(item):
                return False
            bound += 6 * len(key) + _MAX_SCALAR_JSON + 4
        elif kind is bool or item is None:
            bound += 6 * len(key) + _MAX_SCALAR_JSON + 4
        else:
            return False
    return bound <= _max_payload_bytes


def check_json(value: Any, what: str = "payload") -> None:
    """Raise InvalidJobError as :func:`encode_json` would, skipping the encoding where
    :func:`_valid_without_encoding` can tell (the common flat payload)."""
    if not _valid_without_encoding(value):
        encode_json(value, what)


def _check_structure(value: Any, what: str) -> None:
    """Reject what json.dumps would silently change or PostgreSQL would refuse."""
    if _is_flat_and_clean(value):
        return
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidJobError(f"{what} contains a NUL character (\\u0000), which jsonb cannot store")
        elif isinstance(item, dict):
            if depth >= MAX_NESTING_DEPTH:
                raise InvalidJobError(f"{what} is nested more than {MAX_NESTING_DEPTH} levels deep")
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise InvalidJobError(
                        f"{what} has a non-string key {key!r} ({type(key).__name__}); JSON keys are strings"
                    )
                if "\x00" in key:
                    raise InvalidJobError(f"{what} contains a NUL character (\\u0000) in a key")
                stack.append((sub, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= MAX_NESTING_DEPTH:
                raise InvalidJobError(f"{what} is nested more than {MAX_NESTING_DEPTH} levels deep")
            stack.extend((sub, depth + 1) for sub in item)


_JSON_SCALARS = (str, int, float, bool, type(None))


def _unserialisable_message(value: Any, what: str, exc: TypeError) -> str:
    """Where in ``value`` the first value JSON cannot hold is (``payload["when"]``), and
    what to do about it (only on the error path: it walks the value again)."""
    stack: list[tuple[Any, str]] = [(value, what)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            stack.extend(
                (sub, f"{path}[{json.dumps(key, ensure_ascii=False)}]")
                for key, sub in reversed(list(item.items()))
            )
        elif isinstance(item, list | tuple):
            stack.extend((sub, f"{path}[{i}]") for i, sub in reversed(list(enumerate(item))))
        elif not isinstance(item, _JSON_SCALARS):
            kind = type(item)
            return (
                f"{path} is not JSON-serialisable: a {kind.__module__}.{kind.__qualname__}; "
                f"{_fix_for(item)}, or declare the payload as a pydantic model (it converts such values)"
            )
    return f"{what} is not JSON-serialisable: {exc}"  # pragma: no cover - the walk finds it


def _fix_for(item: Any) -> str:
    if hasattr(item, "isoformat"):  # datetime, date, time
        return "pass value.isoformat()"
    if isinstance(item, set | frozenset):
        return "pass a list"
    if isinstance(item, bytes | bytearray):
        return "pass text (e.g. base64)"
    return "pass str(value) or a number"


def _reject(value: Any) -> Any:
    raise TypeError(f"object of type {type(value).__name__} is not JSON-serialisable")


def _make_encoder() -> Callable[[Any], str]:
    """Compact JSON text, as ``json.dumps(value, ensure_ascii=False, allow_nan=False,
    separators=(",", ":"), default=_reject)`` makes it, without building an encoder per call
    (json.dumps with options does: most of its time for a small payload). Circular references
    are not checked here: _check_structure's depth limit stops them first."""
    c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is not None:
        try:
            encode = c_make_encoder(
                None, _reject, json.encoder.encode_basestring, None, ":", ",", False, False, False
            )
            if "".join(encode({"a": [1, 2.5, None, True]}, 0)) == '{"a":[1,2.5,null,true]}':
                return lambda value: "".join(encode(value, 0))
        except Exception:  # pragma: no cover - another interpreter's json module
            pass
    encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_reject)
    return encoder.encode  # pragma: no cover


_encode = _make_encoder()


def encode_json(value: Any, what: str = "payload", *, limit: int | None = None) -> str:
    """Encode ``value`` (already a JSON value or a model/dataclass) as compact JSON text.

    Raises :class:`InvalidJobError` naming the problem: not serialisable, NaN or
    infinity, non-string keys, NUL characters, lone surrogates, too deep, too big.
    """
    value = to_json_value(value, what)
    _check_structure(value, what)
    try:
        text = _encode(value)
    except ValueError as exc:  # NaN / Infinity
        raise InvalidJobError(f"{what} is not valid JSON: {exc}") from exc
    except TypeError as exc:
        raise InvalidJobError(_unserialisable_message(value, what, exc)) from exc
    except RecursionError as exc:
        raise InvalidJobError(f"{what} is nested too deeply to encode") from exc
    try:
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidJobError(
            f"{what} contains a lone surrogate, which is not valid Unicode: {exc.reason}"
        ) from exc
    max_bytes = _max_payload_bytes if limit is None else limit
    if size > max_bytes:
        raise InvalidJobError(f"{what} is {size} bytes of JSON, over the limit of {max_bytes} bytes")
    return text
