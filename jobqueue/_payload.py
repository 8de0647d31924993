"""Turning user payloads and results into JSON text PostgreSQL's jsonb accepts.

JSON only, never pickle. Everything that jsonb would reject, or that would
change meaning on the way (NaN, non-string keys), is refused here, before any
SQL runs, with a message that names the problem.
"""

from __future__ import annotations

import dataclasses
import json
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


def to_json_value(value: Any, what: str = "payload") -> Any:
    """Convert pydantic models and dataclass instances to plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return to_jsonable_python(value)
        except Exception as exc:
            raise InvalidJobError(f"{what} is not JSON-serialisable: {exc}") from exc
    return value


def _check_structure(value: Any, what: str) -> None:
    """Reject what json.dumps would silently change or PostgreSQL would refuse."""
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


def _reject(value: Any) -> Any:
    raise TypeError(f"object of type {type(value).__name__} is not JSON-serialisable")


def encode_json(value: Any, what: str = "payload", *, limit: int | None = None) -> str:
    """Encode ``value`` (already a JSON value or a model/dataclass) as compact JSON text.

    Raises :class:`InvalidJobError` naming the problem: not serialisable, NaN or
    infinity, non-string keys, NUL characters, lone surrogates, too deep, too big.
    """
    value = to_json_value(value, what)
    _check_structure(value, what)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_reject)
    except ValueError as exc:  # NaN / Infinity
        raise InvalidJobError(f"{what} is not valid JSON: {exc}") from exc
    except TypeError as exc:
        raise InvalidJobError(f"{what} is not JSON-serialisable: {exc}") from exc
    except RecursionError as exc:
        raise InvalidJobError(f"{what} is nested too deeply to encode") from exc
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidJobError(
            f"{what} contains a lone surrogate, which is not valid Unicode: {exc.reason}"
        ) from exc
    max_bytes = _max_payload_bytes if limit is None else limit
    if size > max_bytes:
        raise InvalidJobError(f"{what} is {size} bytes of JSON, over the limit of {max_bytes} bytes")
    return text
