"""Time-ordered job ids (UUID version 7), so jobs created together sort in creation order."""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID, SafeUUID

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Random bytes from os.urandom, fetched 4 KiB at a time: one system call per ~400 ids, not per id.
_RANDOM_CHUNK = 4096
_random = b""
_random_pos = 0
# The fixed bits of a UUIDv7: version 7 and the RFC 9562 variant.
_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62
_RAND_MASK = (1 << 62) - 1
_MS_MASK = (1 << 48) - 1

_object_new = object.__new__
_object_setattr = object.__setattr__
_SAFE_UNKNOWN = SafeUUID.unknown


def _forget_random() -> None:
    """In a forked child: a fresh lock (the parent's may be held), and never the random bytes
    the parent holds too, or both processes would make the same ids."""
    global _lock, _random, _random_pos
    _lock = threading.Lock()
    _random, _random_pos = b"", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_random)


def _uuid_of_int_fast(value: int) -> UUID:
    """``UUID(int=value)`` for a value known to be a valid 128-bit UUIDv7, without the
    argument checks of UUID.__init__ (about half its cost). UUID stores only these two slots."""
    u: UUID = _object_new(UUID)
    _object_setattr(u, "int", value)
    _object_setattr(u, "is_safe", _SAFE_UNKNOWN)
    return u


def _fast_uuid_is_exact() -> bool:
    value = 0x0123456789AB7DEF8123456789ABCDEF
    fast, slow = _uuid_of_int_fast(value), UUID(int=value)
    return fast == slow and str(fast) == str(slow) and fast.version == 7 and hash(fast) == hash(slow)


_uuid_of_int = _uuid_of_int_fast if _fast_uuid_is_exact() else lambda value: UUID(int=value)


def new_id() -> UUID:
    """A UUIDv7: 48-bit Unix milliseconds, then a 12-bit counter for order within a millisecond,
    then 62 random bits. Monotonic within this process."""
    global _last_ms, _counter, _random, _random_pos
    with _lock:
        pos = _random_pos
        if pos + 10 > len(_random):
            _random, pos = os.urandom(_RANDOM_CHUNK), 0
        _random_pos = pos + 10
        bits = int.from_bytes(_random[pos : pos + 10], "big")
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = (bits >> 64) & 0x3FF  # leave headroom to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # more than 4096 ids in one millisecond: borrow the next one
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    return _uuid_of_int((ms & _MS_MASK) << 80 | _VERSION_AND_VARIANT | counter << 64 | (bits & _RAND_MASK))
